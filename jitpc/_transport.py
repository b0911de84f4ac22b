"""The platform seam: open and serve a local stream endpoint (Unix socket or named pipe).

Everything above this module sees an :class:`asyncio.Protocol` fed by a transport, whatever the
platform. The server side is only ever called while holding the id lock, which is what entitles
it to remove a stale socket file (PROTOCOL.md §2, research T4):

1. A stale path is removed only if it is a socket owned by this user; anything else is an error.
2. The socket is bound under umask 0177, so it is 0600 from its first instant (T10).
3. On close, the socket file is unlinked only if the path still names the socket we bound, so a
   closing server never removes the socket of a newer one.
4. A forked child closes its copies of the listening and connecting sockets (see ``_fork``),
   and never stops or unlinks its parent's listener.

The blocking layer (:mod:`jitpc.sync`) connects through :func:`open_blocking`: a blocking
:class:`Stream` with the same checks. asyncio is imported only by the asyncio functions here
(on POSIX: the blocking layer never imports it; on Windows, ``_winpipe`` does).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import sys
from collections.abc import Callable

from . import _fork
from ._paths import check_owner, file_identity
from ._peercred import check_peer

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Protocol

    class Stream(Protocol):
        """A connected blocking stream, for the blocking layer: one thread may :meth:`recv` while
        others send (under the caller's own lock)."""

        def recv(self, size: int) -> bytes:
            """Block until some bytes come; ``b""`` at the end of the stream (or once shut down).

            Raises:
                OSError: the stream failed.
            """

        def send_nowait(self, data: bytes) -> int:
            """Write what can be written without blocking; return how many bytes were."""

        def sendall(self, data: bytes) -> None:
            """Write it all, blocking as long as the peer does not read (until :meth:`shutdown`)."""

        def shutdown(self) -> None:
            """Wake :meth:`recv` and :meth:`sendall` in other threads: both ends are done."""

        def close(self) -> None:
            """Release the descriptor. Idempotent."""


__all__ = [
    "Listener",
    "is_retryable",
    "open_blocking",
    "open_stream",
    "peer_gone",
    "serve",
]

ProtocolFactory = Callable[[], "asyncio.Protocol"]


#: Listen backlog: Node's default. A full backlog makes connects fail or (Linux) half-succeed.
BACKLOG = 511


class Listener:
    """A bound, listening endpoint; :meth:`close` stops it and removes what it created."""

    def __init__(self, server: asyncio.AbstractServer, path: str, identity: tuple[int, int] | None):
        self._server = server
        self.path = path
        self._identity = identity
        self._pid = os.getpid()

    def still_ours(self) -> bool:
        """Whether the endpoint's path still names what we bound (a cleaner may have removed it)."""
        return file_identity(self.path) == self._identity if self._identity is not None else True

    def close(self) -> None:
        """Stop accepting, and remove the socket file if it is still ours. Idempotent."""
        if self._pid != os.getpid():
            return  # a forked child: the parent's listener (its loop does not run here)
        # Check and unlink while our socket still exists: once closed, its inode number may
        # be reused by a new server's socket at the same path.
        if self._identity is not None and self.still_ours():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._identity = None
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


if sys.platform == "win32":
    # Named pipes for this user only: owner-only DACL, first-instance and reject-remote-clients
    # flags, and each end checks the other's user (research T12; see _winpipe).
    from . import _winpipe

    _RETRYABLE = frozenset({errno.ENOENT, errno.EAGAIN, errno.ECONNREFUSED})

    def is_retryable(exc: OSError) -> bool:
        """Whether a failed connect may succeed later (no server yet, or a busy one)."""
        return exc.errno in _RETRYABLE or exc.winerror in _winpipe.RETRYABLE_WINERRORS

    import _winapi
    import time

    class _PipeStream:
        """A blocking client end of a named pipe, with overlapped reads and writes (so that a
        read pending in one thread does not hold writes in others, as on a synchronous
        handle). Writes never skip the queue: :meth:`send_nowait` writes nothing, and the
        blocking layer's writer thread writes it all."""

        def __init__(self, pipe: _winpipe.PipeHandle) -> None:
            self._pipe: _winpipe.PipeHandle | None = pipe
            self._handle = pipe.handle

        def _wait(self, ov: Any, err: int) -> int:
            try:
                if err == _winapi.ERROR_IO_PENDING:
                    _winapi.WaitForMultipleObjects([ov.event], False, _winapi.INFINITE)
            except BaseException:
                ov.cancel()
                raise
            done, err = ov.GetOverlappedResult(True)
            return int(done)

        def recv(self, size: int) -> bytes:
            if self._pipe is None:
                return b""
            try:
                ov, err = _winapi.ReadFile(self._handle, size, overlapped=True)
                self._wait(ov, err)
            except OSError as exc:
                if exc.winerror in (109, 232, 995) or self.closed:
                    return b""  # broken pipe, pipe being closed, I/O aborted: the end
                raise
            data = ov.getbuffer()
            return b"" if data is None else bytes(data)

        @property
        def closed(self) -> bool:
            return self._pipe is None

        def send_nowait(self, data: bytes) -> int:
            return 0

        def sendall(self, data: bytes) -> None:
            view = memoryview(data)
            while view:
                if self._pipe is None:
                    raise BrokenPipeError(errno.EPIPE, "jitpc pipe closed")
                ov, err = _winapi.WriteFile(self._handle, view, overlapped=True)
                view = view[self._wait(ov, err) :]

        def shutdown(self) -> None:
            self.close()  # closing the handle aborts the I/O pending on it

        def close(self) -> None:
            pipe, self._pipe = self._pipe, None
            if pipe is not None:
                pipe.close()

    def open_blocking(path: str, timeout: float | None) -> Stream:
        """Connect to the named pipe at ``path``, served by a process of this user, as a
        blocking :class:`Stream` (``timeout`` bounds waiting for a free pipe instance).

        Raises:
            PermissionError: the server runs as another user, or the pipe refuses this user.
            OSError: no connection (see :func:`is_retryable`).
        """
        pipe = _winpipe._open(path)
        if pipe is None:
            for delay in _winpipe._BUSY_DELAYS:
                time.sleep(delay if timeout is None else max(0.0, min(delay, timeout)))
                pipe = _winpipe._open(path)
                if pipe is not None:
                    break
            else:
                import ctypes

                raise ctypes.WinError(_winpipe._ERROR_PIPE_BUSY)
        try:
            _winpipe._peer(pipe, server=True)  # before we send anything
        except BaseException:
            pipe.close()
            raise
        return _PipeStream(pipe)

    async def open_stream(path: str, factory: ProtocolFactory) -> asyncio.BaseTransport:
        """Connect to the named pipe at ``path``, served by a process of this user.

        Raises:
            PermissionError: the server runs as another user, or the pipe refuses this user.
            OSError: no connection (see :func:`is_retryable`).
        """
        return await _winpipe.connect(path, factory)

    def peer_gone(transport: asyncio.BaseTransport) -> bool:
        """Pipes do not half-close: an end of stream is the whole connection."""
        return True

    async def serve(path: str, factory: ProtocolFactory) -> Listener:
        """Serve the named pipe at ``path``. The caller must hold the id lock.

        Raises:
            PermissionError: the pipe name is taken (pipe names are machine-wide on Windows).
        """
        return Listener(await _winpipe.serve(path, factory), path, None)

else:
    _RETRYABLE = frozenset(
        {errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOTCONN, errno.ECONNRESET}
    )

    def is_retryable(exc: OSError) -> bool:
        """Whether a failed connect may succeed later (no server yet, or a full backlog)."""
        return exc.errno in _RETRYABLE

    async def open_stream(path: str, factory: ProtocolFactory) -> asyncio.BaseTransport:
        """Connect to the Unix socket at ``path``, served by a process of this user.

        Raises:
            PermissionError: the server runs as another user.
            OSError: no connection (see :func:`is_retryable`).
        """
        import asyncio

        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _fork.track(sock, sole=_fork.sole_owner(loop))
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, path)
            # On Linux a full backlog makes connect() fail with EAGAIN, which asyncio takes for
            # "in progress" and then reports as success on an unconnected socket (research T15).
            # getpeername() tells the difference: ENOTCONN, which the caller retries.
            sock.getpeername()
            check_peer(sock)  # a server of another user is refused before anything is sent
            transport, _ = await loop.create_unix_connection(factory, sock=sock)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, ConnectionRefusedError) and not _is_socket(path):
                # Not a stale socket that a new server will replace: no point retrying.
                raise _not_a_socket(path) from None
            raise
        return transport

    class _SocketStream:
        """A blocking Unix socket; :meth:`send_nowait` uses ``MSG_DONTWAIT``."""

        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def recv(self, size: int) -> bytes:
            return self._sock.recv(size)

        def send_nowait(self, data: bytes) -> int:
            try:
                return self._sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return 0

        def sendall(self, data: bytes) -> None:
            self._sock.sendall(data)

        def shutdown(self) -> None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more, or closed

        def close(self) -> None:
            self._sock.close()

    # The most a blocking connect waits for a connect in progress (Unix sockets do not make
    # one, in practice) when the caller has no deadline.
    _CONNECT_WAIT = 10.0

    def open_blocking(path: str, timeout: float | None) -> Stream:
        """Connect to the Unix socket at ``path``, served by a process of this user, as a
        blocking :class:`Stream` (``timeout`` bounds the connect itself).

        Raises:
            PermissionError: the server runs as another user.
            OSError: no connection (see :func:`is_retryable`).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _fork.track(sock)  # ours alone: a forked child detaches and closes its copy
        try:
            # Not blocking while connecting: a full backlog is EAGAIN (retried), as in
            # open_stream, rather than a wait.
            sock.settimeout(_CONNECT_WAIT if timeout is None else max(timeout, 0.0))
            sock.connect(path)
            sock.getpeername()  # (see open_stream)
            check_peer(sock)  # a server of another user is refused before anything is sent
            sock.settimeout(None)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, ConnectionRefusedError) and not _is_socket(path):
                raise _not_a_socket(path) from None
            raise
        return _SocketStream(sock)

    def _not_a_socket(path: str) -> FileExistsError:
        return FileExistsError(errno.EEXIST, "jitpc socket path exists and is not a socket", path)

    def _is_socket(path: str) -> bool:
        try:
            return stat.S_ISSOCK(os.lstat(path).st_mode)
        except OSError:
            return True  # gone meanwhile: as good as a missing socket, which is retried

    def peer_gone(transport: asyncio.BaseTransport) -> bool:
        """After end-of-stream: whether the peer closed its whole connection (it exited or
        closed), rather than only its sending half. Linux and the BSDs raise POLLHUP then."""
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))

    def _remove_stale(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise _not_a_socket(path)
        check_owner(st, path, "socket")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    async def serve(path: str, factory: ProtocolFactory) -> Listener:
        """Serve the Unix socket at ``path``. The caller must hold the id lock."""
        import asyncio

        loop = asyncio.get_running_loop()
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _fork.track_listener(sock, path, sole=_fork.sole_owner(loop))
        try:
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            identity = file_identity(path)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            server = await loop.create_unix_server(factory, sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise
        return Listener(server, path, identity)
