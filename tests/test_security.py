"""Only the same OS user gets in, or poses as a server (research T1-T4, T10).

The other user is played by a forked child that drops to uid 4321: the tests need root, as CI
has. File modes are opened up on purpose, as on a platform that ignores socket permissions, so
that only the peer-credential checks stand in the way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import jitpc
from support import HANG

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="Unix users"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root"),
]

OTHER_UID = 4321


def as_other_user(body: Callable[[], None]) -> int:
    """Fork a child that runs ``body`` as uid 4321 (no exec: the interpreter is loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            body()
            code = 0
        except BaseException:
            # os._exit() would drop the traceback: write it (unbuffered) to the stderr pytest
            # captures, so that a failing child says why.
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)
    return pid


async def reap_child(pid: int) -> int:
    _, status = await asyncio.wait_for(asyncio.to_thread(os.waitpid, pid, 0), HANG)
    return os.waitstatus_to_exitcode(status)


async def test_server_refuses_a_client_of_another_user(
    jitpc_id: str, jitpc_tmpdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[object] = []

    def on_client(client: jitpc.Client) -> None:
        calls.append(client)
        client.respond("echo", lambda params: params)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    sock_path = jitpc_tmpdir / f"{jitpc_id}.sock"
    os.chmod(jitpc_tmpdir, 0o755)
    os.chmod(sock_path, 0o777)
    reader_fd, writer_fd = os.pipe()

    def foreign_client() -> None:
        os.close(reader_fd)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(HANG)
            sock.connect(str(sock_path))  # the file modes let it in
            # The server closes the connection as it accepts it, before or after the request
            # is out: the refusal shows as EPIPE on sending (closed first), ECONNRESET on
            # receiving (closed with the request unread) or EOF (closed after reading it).
            # Each is "closed without an answer"; an answer, a timeout or any other error is not.
            try:
                sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":1}\n')
                reply = sock.recv(1024)
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
        os.write(writer_fd, b"closed" if reply == b"" else b"answered:" + reply)

    async with server:
        with caplog.at_level(logging.WARNING, logger="jitpc"):
            pid = as_other_user(foreign_client)
            os.close(writer_fd)
            outcome = await asyncio.to_thread(os.read, reader_fd, 1024)
            os.close(reader_fd)
            assert await reap_child(pid) == 0
        assert outcome == b"closed"
        assert calls == []  # it never became a client
        assert any(f"uid {OTHER_UID}" in r.getMessage() for r in caplog.records)
        # The server still serves its own user.
        async with jitpc.connect(jitpc_id) as client:
            assert await client.request("echo", 2) == 2


async def test_client_refuses_a_server_of_another_user(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    sock_path = jitpc_tmpdir / f"{jitpc_id}.sock"
    os.chmod(jitpc_tmpdir, 0o777)
    reader_fd, writer_fd = os.pipe()
    release_r, release_w = os.pipe()

    def impostor() -> None:
        os.close(reader_fd)
        os.close(release_w)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(sock_path))
            os.chmod(sock_path, 0o777)
            sock.listen()
            os.write(writer_fd, b"listening")
            os.read(release_r, 1)  # until the test is done

    pid = as_other_user(impostor)
    os.close(writer_fd)
    os.close(release_r)
    try:
        assert await asyncio.to_thread(os.read, reader_fd, 64) == b"listening"
        client = jitpc.connect(jitpc_id, spinup=lambda: None)
        with pytest.raises(jitpc.ConnectError, match=f"uid {OTHER_UID}") as info:
            await asyncio.wait_for(client.request("echo", 1), HANG)
        assert isinstance(info.value.__cause__, PermissionError)
    finally:
        os.close(release_w)
        os.close(reader_fd)
        await reap_child(pid)


async def test_listen_refuses_a_socket_file_of_another_user(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    sock_path = jitpc_tmpdir / f"{jitpc_id}.sock"
    with socket.socket(socket.AF_UNIX) as squatter:
        squatter.bind(str(sock_path))
    os.chown(sock_path, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionError, match=f"owned by uid {OTHER_UID}"):
        await jitpc.listen(jitpc_id)
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)  # left alone
    assert os.lstat(sock_path).st_uid == OTHER_UID


async def test_listen_refuses_a_lock_file_of_another_user(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    lock_path = jitpc_tmpdir / f"{jitpc_id}.lock"
    lock_path.touch()
    os.chown(lock_path, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionError, match=f"owned by uid {OTHER_UID}"):
        await jitpc.listen(jitpc_id)


async def test_listen_never_follows_a_symlinked_lock(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    sentinel = jitpc_tmpdir / "sentinel"
    sentinel.write_bytes(b"precious")
    (jitpc_tmpdir / f"{jitpc_id}.lock").symlink_to(sentinel)
    with pytest.raises(OSError, match="Too many levels of symbolic links|symbolic link"):
        await jitpc.listen(jitpc_id)
    assert sentinel.read_bytes() == b"precious"


async def test_listen_refuses_a_path_that_is_not_a_socket(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    (jitpc_tmpdir / f"{jitpc_id}.sock").write_bytes(b"not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        await jitpc.listen(jitpc_id)
    assert (jitpc_tmpdir / f"{jitpc_id}.sock").read_bytes() == b"not a socket"
    # The lock was released again: once the path is fixed, the id can be served.
    (jitpc_tmpdir / f"{jitpc_id}.sock").unlink()
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    await server.close()
