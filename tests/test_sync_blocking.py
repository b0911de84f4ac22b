"""The blocking layer under ``jitpc.sync`` (``jitpc._blocking``): what it adds, and what it risks.

Plain tests: real processes and sockets, no event loop in the test's thread. Servers that
misbehave on purpose are raw Unix socket servers in a thread of the test (``RawServer``); the
jitpc servers are ``tests/peers/*.py``. No sleep synchronises anything: each wait is on an
event, with ``HANG`` only to catch a hang.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

import jitpc
import jitpc.sync
from jitpc._paths import address
from support import HANG, ROOT, peer_command, python_env, read_line, stop_peer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and fork")


class RawServer:
    """A Unix socket server at the id's path, in a thread: ``behave(conn)`` is given each
    accepted connection, after the request line it reads first (in ``self.lines``)."""

    def __init__(self, jitpc_id: str, behave: Callable[[socket.socket, bytes], None]) -> None:
        self.path = address(jitpc_id).socket
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen()
        self.behave = behave
        self.done = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conns.append(conn)
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            line += chunk
        self.behave(conn, line)
        self.done.set()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()
        os.unlink(self.path)


def run_python(code: str, *args: str, timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=timeout,
        cwd=ROOT,
    )


ONE_SHOT = """
import sys
import jitpc.sync

with jitpc.sync.connect(sys.argv[1], timeout=30) as client:
    print(client.request("echo", {"a": 1}))
"""


def test_an_untyped_one_shot_imports_neither_asyncio_nor_pydantic(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    run = run_python(ONE_SHOT, jitpc_id)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "{'a': 1}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "jitpc._blocking" in imported  # (the import-time report is there)
    for name in (
        "asyncio",
        "pydantic",
        "jitpc._method",
        "jitpc._connection",
        "concurrent",
        "typing",
    ):
        assert name not in imported, name


def test_a_cli_one_shot_imports_neither_asyncio_nor_pydantic(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    # call, notify, ping, status, where and discover run on the blocking layer.
    for argv in (["call", jitpc_id, "echo", '{"a":1}'], ["ping", jitpc_id]):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "jitpc", *argv],
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=HANG,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == ('{"a":1}\n' if argv[0] == "call" else "alive\n")
        imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
        assert "jitpc._blocking" in imported
        for name in ("asyncio", "pydantic", "pydantic_core", "dataclasses", "shutil", "typing"):
            assert name not in imported, (argv, name)


def test_spinup_and_spawn_through_the_sync_layer(jitpc_id: str, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    hook = jitpc.spawn(peer_command("spawn_daemon.py", jitpc_id, starts), env=python_env())
    clients = [jitpc.sync.connect(jitpc_id, spinup=hook, timeout=HANG) for _ in range(4)]
    pids: list[int] = []
    errors: list[BaseException] = []

    def ask(client: jitpc.sync.Client) -> None:
        try:
            pids.append(client.request("pid"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(client,)) for client in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG)
        assert errors == []
        # A herd of four sync clients started one daemon, and all found it.
        daemons = [int(line) for line in starts.read_text().split()]
        assert len(daemons) == 1 and pids == daemons * 4
    finally:
        for client in clients:
            with suppress(Exception):
                client.notify("quit")
            client.close()
        for pid in [int(line) for line in starts.read_text().split()] if starts.exists() else []:
            with suppress(ProcessLookupError):
                os.kill(pid, 9)


def test_a_spawned_daemon_that_crashes_is_reported(jitpc_id: str, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    hook = jitpc.spawn(
        peer_command("spawn_daemon.py", jitpc_id, starts, "--crash", 3), env=python_env()
    )
    with jitpc.sync.connect(jitpc_id, spinup=hook, timeout=HANG) as client:
        with pytest.raises(jitpc.ConnectError, match="exited with status 3 before it served"):
            client.request("pid")


def test_version_restart_through_the_sync_layer(jitpc_id: str, tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    def argv(version: str) -> list[str]:
        return peer_command("versioned_daemon.py", version, jitpc_id, "--starts", starts)

    old = subprocess.Popen(argv("1"), stdout=subprocess.PIPE, env=python_env())
    try:
        assert old.stdout is not None
        assert old.stdout.readline().decode().startswith("listening 1 ")
        hook = jitpc.spawn(argv("2"), env=python_env())
        with jitpc.sync.connect(
            jitpc_id,
            version="2",
            on_mismatch="restart",
            spinup=hook,
            timeout=HANG,
            connect_timeout=HANG,
        ) as client:
            status = client.request("rpc.status")
            assert status["version"] == "2"
            assert old.wait(HANG) == 0  # asked to stop, it did
            client.request("rpc.shutdown")
        pids = [int(line) for line in starts.read_text().split()]
        assert len(pids) == 2 and pids[0] == old.pid
    finally:
        stop_peer(old)
        for pid in [int(line) for line in starts.read_text().split()] if starts.exists() else []:
            with suppress(ProcessLookupError):
                os.kill(pid, 9)


def test_a_server_request_is_answered_by_sync_responders(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        client.respond("double", lambda params: params * 2)
        client.respond("slow", lambda params: params + 1, thread=True)

        @client.respond("broken")
        def broken(params: Any) -> Any:
            raise ValueError("broken on purpose")

        assert client.request("ask", {"method": "double", "params": 21}) == 42
        assert client.request("ask", {"method": "slow", "params": 1}) == 2
        with pytest.raises(jitpc.InternalError, match="broken on purpose"):
            client.request("ask", {"method": "broken"})
        with pytest.raises(jitpc.MethodNotFound):
            client.request("ask", {"method": "nobody answers this"})


def test_a_timeout_cancels_the_handler_on_the_server(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    with jitpc.sync.connect(jitpc_id, timeout=HANG) as client:
        done = threading.Event()
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                client.request("hang", "x", timeout=HANG / 2)
            except BaseException as exc:
                outcome.append(exc)
            done.set()

        # Connected first, so that the request goes out: with a deadline of 0 it is
        # cancelled as it goes, and the server's handler with it.
        assert client.request("echo", 1) == 1
        with pytest.raises(TimeoutError):
            client.request("hang", "y", timeout=0)
        assert client.request("cancelled", "y") == "cancelled"
        threading.Thread(target=call, daemon=True).start()
        while read_line(sync_server) != b"hang x\n":
            pass  # ("hang y" first, if its handler started before the cancel came)
        client.close(timeout=0)  # destroys: the waiting call ends
        assert done.wait(HANG)
        assert [type(exc) for exc in outcome] == [jitpc.ClosedError]


def _garbage(conn: socket.socket, line: bytes) -> None:
    conn.sendall(b"this is not json\n")  # answered -32700 by the core; the call still waits


def _dies_mid_message(conn: socket.socket, line: bytes) -> None:
    conn.sendall(b'{"jsonrpc":"2.0","id":1,"res')
    conn.close()


def _freezes(conn: socket.socket, line: bytes) -> None:
    pass  # reads the request, never answers, never reads again


@pytest.mark.parametrize("behave", [_garbage, _dies_mid_message, _freezes])
def test_a_misbehaving_peer_never_holds_a_call_past_its_timeout(
    jitpc_id: str, behave: Callable[[socket.socket, bytes], None]
) -> None:
    server = RawServer(jitpc_id, behave)
    try:
        client = jitpc.sync.connect(jitpc_id, connect_timeout=0.5)
        try:
            with pytest.raises((TimeoutError, jitpc.ClosedError)):
                client.request("echo", 1, timeout=0.2)
            assert server.done.wait(HANG)
        finally:
            client.close(timeout=0.2)
    finally:
        server.close()


def test_a_peer_that_does_not_read_does_not_block_writers(jitpc_id: str) -> None:
    server = RawServer(jitpc_id, _freezes)
    try:
        client = jitpc.sync.connect(jitpc_id)
        try:
            client.open(timeout=HANG)
            big = "x" * (1 << 20)
            with pytest.raises(TimeoutError):
                # Several MiB behind a peer that does not read: the kernel buffer fills, the
                # rest waits for the writer thread, and the caller's deadline holds.
                for _ in range(16):
                    client.request("echo", big, timeout=0.2)
        finally:
            client.close(timeout=0.2)
    finally:
        server.close()


FORK = """
import os, sys
import jitpc, jitpc.sync

client = jitpc.sync.connect(sys.argv[1], timeout=30)
assert client.request("echo", 1) == 1
pid = os.fork()
if pid == 0:
    try:
        client.request("echo", 2)
    except jitpc.ClosedError:
        print("child ClosedError", flush=True)
    with jitpc.sync.connect(sys.argv[1], timeout=30) as fresh:
        print("child", fresh.request("echo", 3), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", client.request("echo", 4), flush=True)
client.close()
"""


def test_a_forked_child_does_not_use_the_parents_connection(
    jitpc_id: str, sync_server: subprocess.Popen[bytes]
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", FORK, jitpc_id],
        capture_output=True,
        text=True,
        env=python_env(PYTHONWARNINGS="ignore:This process:DeprecationWarning"),
        timeout=HANG,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines() == ["child ClosedError", "child 3", "parent 4"]
