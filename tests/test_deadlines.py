"""Deadlines: request and call timeouts, end(timeout=), connect_timeout and the spinup hook,
and thread handlers that block without stopping the server.

The request timeouts under test are short (0.5 s) because each one is waited out in full; all
they must outlast is the server taking the request in hand (milliseconds). Every other step
waits on an event or on a line a child process prints.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import jitpc
from ledger import Child, Children, children
from rawpeer import raw_peer
from support import HANG, peer_command

pytestmark = pytest.mark.anyio

#: The timeout given to requests meant to time out: each test waits it out.
SHORT = 0.5

needs_waitid = pytest.mark.skipif(not hasattr(os, "waitid"), reason="SIGSTOP and os.waitid")


class Forever(jitpc.Method[str], method="forever-typed"):
    token: str


class Deaf(jitpc.Method[str], method="deaf"):
    token: str


class Block(jitpc.Method[str], method="block"):
    token: str


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


async def deadline_server(kids: Children, jitpc_id: str, *options: str) -> Child:
    """Start ``peers/deadline_server.py`` and wait until it listens."""
    child = await kids.spawn(peer_command("deadline_server.py", jitpc_id, *options))
    await child.line(starts("listening "))
    return child


def no_tracebacks(child: Child) -> None:
    assert not [line for line in child.err if "Traceback" in line], child.err


async def stopped(pid: int) -> None:
    """Wait until the child ``pid`` is stopped by a signal (or has exited)."""
    flags = os.WSTOPPED | os.WEXITED | os.WNOWAIT
    await asyncio.get_running_loop().run_in_executor(None, os.waitid, os.P_PID, pid, flags)


# -- request and call timeouts --------------------------------------------------------------


async def test_timed_out_request_and_call_are_cancelled_on_the_server(
    jitpc_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """TimeoutError for both; each handler is cancelled exactly once (the server's own record,
    read by a later request on the same client, which still works)."""
    async with children() as kids:
        server = await deadline_server(kids, jitpc_id)
        async with jitpc.connect(jitpc_id) as client:
            await client.open()  # so that the timeouts below bound the requests alone
            with caplog.at_level(logging.WARNING, logger="jitpc"):
                with pytest.raises(TimeoutError):
                    await client.request("forever", {"token": "request"}, timeout=SHORT)
                await server.line("cancelled request")
                with pytest.raises(TimeoutError):
                    await client.call(Forever(token="call"), timeout=SHORT)
                await server.line("cancelled call")
                # The same client goes on, and the server's -32800 answers to the two ids it
                # gave up were dropped without a word, not delivered to these requests.
                assert await client.request("echo", {"n": 1}) == {"n": 1}
                record = await client.request("record")
            assert record == {"started": ["request", "call"], "cancelled": ["request", "call"]}
        assert [r for r in caplog.records if r.name == "jitpc"] == []
        no_tracebacks(server)


async def test_a_late_answer_to_a_timed_out_request_is_discarded(jitpc_id: str) -> None:
    async with children() as kids:
        server = await deadline_server(kids, jitpc_id)
        async with jitpc.connect(jitpc_id) as client:
            await client.open()
            with pytest.raises(TimeoutError):
                await client.request("late", {"token": "t"}, timeout=SHORT)
            await server.line("answered t")  # its result, {"late": "t"}, is on its way
            for n in range(3):
                assert await client.request("echo", n) == n
        no_tracebacks(server)


async def test_leaving_async_with_right_after_a_timed_out_call(jitpc_id: str) -> None:
    # The handler never answers, even when cancelled (as a Node server, which ignores the
    # cancel): leaving the block must not wait for an answer to a request given up.
    async with children() as kids:
        server = await deadline_server(kids, jitpc_id)
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(TimeoutError):
                await client.call(Deaf(token="d"), timeout=SHORT)
        assert client.closed
        # The server had the request, and its handler shrugged off being cancelled (by the
        # cancel notification or the connection's end): no answer ever came.
        await server.line("waiting d")
        await server.line("ignored d")


async def test_a_request_cancelled_in_the_read_that_brought_it(jitpc_id: str) -> None:
    """The cancel comes in the same read as its request, before the handler's task has run:
    the request is answered -32800 once, and its handler's coroutine is not left un-awaited
    (no "coroutine ... was never awaited" RuntimeWarning)."""

    async def hold(params: Any) -> Any:
        await asyncio.Event().wait()

    def serve(client: jitpc.Client) -> None:
        client.respond("hold", hold)
        client.respond("echo", lambda params: params)

    request = {"jsonrpc": "2.0", "id": 1, "method": "hold", "params": "x"}
    cancel = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}
    echo = {"jsonrpc": "2.0", "id": 2, "method": "echo", "params": "after"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server = await jitpc.listen(jitpc_id, on_client=serve, spindown=False)
        assert server is not None
        async with server, raw_peer(jitpc_id) as peer:
            await peer.send(b"".join(json.dumps(m).encode() + b"\n" for m in (request, cancel)))
            reply = await peer.read_reply()
            assert (reply["id"], reply["error"]["code"]) == (1, -32800), reply
            await peer.send(json.dumps(echo).encode() + b"\n")
            assert await peer.read_reply() == {"jsonrpc": "2.0", "id": 2, "result": "after"}
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


@needs_waitid
async def test_end_against_a_stopped_server(jitpc_id: str) -> None:
    """A SIGSTOPped server answers nothing: end() does not wait for a request given up, and
    end(timeout=) destroys a connection whose awaited request never comes back."""
    async with children() as kids:
        server = await deadline_server(kids, jitpc_id)
        waiting = jitpc.connect(jitpc_id)
        gave_up = jitpc.connect(jitpc_id)
        await gave_up.open()
        pending = asyncio.ensure_future(waiting.request("forever", {"token": "p"}))
        await server.line("waiting p")
        server.signal(signal.SIGSTOP)
        try:
            await stopped(server.pid)
            with pytest.raises(TimeoutError):
                await gave_up.request("echo", 1, timeout=SHORT)
            await gave_up.end()  # nobody awaits anything from the server: no wait
            assert gave_up.closed

            await waiting.end(timeout=SHORT)
            assert waiting.closed
            with pytest.raises(jitpc.ClosedError):
                await pending
            with pytest.raises(jitpc.ClosedError):
                await waiting.request("echo", 2)
        finally:
            server.signal(signal.SIGCONT)
        # Woken, the server finds the connection gone and cancels the handler it had running.
        await server.line("cancelled p")
        async with jitpc.connect(jitpc_id) as fresh:
            assert await fresh.request("rpc.ping") == {}
        no_tracebacks(server)


# -- connect_timeout and the spinup hook ------------------------------------------------------


async def test_connect_timeout_reaches_a_server_that_starts_after_the_default_schedule(
    jitpc_id: str,
) -> None:
    # The server starts listening only once a client with the default connect_timeout has
    # given up: past Node's whole schedule. A client with connect_timeout=15 still gets it.
    async with children() as kids:
        gated: list[Child] = []
        spun = asyncio.Event()

        async def spinup() -> None:
            child = await kids.spawn(peer_command("deadline_server.py", jitpc_id, "--gate"))
            gated.append(child)
            await child.line("ready")
            spun.set()

        patient = jitpc.connect(jitpc_id, spinup=spinup, connect_timeout=15)
        opening = asyncio.ensure_future(patient.open())
        default = jitpc.connect(jitpc_id)
        with pytest.raises(jitpc.ConnectError, match="tries"):
            await default.open()
        await spun.wait()
        assert not opening.done()
        gated[0].tell("listen")
        await gated[0].line(starts("listening "))
        await opening
        assert await patient.request("echo", "late but there") == "late but there"
        await patient.end()
        assert len(gated) == 1


async def test_connect_timeout_zero_tries_once_without_spinup(jitpc_id: str) -> None:
    calls: list[str] = []
    client = jitpc.connect(jitpc_id, spinup=lambda: calls.append("spinup"), connect_timeout=0)
    with pytest.raises(jitpc.ConnectError, match=r"after 1 try ") as info:
        await client.request("echo", 1)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert calls == []

    # With a server there, the one try is enough.
    server = await jitpc.listen(
        jitpc_id, on_client=lambda c: c.respond("echo", lambda p: p), spindown=False
    )
    assert server is not None
    async with server, jitpc.connect(jitpc_id, connect_timeout=0) as client:
        assert await client.request("echo", 2) == 2


async def test_async_spinup_hook_that_never_returns_is_cancelled_at_the_deadline(
    jitpc_id: str,
) -> None:
    cancelled = asyncio.Event()

    async def spinup() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client = jitpc.connect(jitpc_id, spinup=spinup, connect_timeout=SHORT)
    with pytest.raises(jitpc.ConnectError, match="did not return within connect_timeout") as e:
        await client.open()
    assert isinstance(e.value.__cause__, TimeoutError)
    assert cancelled.is_set()
    assert client.closed


async def test_blocking_sync_spinup_hook_does_not_hold_connect_past_the_deadline(
    jitpc_id: str,
) -> None:
    release = threading.Event()
    returned = threading.Event()

    def spinup() -> None:
        release.wait(HANG)
        returned.set()

    client = jitpc.connect(jitpc_id, spinup=spinup, connect_timeout=SHORT)
    try:
        with pytest.raises(jitpc.ConnectError, match="did not return within connect_timeout") as e:
            await client.open()
        assert isinstance(e.value.__cause__, TimeoutError)
        assert not returned.is_set()  # it was still blocked when connect gave up
        assert client.closed
    finally:
        release.set()
    assert await asyncio.to_thread(returned.wait, HANG)


# -- thread handlers and rpc.status ----------------------------------------------------------


class Blocker:
    """A handler body that blocks its thread until :meth:`release`; the loop hears when it
    starts (``entered``)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self._release = threading.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, token: str) -> str:
        self._loop.call_soon_threadsafe(self.entered.set)
        if not self._release.wait(HANG):
            raise TimeoutError("never released")
        return token

    def release(self) -> None:
        self._release.set()


async def blocking_server(jitpc_id: str, blocker: Blocker, how: str) -> jitpc.Server:
    """A server whose ``block`` blocks in a worker thread (typed, or with respond), and whose
    ``echo`` answers on the loop."""
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    @server.on_client
    def serve(client: jitpc.Client) -> None:
        client.respond("echo", lambda params: params)
        if how == "respond":
            client.respond("block", lambda params: blocker(params["token"]), thread=True)

    if how == "typed":

        @server.method(thread=True)
        def block(params: Block) -> str:
            return blocker(params.token)

    return server


@pytest.mark.parametrize("how", ["typed", "respond"])
async def test_a_blocking_thread_handler_does_not_stop_the_server(jitpc_id: str, how: str) -> None:
    blocker = Blocker()
    server = await blocking_server(jitpc_id, blocker, how)
    async with server, jitpc.connect(jitpc_id) as client, jitpc.connect(jitpc_id) as other:
        try:
            blocked = asyncio.ensure_future(client.call(Block(token="b")))
            await blocker.entered.wait()
            # The handler holds its thread, not the loop: both clients are answered.
            assert await client.request("rpc.ping") == {}
            assert await client.request("echo", "same client") == "same client"
            assert await other.request("rpc.ping") == {}
            assert await other.request("echo", "other client") == "other client"
            assert not blocked.done()
        finally:
            blocker.release()  # never leave a worker thread blocked
        assert await blocked == "b"


async def test_rpc_status_while_a_thread_handler_is_busy(jitpc_id: str) -> None:
    blocker = Blocker()
    server = await blocking_server(jitpc_id, blocker, "typed")
    async with server, jitpc.connect(jitpc_id) as busy, jitpc.connect(jitpc_id) as probe:
        try:
            blocked = asyncio.ensure_future(busy.call(Block(token="b")))
            await blocker.entered.wait()
            status: dict[str, Any] = await probe.request("rpc.status")
        finally:
            blocker.release()
        assert status["id"] == jitpc_id
        assert status["pid"] == os.getpid()
        assert status["clients"] == 2
        assert status["in_flight"] >= 1
        assert {"block", "echo", "rpc.ping", "rpc.status", "rpc.discover"} <= set(status["methods"])
        assert await blocked == "b"
