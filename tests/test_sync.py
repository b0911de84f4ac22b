"""The blocking facade, ``jitpc.sync``, against a real server in another process.

These are plain (non-async) tests: the sync API blocks, and must not be called from a running
event loop. The servers are ``tests/peers/echo_server.py`` and, for requests that never return,
``tests/peers/sync_server.py`` (see their docstrings for the methods).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import jitpc
import jitpc.sync
from support import HANG, ROOT, peer_command, python_env, read_line, start_peer, stop_peer

PORTAL = "jitpc.sync reader"


class Echoed(BaseModel):
    text: str


class Echo(jitpc.Method[Echoed], method="echo"):
    text: str


class EchoAsInt(jitpc.Method[int], method="echo"):
    text: str


class Missing(jitpc.Method[int], method="missing"):
    pass


class Tell(jitpc.Method[None], method="tell"):
    method: str
    params: Any = None


def portal_threads() -> list[threading.Thread]:
    """The connections' reader threads (the portal's name is kept for the tests' history)."""
    return [t for t in threading.enumerate() if t.name == PORTAL]


@pytest.fixture(autouse=True)
def no_portal_left() -> Iterator[None]:
    """Every test closes its clients: a connection's reader thread is gone once it closes."""
    yield
    assert portal_threads() == []


def start_server(jitpc_id: str) -> subprocess.Popen[bytes]:
    return start_peer("echo_server.py", jitpc_id, "off")


@pytest.fixture
def server(jitpc_id: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_server(jitpc_id)
    try:
        yield proc
    finally:
        stop_peer(proc)


@pytest.mark.usefixtures("server")
def test_request_call_and_notify(jitpc_id: str) -> None:
    told = threading.Event()
    received: list[Any] = []

    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        assert client.request("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert client.request("echo") is None
        assert client.call(Echo(text="hi")) == Echoed(text="hi")

        @client.respond("told")
        def on_told(params: Any) -> None:
            received.append((params, threading.current_thread().name))
            told.set()

        # The server answers a "tell" notification with a notification back to us.
        client.notify("tell", {"method": "told", "params": 1})
        assert told.wait(HANG)
        told.clear()
        client.notify(Tell(method="told", params=2))
        assert told.wait(HANG)
    assert received == [(1, PORTAL), (2, PORTAL)]
    assert client.closed


@pytest.mark.usefixtures("server")
def test_errors_are_the_async_clients(jitpc_id: str) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        with pytest.raises(jitpc.RemoteError) as info:
            client.request("fail", "E_FAIL")
        assert (info.value.code, info.value.message) == ("E_FAIL", "failed on purpose")
        with pytest.raises(jitpc.MethodNotFound):
            client.request("no such method")
        with pytest.raises(jitpc.MethodNotFound):
            client.call(Missing())
        with pytest.raises(jitpc.ResultValidationError) as rv:
            client.call(EchoAsInt(text="not an int"))
        assert rv.value.result == {"text": "not an int"}
        with pytest.raises(TypeError):
            client.request("echo", object())
        assert client.request("echo", 3) == 3  # still usable


def test_connect_error_without_a_server(jitpc_id: str) -> None:
    client = jitpc.sync.connect(jitpc_id)
    with pytest.raises(jitpc.ConnectError) as info:
        client.request("echo", 1)  # after the whole back-off, about 7 s
    assert info.value.server_id == jitpc_id
    assert client.closed
    with pytest.raises(jitpc.ConnectError):
        client.request("echo", 1)  # at once: the client stays failed
    client.close()


def test_connect_timeout_bounds_connecting_alone(jitpc_id: str) -> None:
    spun: list[str] = []
    release = threading.Event()

    # 0: one try, and no spinup.
    with jitpc.sync.connect(jitpc_id, spinup=lambda: spun.append("0"), connect_timeout=0) as c:
        with pytest.raises(jitpc.ConnectError) as info:
            c.request("echo", 1, timeout=HANG)
        assert info.value.server_id == jitpc_id
    assert spun == []

    with jitpc.sync.connect(jitpc_id, connect_timeout=0.1) as c:
        with pytest.raises(jitpc.ConnectError):
            c.open(timeout=HANG)  # the back-off stops at the deadline

    # A hook that blocks in its worker thread does not hold the connect past its deadline.
    try:
        with jitpc.sync.connect(
            jitpc_id, spinup=lambda: release.wait(HANG), connect_timeout=0.1
        ) as c:
            with pytest.raises(jitpc.ConnectError):
                c.request("echo", 1, timeout=HANG)
    finally:
        release.set()


def test_a_blocking_spinup_hook_does_not_hold_a_calls_timeout(jitpc_id: str) -> None:
    release = threading.Event()
    started: list[subprocess.Popen[bytes]] = []

    def spinup() -> None:
        release.wait(HANG)
        started.append(start_server(jitpc_id))

    client = jitpc.sync.connect(jitpc_id, spinup=spinup, connect_timeout=None)
    try:
        with pytest.raises(TimeoutError):
            client.request("echo", 1, timeout=0.05)  # the whole deadline, connecting included
        with pytest.raises(TimeoutError):
            client.open(timeout=0.05)
        release.set()
        # The connect attempt outlived the calls that gave up on it; it connects now.
        assert client.request("echo", 2, timeout=HANG) == 2
        client.close()
    finally:
        release.set()
        client.close(timeout=0)
        for proc in started:
            stop_peer(proc)


def test_a_call_waiting_to_connect_ends_with_closed_error_when_the_client_closes(
    jitpc_id: str,
) -> None:
    in_hook = threading.Event()
    release = threading.Event()

    def spinup() -> None:
        in_hook.set()
        release.wait(HANG)

    client = jitpc.sync.connect(jitpc_id, spinup=spinup, connect_timeout=None)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.request("echo", 1)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        assert in_hook.wait(HANG)  # the request waits for the connect
        client.close(timeout=0)  # no time to connect: destroyed, on the loop
        waiter.join(HANG)
    finally:
        release.set()
    # Not concurrent.futures.CancelledError: the connect was cancelled under the call.
    assert [type(exc) for exc in outcome] == [jitpc.ClosedError]
    assert client.closed


def test_spinup_runs_in_a_worker_thread_and_starts_the_server(jitpc_id: str) -> None:
    started: list[subprocess.Popen[bytes]] = []
    threads: list[str] = []

    def spinup() -> None:
        threads.append(threading.current_thread().name)
        started.append(
            subprocess.Popen(
                peer_command("echo_server.py", jitpc_id, "off"),
                stdout=subprocess.DEVNULL,
                env=python_env(),
            )
        )

    client = jitpc.sync.connect(jitpc_id, spinup=spinup)
    assert portal_threads() == []  # no thread, no I/O before the first use
    try:
        with client:
            client.open(timeout=HANG)
            assert client.request("echo", "up") == "up"
    finally:
        for proc in started:
            proc.kill()
            proc.wait(HANG)
    # Not the portal thread: a hook that blocks does not block the portal's loop.
    assert threads == ["jitpc worker"]


@pytest.mark.usefixtures("server")
def test_timeout_cancels_the_request_and_the_client_goes_on(jitpc_id: str) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=0.05) as client:
        with pytest.raises(TimeoutError):
            client.request("sleep", 0.5)  # the client's default timeout
        with pytest.raises(TimeoutError):
            client.call(Echo(text="x"), timeout=0)
        # The first sleep's late response comes while this one waits: it is discarded.
        assert client.request("sleep", 0.8, timeout=HANG) == 0.8
        assert client.request("echo", "ok", timeout=HANG) == "ok"


@pytest.mark.usefixtures("sync_server")
def test_a_timed_out_call_cancels_the_servers_handler(jitpc_id: str) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        client.open()  # connected: the request goes out before its timeout can pass
        with pytest.raises(TimeoutError):
            client.request("hang", "a", timeout=0.05)
        # The server tells whether the handler was cancelled (it waits until it is).
        assert client.request("cancelled", "a") == "cancelled"
        with pytest.raises(TimeoutError):
            client.request("hang", "b", timeout=0)
        assert client.request("cancelled", "b") == "cancelled"


@pytest.mark.usefixtures("sync_server")
def test_close_right_after_a_timed_out_call_returns(jitpc_id: str) -> None:
    client = jitpc.sync.connect(jitpc_id)
    client.open(timeout=HANG)  # so that the request is sent before it times out
    with pytest.raises(TimeoutError):
        client.request("hang", "c", timeout=0.05)
    closed = threading.Event()

    def close() -> None:
        client.close()  # the given-up request is not waited for
        closed.set()

    threading.Thread(target=close, daemon=True).start()
    assert closed.wait(HANG), "close() hangs after a timed-out request"
    assert client.closed


def test_close_timeout_destroys_what_still_waits(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    client = jitpc.sync.connect(jitpc_id)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.request("hang", "d")
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert read_line(sync_server) == b"hang d\n"
    client.close(timeout=0.05)  # end() waits for that request, then destroys
    waiter.join(HANG)
    assert [type(exc) for exc in outcome] == [jitpc.ClosedError]
    assert client.closed


@pytest.mark.usefixtures("server")
def test_close_and_the_context_manager(jitpc_id: str) -> None:
    client = jitpc.sync.connect(jitpc_id)
    assert client.request("echo", 1) == 1
    assert len(portal_threads()) == 1
    client.close()
    client.close()  # idempotent
    assert client.closed
    assert portal_threads() == []  # the last client closed: the portal stopped
    with pytest.raises(jitpc.ClosedError):
        client.request("echo", 1)
    with pytest.raises(jitpc.ClosedError):
        client.notify("echo", 1)
    assert portal_threads() == []

    unused = jitpc.sync.connect(jitpc_id)
    unused.close()  # never used: nothing to do, no thread started
    assert unused.closed

    with pytest.raises(ZeroDivisionError), jitpc.sync.connect(jitpc_id) as failing:
        failing.request("echo", 1)
        raise ZeroDivisionError  # the block raised: the connection is destroyed
    assert failing.closed


@pytest.mark.usefixtures("server")
def test_respond_answers_the_servers_requests_in_the_reader_thread(jitpc_id: str) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        threads: list[str] = []

        def double(params: Any) -> Any:
            threads.append(threading.current_thread().name)
            return params * 2

        assert client.respond("double", double) is double

        @client.respond("refuse")
        def refuse(params: Any) -> Any:
            raise jitpc.RemoteError("refused", "E_REFUSED")

        @client.respond("reenter")
        def reenter(params: Any) -> Any:
            return client.request("echo", 1)  # would deadlock: raises RuntimeError

        assert client.request("ask", {"method": "double", "params": 21}) == 42
        assert threads == [PORTAL]
        with pytest.raises(jitpc.RemoteError) as info:
            client.request("ask", {"method": "refuse"})
        assert info.value.code == "E_REFUSED"
        with pytest.raises(jitpc.InternalError, match="reader thread"):
            client.request("ask", {"method": "reenter"})


@pytest.mark.usefixtures("server")
def test_respond_with_thread_runs_in_a_worker_that_may_use_the_sync_api(jitpc_id: str) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        threads: list[str] = []

        @client.respond("reenter", thread=True)
        def reenter(params: Any) -> Any:
            threads.append(threading.current_thread().name)
            return client.request("echo", params)  # the reader thread is free meanwhile

        def triple(params: Any) -> Any:
            threads.append(threading.current_thread().name)
            return params * 3

        assert client.respond("triple", triple, thread=True) is triple
        assert client.request("ask", {"method": "reenter", "params": 5}) == 5
        assert client.request("ask", {"method": "triple", "params": 2}) == 6
        assert threads == ["jitpc worker", "jitpc worker"]


def test_reconnect_across_a_server_restart(jitpc_id: str) -> None:
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(
            jitpc.sync.connect(jitpc_id, reconnect=True, connect_timeout=0, timeout=HANG)
        )
        with pytest.raises(jitpc.ConnectError):
            client.request("pid")  # no server yet
        assert not client.closed  # with reconnect, the next call tries again

        first = start_peer("sync_server.py", jitpc_id)
        stack.callback(stop_peer, first)
        client.respond("double", lambda params: params * 2)
        assert client.request("pid") == first.pid
        assert client.request("ask", {"method": "double", "params": 21}) == 42

        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                client.request("hang", "r")
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert read_line(first) == b"hang r\n"
        stop_peer(first)
        waiter.join(HANG)
        # In flight when the server died: it fails, and is never resent. By then the client
        # has dropped the dead connection.
        assert [type(exc) for exc in outcome] == [jitpc.ClosedError]
        assert not client.closed

        second = start_peer("sync_server.py", jitpc_id)
        stack.callback(stop_peer, second)
        assert client.request("pid") == second.pid
        # The responder carried over to the new connection.
        assert client.request("ask", {"method": "double", "params": 4}) == 8
        client.close()
        assert client.closed


@pytest.mark.usefixtures("server")
def test_two_threads_share_a_client(jitpc_id: str) -> None:
    errors: list[BaseException] = []

    with (
        jitpc.sync.connect(jitpc_id, timeout=HANG) as shared,
        jitpc.sync.connect(jitpc_id, timeout=HANG) as other,
    ):

        def work(n: int) -> None:
            try:
                for i in range(100):
                    assert shared.request("echo", [n, i]) == [n, i]
                    assert shared.call(Echo(text=f"{n}.{i}")).text == f"{n}.{i}"
                    assert other.request("echo", i) == i
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG)
        assert len(portal_threads()) == 2  # one reader per connection
    assert errors == []


def test_calling_from_a_running_event_loop_is_refused(jitpc_id: str) -> None:
    client = jitpc.sync.connect(jitpc_id)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            client.request("echo", 1)
        with pytest.raises(RuntimeError, match="running event loop"):
            client.notify("echo", 1)
        with pytest.raises(RuntimeError, match="running event loop"):
            client.close()

    asyncio.run(main())
    client.close()
    assert portal_threads() == []


EXIT_UNCLOSED = """
import sys
import jitpc.sync

jitpc_id = sys.argv[1]


def once():
    # Collected unclosed at once: its connection is destroyed, the portal released.
    return jitpc.sync.connect(jitpc_id).request("echo", "once")


assert once() == once() == "once"
client = jitpc.sync.connect(jitpc_id)
assert client.request("echo", 1) == 1
client.notify("echo", 2)
print("exited")
"""


@pytest.mark.usefixtures("server")
def test_a_program_that_never_closes_exits_cleanly(jitpc_id: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", EXIT_UNCLOSED, jitpc_id],
        capture_output=True,
        text=True,
        env=python_env(PYTHONASYNCIODEBUG="1"),
        timeout=HANG,
        cwd=ROOT,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "exited\n", "")


EXIT_PENDING = """
import atexit
import sys
import threading

import jitpc
import jitpc.sync

outcomes = []


def wait():
    try:
        client.request("hang", "exit")
    except BaseException as exc:
        outcomes.append(type(exc).__name__)


def report():
    # Registered before jitpc.sync's own handler, so it runs after it.
    waiter.join(60)
    try:
        client.request("echo", 1)
    except jitpc.ClosedError:
        outcomes.append("then ClosedError")
    print(outcomes, flush=True)


atexit.register(report)
client = jitpc.sync.connect(sys.argv[1])
waiter = threading.Thread(target=wait, daemon=True)
waiter.start()
sys.stdin.readline()  # until the server has the request
"""


def test_a_call_pending_at_exit_ends_with_closed_error(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-W", "error", "-c", EXIT_PENDING, jitpc_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(PYTHONASYNCIODEBUG="1"),
        cwd=ROOT,
    )
    try:
        assert read_line(sync_server) == b"hang exit\n"
        out, err = proc.communicate("\n", timeout=HANG)
    finally:
        proc.kill()
        proc.communicate()
    # Not concurrent.futures.CancelledError: the portal's loop shut down under the call.
    assert (proc.returncode, out, err) == (0, "['ClosedError', 'then ClosedError']\n", "")


def test_the_module_documents_itself() -> None:
    for obj in (jitpc.sync, jitpc.sync.connect, jitpc.sync.Client):
        assert obj.__doc__
    for name in ("open", "request", "call", "notify", "respond", "close"):
        assert getattr(jitpc.sync.Client, name).__doc__, name
    assert Path(jitpc.sync.__file__).name == "sync.py"
