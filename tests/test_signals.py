"""serve_forever(): SIGTERM and SIGINT close the server cleanly, then reach the handlers that
were there before. Real processes for the exit status; in-process for the handlers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import jitpc
from support import peer_command, python_env, reap

pytestmark = pytest.mark.anyio


@pytest.fixture
def loop_name(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--loop"))


@contextlib.asynccontextmanager
async def peer(
    jitpc_id: str, loop_name: str, *args: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, asyncio.Future[Any]]]:
    """Run ``signal_server.py``; yield it and a client's request that its handler holds."""
    extra = ["--uvloop"] if loop_name == "uvloop" else []
    proc = await asyncio.create_subprocess_exec(
        *peer_command("signal_server.py", jitpc_id, *args, *extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    client = jitpc.connect(jitpc_id)
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"listening\n"
        pending = asyncio.ensure_future(client.request("hang"))
        assert await proc.stdout.readline() == b"handling\n"
        yield proc, pending
    finally:
        client.destroy()
        await reap(proc)


async def assert_released(jitpc_id: str, tmpdir: Path) -> None:
    """The socket file is gone and the lock free: a new server takes the id."""
    assert sorted(os.listdir(tmpdir)) == [f"{jitpc_id}.lock"]
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    await server.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_closes_the_server_then_ends_the_process_as_it_says(
    jitpc_id: str, jitpc_tmpdir: Path, loop_name: str, signum: signal.Signals
) -> None:
    async with peer(jitpc_id, loop_name) as (proc, pending):
        proc.send_signal(signum)
        with pytest.raises(jitpc.ClosedError):
            await pending
        out, err = await proc.communicate()
        # Delivered again once closed: killed by SIGTERM; SIGINT is asyncio.run's
        # KeyboardInterrupt, and Python exits from that through SIGINT too.
        assert proc.returncode == -signum, err
        # asyncio.run's SIGINT handler cancels the main task, which runs on to its next
        # await; SIGTERM kills the process in serve_forever().
        assert out == (b"returned\n" if signum == signal.SIGINT else b"")
        if signum == signal.SIGINT:
            assert b"KeyboardInterrupt" in err
        await assert_released(jitpc_id, jitpc_tmpdir)


async def test_the_programs_own_handler_is_restored_and_called_after_the_close(
    jitpc_id: str, jitpc_tmpdir: Path, loop_name: str
) -> None:
    own = peer(jitpc_id, loop_name, "--own-handler")
    async with own as (proc, pending):
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(jitpc.ClosedError):
            await pending
        out, err = await proc.communicate()
        assert (proc.returncode, out) == (7, b"own handler SIGTERM closed=True\n"), err
        await assert_released(jitpc_id, jitpc_tmpdir)


# -- in this process -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def sigint_as_from_a_terminal() -> Iterator[None]:
    """SIGINT starts with Python's default handler, even if the test run inherited it ignored
    (``pytest ... &`` in a script), which serve_forever() leaves alone; put back after."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def sigterms() -> Iterator[list[int]]:
    """SIGTERM goes to a recording handler for the test (never the default: it would kill
    pytest), and its handler before is put back after."""
    caught: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    before = signal.signal(signal.SIGTERM, record)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, before)


def handlers() -> tuple[Any, Any]:
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


async def started(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """``coro`` as a task that has run its first step (where serve_forever sets handlers)."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


def hanging(handling: asyncio.Event) -> Any:
    """An on_client that answers ``hang`` with a handler that never returns."""

    async def hang(_params: Any) -> None:
        handling.set()
        await asyncio.Event().wait()

    return lambda client: client.respond("hang", hang)


async def test_handlers_are_set_while_serving_and_restored_before_the_signal_is_delivered(
    jitpc_id: str, jitpc_tmpdir: Path, sigterms: list[int]
) -> None:
    handling = asyncio.Event()
    server = await jitpc.listen(jitpc_id, on_client=hanging(handling))
    assert server is not None
    before = handlers()
    serving = await started(server.serve_forever())
    assert handlers() != before
    client = jitpc.connect(jitpc_id)
    pending = asyncio.ensure_future(client.request("hang"))
    await handling.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(jitpc.ClosedError):
        await pending
    await serving  # our handler does not raise: serve_forever() returns
    assert server.closed and sigterms == [signal.SIGTERM]
    assert handlers() == before
    await assert_released(jitpc_id, jitpc_tmpdir)


async def test_one_signal_closes_every_server_serving_forever_and_is_delivered_once(
    jitpc_id: str, sigterms: list[int]
) -> None:
    a = await jitpc.listen(jitpc_id + "a", spindown=False)
    b = await jitpc.listen(jitpc_id + "b", spindown=False)
    assert a is not None and b is not None
    before = handlers()
    both = [await started(a.serve_forever()), await started(b.serve_forever())]
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.gather(*both)
    assert a.closed and b.closed and sigterms == [signal.SIGTERM]
    assert handlers() == before


async def test_ending_without_a_signal_restores_the_handlers_and_delivers_nothing(
    jitpc_id: str, sigterms: list[int]
) -> None:
    server = await jitpc.listen(jitpc_id, spindown_timeout=0.01)
    assert server is not None
    before = handlers()
    await server.serve_forever()  # until it spins down
    assert server.closed and sigterms == [] and handlers() == before


async def test_cancelling_serve_forever_closes_the_server(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    handling = asyncio.Event()
    server = await jitpc.listen(jitpc_id, on_client=hanging(handling), spindown=False)
    assert server is not None
    before = handlers()
    serving = await started(server.serve_forever())
    client = jitpc.connect(jitpc_id)
    pending = asyncio.ensure_future(client.request("hang"))
    await handling.wait()
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    # Closed by the time the cancellation arrives, as asyncio.Server.serve_forever does.
    assert server.closed and handlers() == before
    with pytest.raises(jitpc.ClosedError):
        await pending
    await assert_released(jitpc_id, jitpc_tmpdir)


async def test_signals_false_only_waits(jitpc_id: str) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    before = handlers()
    serving = await started(server.serve_forever(signals=False))
    assert handlers() == before
    await server.close()
    await serving


async def test_outside_the_main_thread_it_only_waits(jitpc_id: str) -> None:
    before = handlers()
    seen: list[object] = []

    async def serve() -> None:
        server = await jitpc.listen(jitpc_id, spindown=False)
        assert server is not None
        serving = await started(server.serve_forever())
        seen.append(handlers())
        await server.close()
        await serving

    await asyncio.to_thread(asyncio.run, serve())
    assert threading.current_thread() is threading.main_thread()
    assert seen == [before] and handlers() == before


async def test_a_signal_the_loop_already_handles_is_left_to_its_handler(
    jitpc_id: str, sigterms: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    got: list[str] = []
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    def on_sigterm() -> None:  # the program's own graceful shutdown
        got.append("program")
        loop.create_task(server.close())

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        before = handlers()
        serving = await started(server.serve_forever())
        assert handlers()[0] == before[0] and handlers()[1] != before[1]
        os.kill(os.getpid(), signal.SIGTERM)
        await serving
        assert got == ["program"] and sigterms == [] and handlers() == before
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def test_without_loop_signal_handlers_it_uses_signal_signal(
    jitpc_id: str, sigterms: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' loops have no add_signal_handler: the fallback, on this platform."""
    loop = asyncio.get_running_loop()

    def unsupported(*_args: Any) -> None:
        raise NotImplementedError

    try:
        monkeypatch.setattr(loop, "add_signal_handler", unsupported)
    except AttributeError:
        pytest.skip("this loop's methods cannot be replaced (uvloop)")
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    before = handlers()
    serving = await started(server.serve_forever())
    assert callable(handlers()[0]) and handlers()[0] != before[0]
    os.kill(os.getpid(), signal.SIGTERM)
    await serving
    assert server.closed and sigterms == [signal.SIGTERM] and handlers() == before


async def test_a_signal_the_process_ignores_stays_ignored(
    jitpc_id: str, sigterms: list[int]
) -> None:
    before_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server = await jitpc.listen(jitpc_id, spindown=False)
        assert server is not None
        before = handlers()
        serving = await started(server.serve_forever())
        assert handlers()[0] != before[0] and handlers()[1] == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored: dropped as it is sent
        async with jitpc.connect(jitpc_id) as client:  # still serving
            assert await client.request("rpc.ping") == {}
        assert not server.closed
        os.kill(os.getpid(), signal.SIGTERM)
        await serving
        assert server.closed and sigterms == [signal.SIGTERM] and handlers() == before
    finally:
        signal.signal(signal.SIGINT, before_sigint)
