"""connect(): reaching a server, spinup, back-off, requests ending exactly once."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jitpc
from jitpc.testing import ClientFactory, DaemonFactory
from support import HANG, ROOT, echo_daemon, peer_command, python_env, reap, sample_responders

pytestmark = pytest.mark.anyio


async def test_round_trip_to_a_server_process(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    async with jitpc.connect(jitpc_id) as client:
        assert await client.request("echo", {"key": "a", "n": 1}) == {"key": "a", "n": 1}
        assert await client.request("echo", "ünïcødé ✓") == "ünïcødé ✓"
        assert await client.request("echo") is None
        big = "x" * (1 << 20)
        assert await client.request("echo", big) == big
        results = await asyncio.gather(*(client.request("echo", i) for i in range(500)))
        assert results == list(range(500))


async def test_no_server_fails_after_the_back_off_and_spinup_runs_once(jitpc_id: str) -> None:
    calls: list[str] = []

    def spinup() -> None:
        calls.append("spinup")  # starts nothing

    async def attempt(client: jitpc.Client) -> jitpc.ConnectError:
        with pytest.raises(jitpc.ConnectError) as info:
            await client.request("echo", 1)
        return info.value

    plain, hooked = await asyncio.gather(
        attempt(jitpc.connect(jitpc_id)), attempt(jitpc.connect(jitpc_id, spinup=spinup))
    )
    assert calls == ["spinup"]
    for error in (plain, hooked):
        assert isinstance(error, ConnectionError)  # a plain `except OSError` works too
        assert isinstance(error.__cause__, FileNotFoundError)
        assert error.server_id == jitpc_id
        assert error.path.endswith(f"/{jitpc_id}.sock")
        assert re.search(r"after \d+ tries over [67]\.\d s", str(error)), error


async def test_failed_client_keeps_failing_with_the_connect_error(jitpc_id: str) -> None:
    def spinup() -> None:
        raise OSError("cannot start")

    client = jitpc.connect(jitpc_id, spinup=spinup)
    with pytest.raises(jitpc.ConnectError, match="spinup") as info:
        await client.open()
    assert isinstance(info.value.__cause__, OSError)
    assert client.closed
    with pytest.raises(jitpc.ConnectError):
        await client.request("echo", 1)
    with pytest.raises(jitpc.ConnectError):
        client.notify("echo", 1)


async def test_spinup_that_waits_for_the_server(jitpc_id: str) -> None:
    procs: list[asyncio.subprocess.Process] = []

    async def spinup() -> None:
        proc = await asyncio.create_subprocess_exec(
            *peer_command("echo_server.py", jitpc_id),
            stdout=asyncio.subprocess.PIPE,
            env=python_env(),
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"listening\n"

    try:
        async with jitpc.connect(jitpc_id, spinup=spinup) as client:
            assert await client.request("echo", "up") == "up"
    finally:
        for proc in procs:
            await reap(proc)
    assert len(procs) == 1


async def test_spinup_that_does_not_wait(jitpc_id: str) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def spinup() -> None:
        procs.append(
            subprocess.Popen(
                peer_command("echo_server.py", jitpc_id),
                stdout=subprocess.DEVNULL,
                env=python_env(),
            )
        )

    try:
        async with jitpc.connect(jitpc_id, spinup=spinup) as client:
            assert await client.request("echo", "up") == "up"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(HANG)
    assert len(procs) == 1


async def test_spinup_is_not_called_when_a_server_answers(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    def spinup() -> None:
        raise AssertionError("must not be called")

    await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    async with jitpc.connect(jitpc_id, spinup=spinup) as c:
        assert await c.request("echo", 1) == 1


async def test_concurrent_first_requests_share_one_connection(jitpc_id: str) -> None:
    seen: list[jitpc.Client] = []
    server = await jitpc.listen(jitpc_id, on_client=seen.append, spindown=False)
    assert server is not None
    server.on_client(sample_responders)
    async with server, jitpc.connect(jitpc_id) as client:
        results = await asyncio.gather(*(client.request("echo", i) for i in range(20)))
        assert results == list(range(20))
        assert len(seen) == 1


async def test_errors_come_back_as_remote_errors(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(on_client=sample_responders, spindown=False)
    with pytest.raises(jitpc.RemoteError) as info:
        await client.request("fail", {"code": "E_BOOM", "data": [1]})
    assert type(info.value) is jitpc.RemoteError
    assert (info.value.message, info.value.code, info.value.data) == (
        "custom",
        "E_BOOM",
        [1],
    )
    with pytest.raises(jitpc.InvalidParams):
        await client.request("fail", {"code": -32602})
    with pytest.raises(jitpc.MethodNotFound, match="Unknown method: nope"):
        await client.request("nope")
    with pytest.raises(jitpc.InternalError, match="broken handler") as crash:
        await client.request("crash")
    assert crash.value.code == -32603
    with pytest.raises(jitpc.InternalError, match="cannot be encoded"):
        await client.request("unencodable")
    # None of that hurt the connection.
    assert await client.request("later", "still here") == "still here"


async def test_crashing_responder_is_logged(
    jitpc_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await jitpc_client(on_client=sample_responders, spindown=False)
    with caplog.at_level(logging.ERROR, logger="jitpc"):
        with pytest.raises(jitpc.InternalError):
            await client.request("crash")
    assert any("broken handler" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_unencodable_params_raise_locally(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(on_client=sample_responders, spindown=False)
    with pytest.raises(TypeError):
        await client.request("echo", {"x": object()})
    with pytest.raises(TypeError):
        client.notify("echo", {1, 2} | {object()})
    assert await client.request("echo", 2) == 2


async def test_notifications_arrive_in_order(jitpc_id: str) -> None:
    got: list[Any] = []
    all_in = asyncio.Event()

    def on_client(client: jitpc.Client) -> None:
        def note(params: Any) -> None:
            got.append(params)
            if len(got) == 3:
                all_in.set()

        client.respond("note", note)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        client = jitpc.connect(jitpc_id)
        client.notify("note", 1)  # before the connection exists
        client.notify("note", 2)
        client.notify("unknown-notification", 0)
        client.notify("note", 3)
        await all_in.wait()
        assert got == [1, 2, 3]
        await client.end()


async def test_messages_of_one_turn_keep_their_order_across_writes(
    jitpc_client: ClientFactory,
) -> None:
    # Many messages made in one loop turn go out in several writes (WRITE_BATCH in _client),
    # from both ends: the order must hold across them, requests and notifications mixed.
    seen: list[Any] = []

    def on_client(client: jitpc.Client) -> None:
        client.respond("note", seen.append)

        def get(params: Any) -> Any:
            seen.append(params)
            client.notify("back", params)  # server-to-client, interleaved with the replies
            return list(seen)

        client.respond("get", get)

    client = await jitpc_client(on_client=on_client, spindown=False)
    back: list[Any] = []
    client.respond("back", back.append)

    async def note(i: int) -> None:
        client.notify("note", i)

    # gather starts these in order, all in one turn.
    calls = [client.request("get", i) if i % 3 == 0 else note(i) for i in range(100)]
    results = [r for r in await asyncio.gather(*calls) if r is not None]
    assert seen == list(range(100))
    # Each answer saw exactly what came before its request, in order.
    assert [r[-1] for r in results] == list(range(0, 100, 3))
    assert all(r == list(range(r[-1] + 1)) for r in results)
    await client.request("get", "last")  # the notifications sent back came first
    assert back == [*range(0, 100, 3), "last"]


async def test_end_waits_for_requests_in_flight(jitpc_id: str) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    def on_client(client: jitpc.Client) -> None:
        async def gate(params: Any) -> Any:
            entered.set()
            await release.wait()
            return params

        client.respond("gate", gate)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        client = jitpc.connect(jitpc_id)
        pending = asyncio.ensure_future(client.request("gate", "done"))
        await entered.wait()
        ending = asyncio.ensure_future(client.end())
        await asyncio.sleep(0)  # one loop turn: end() starts (ready callbacks run in order)
        with pytest.raises(jitpc.ClosedError, match="ending"):
            await client.request("gate", "too late")
        assert not ending.done()
        release.set()
        assert await pending == "done"
        await ending
        assert client.closed


async def test_destroy_fails_pending_requests(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    client = jitpc.connect(jitpc_id)
    await client.open()
    pending = asyncio.ensure_future(client.request("sleep", 3600))
    await asyncio.sleep(0)
    reason = RuntimeError("shutting down")
    client.destroy(reason)
    with pytest.raises(jitpc.ClosedError) as info:
        await pending
    assert info.value.__cause__ is reason
    with pytest.raises(jitpc.ClosedError):
        await client.request("echo", 1)
    with pytest.raises(jitpc.ClosedError):
        client.notify("echo", 1)
    client.destroy()  # idempotent
    await client.wait_closed()
    await client.end()


async def test_cancelled_request_leaves_the_client_usable(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    async with jitpc.connect(jitpc_id) as client:
        slow = asyncio.ensure_future(client.request("sleep", 0.05))
        assert await client.request("echo", 0) == 0
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # The late response to the cancelled request is discarded, not misdelivered.
        assert await client.request("sleep", 0.1) == 0.1
        assert await client.request("echo", 1) == 1


async def test_unrespond(jitpc_client: ClientFactory) -> None:
    served: asyncio.Queue[jitpc.Client] = asyncio.Queue()
    client = await jitpc_client(on_client=served.put_nowait, spindown=False)
    client.respond("hello", lambda _: "hi")
    peer = await served.get()
    assert await peer.request("hello") == "hi"
    client.unrespond("hello")
    with pytest.raises(jitpc.MethodNotFound):
        await peer.request("hello")


async def test_too_long_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="limit"):
        await jitpc.connect("x" * 200).open()
    with pytest.raises(ValueError, match="limit"):
        await jitpc.listen("x" * 200)


IDLE_EXIT = """
import asyncio, sys
import jitpc

async def main():
    server = await jitpc.listen(sys.argv[1], on_client=lambda c: c.respond("e", lambda p: p))
    client = jitpc.connect(sys.argv[1])
    assert await client.request("e", 1) == 1
    client.notify("e", 2)
    # main returns with the client and the server still open and idle

asyncio.run(main())
print("exited")
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_idle_client_and_server_never_keep_the_program_alive(
    jitpc_id: str, loop: str, jitpc_tmpdir: Path
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    code = IDLE_EXIT
    if loop == "uvloop":
        code = code.replace("asyncio.run(main())", "import uvloop; uvloop.run(main())")
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code, jitpc_id],
        capture_output=True,
        text=True,
        env=python_env(PYTHONASYNCIODEBUG="1"),
        timeout=HANG,
        cwd=ROOT,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "exited\n", "")
    assert not (jitpc_tmpdir / f"{jitpc_id}.sock").exists()


async def test_oversized_message_closes_the_connection_with_a_protocol_error(
    jitpc_client: ClientFactory,
) -> None:
    client = await jitpc_client(
        on_client=sample_responders, spindown=False, connect={"max_message_bytes": 100}
    )
    with pytest.raises(jitpc.ClosedError) as info:
        await client.request("echo", "x" * 200)
    assert isinstance(info.value.__cause__, jitpc.ProtocolError)
    assert client.closed
    # The server is unaffected.
    other = await jitpc_client.connect(client.server_id)
    assert await other.request("echo", 1) == 1


async def test_a_file_at_the_socket_path_fails_at_once(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    (jitpc_tmpdir / f"{jitpc_id}.sock").write_text("not a socket")
    calls: list[str] = []
    client = jitpc.connect(jitpc_id, spinup=lambda: calls.append("spinup"))
    with pytest.raises(jitpc.ConnectError, match="not a socket"):
        await client.open()
    assert calls == []  # no server could ever answer there: no spinup, no back-off
