"""The blocking facade, ``jitpc.sync``, against a real server in another process.

These are plain (non-async) tests: the sync API blocks, and must not be called from a running
event loop. Each test runs ``tests/peers/echo_server.py`` (see its docstring for the methods).
"""

from __future__ import annotations

import asyncio
import select
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
from support import HANG, ROOT, peer_command, python_env

PORTAL = "jitpc.sync portal"


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
    return [t for t in threading.enumerate() if t.name == PORTAL]


@pytest.fixture(autouse=True)
def no_portal_left() -> Iterator[None]:
    """Every test closes its clients: the portal thread is gone when the last one closes."""
    yield
    assert portal_threads() == []


def start_server(server_id: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        peer_command("echo_server.py", server_id, "off"),
        stdout=subprocess.PIPE,
        env=python_env(),
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HANG)
    assert ready, "the server did not start"
    assert proc.stdout.readline() == b"listening\n"
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(HANG)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def server(server_id: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_server(server_id)
    try:
        yield proc
    finally:
        stop_server(proc)


@pytest.mark.usefixtures("server")
def test_request_call_and_notify(server_id: str) -> None:
    told = threading.Event()
    received: list[Any] = []

    with jitpc.sync.connect(server_id, timeout=HANG) as client:
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
def test_errors_are_the_async_clients(server_id: str) -> None:
    with jitpc.sync.connect(server_id, timeout=HANG) as client:
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


def test_connect_error_without_a_server(server_id: str) -> None:
    client = jitpc.sync.connect(server_id)
    with pytest.raises(jitpc.ConnectError) as info:
        client.request("echo", 1)  # after the whole back-off, about 7 s
    assert info.value.server_id == server_id
    assert client.closed
    with pytest.raises(jitpc.ConnectError):
        client.request("echo", 1)  # at once: the client stays failed
    client.close()


def test_spinup_runs_in_a_worker_thread_and_starts_the_server(server_id: str) -> None:
    started: list[subprocess.Popen[bytes]] = []
    threads: list[str] = []

    def spinup() -> None:
        threads.append(threading.current_thread().name)
        started.append(
            subprocess.Popen(
                peer_command("echo_server.py", server_id, "off"),
                stdout=subprocess.DEVNULL,
                env=python_env(),
            )
        )

    client = jitpc.sync.connect(server_id, spinup=spinup)
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
def test_timeout_cancels_the_request_and_the_client_goes_on(server_id: str) -> None:
    with jitpc.sync.connect(server_id, timeout=0.05) as client:
        with pytest.raises(TimeoutError):
            client.request("sleep", 0.5)  # the client's default timeout
        with pytest.raises(TimeoutError):
            client.call(Echo(text="x"), timeout=0)
        # The first sleep's late response comes while this one waits: it is discarded.
        assert client.request("sleep", 0.8, timeout=HANG) == 0.8
        assert client.request("echo", "ok", timeout=HANG) == "ok"


@pytest.mark.usefixtures("server")
def test_close_and_the_context_manager(server_id: str) -> None:
    client = jitpc.sync.connect(server_id)
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

    unused = jitpc.sync.connect(server_id)
    unused.close()  # never used: nothing to do, no thread started
    assert unused.closed

    with pytest.raises(ZeroDivisionError), jitpc.sync.connect(server_id) as failing:
        failing.request("echo", 1)
        raise ZeroDivisionError  # the block raised: the connection is destroyed
    assert failing.closed


@pytest.mark.usefixtures("server")
def test_respond_answers_the_servers_requests_in_the_portal_thread(server_id: str) -> None:
    with jitpc.sync.connect(server_id, timeout=HANG) as client:
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
        with pytest.raises(jitpc.InternalError, match="running event loop"):
            client.request("ask", {"method": "reenter"})


@pytest.mark.usefixtures("server")
def test_two_threads_share_a_client_and_the_portal(server_id: str) -> None:
    errors: list[BaseException] = []

    with (
        jitpc.sync.connect(server_id, timeout=HANG) as shared,
        jitpc.sync.connect(server_id, timeout=HANG) as other,
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
        assert len(portal_threads()) == 1
    assert errors == []


def test_calling_from_a_running_event_loop_is_refused(server_id: str) -> None:
    client = jitpc.sync.connect(server_id)

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

server_id = sys.argv[1]


def once():
    # Collected unclosed at once: its connection is destroyed, the portal released.
    return jitpc.sync.connect(server_id).request("echo", "once")


assert once() == once() == "once"
client = jitpc.sync.connect(server_id)
assert client.request("echo", 1) == 1
client.notify("echo", 2)
print("exited")
"""


@pytest.mark.usefixtures("server")
def test_a_program_that_never_closes_exits_cleanly(server_id: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", EXIT_UNCLOSED, server_id],
        capture_output=True,
        text=True,
        env=python_env(PYTHONASYNCIODEBUG="1"),
        timeout=HANG,
        cwd=ROOT,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "exited\n", "")


def test_the_module_documents_itself() -> None:
    for obj in (jitpc.sync, jitpc.sync.connect, jitpc.sync.Client):
        assert obj.__doc__
    for name in ("open", "request", "call", "notify", "respond", "close"):
        assert getattr(jitpc.sync.Client, name).__doc__, name
    assert Path(jitpc.sync.__file__).name == "sync.py"
