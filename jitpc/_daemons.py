"""The servers in the tmpdir, as ``jitpc ls``, ``stop`` and ``logs`` see them: this user's
files, whether a lock is held, who listens, and the end of a log. Nothing here creates,
removes or locks a file, or starts a process.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import socket
import stat
import sys
from typing import Any

import jitpc

from ._lock import is_held, open_existing, wait_free
from ._paths import address, check_owner, open_existing_file
from ._peercred import peer_pid
from ._threads import run_in_own_thread

__all__ = [
    "Release",
    "candidates",
    "describe",
    "lock_held",
    "open_ours",
    "peer_pid_at",
    "send_signal",
    "tail",
    "whole",
]


def open_ours(path: str) -> int | None:
    """A read-only descriptor of the regular file at ``path`` if it is this user's, else
    ``None``."""
    try:
        return open_existing_file(path, "jitpc")
    except OSError:
        return None


def lock_held(path: str) -> bool | None:
    """Whether a process holds the id lock at ``path`` (this user's file); ``None`` if unknown
    (no such file, or a platform where asking would take the lock: see ``_lock.is_held``)."""
    fd = open_ours(path)
    if fd is None:
        return None
    try:
        return is_held(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def peer_pid_at(path: str) -> int | None:
    """The pid of the process listening at the Unix socket ``path``, from the kernel's peer
    credentials (it works for a Node server, which has no rpc.status); ``None`` if unknown.
    A connection of its own, closed at once: a server just sees a client come and go."""
    family = getattr(socket, "AF_UNIX", None)
    if family is None:
        return None
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)  # a full backlog fails at once rather than blocks
            sock.connect(path)
            return peer_pid(sock)
    except OSError:
        return None


def candidates(directory: str) -> list[str]:
    """The ids that have a lock or socket file in ``directory``, sorted."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return []
    ids = set()
    for name in names:
        for suffix in (".lock", ".sock"):
            if name.endswith(suffix) and len(name) > len(suffix):
                ids.add(name.removesuffix(suffix))
    # <id>.spawn.lock is jitpc.spawn's lock for id, not an id of its own (unless it listens).
    return sorted(i for i in ids if not (i.endswith(".spawn") and f"{i}.sock" not in names))


def _ours(path: str, kind: int) -> bool:
    """Whether ``path`` is a file of type ``kind`` (``stat.S_IFREG``, ``S_IFSOCK``) of ours."""
    try:
        st = os.lstat(path)
        check_owner(st, path, "jitpc")
    except OSError:
        return False
    return stat.S_IFMT(st.st_mode) == kind


def _number(value: Any) -> float | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else None


def whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def probe(server_id: str, timeout: float) -> tuple[str, Any]:
    """Ask ``server_id``'s socket for rpc.status once: ``("status", result)``, ``("lacks",
    None)`` (MethodNotFound: Node jitpc), ``("error", message)``, ``("silent", None)``
    (connected, no answer in time) or ``("absent", None)`` (nothing listens)."""
    client = jitpc.connect(server_id, connect_timeout=0)  # no spinup hook runs then
    connected = False
    try:
        async with asyncio.timeout(timeout):
            await client.open()
            connected = True
            try:
                outcome: tuple[str, Any] = ("status", await client.request("rpc.status"))
            except jitpc.MethodNotFound:
                outcome = ("lacks", None)
            except jitpc.RemoteError as exc:
                outcome = ("error", f"rpc.status failed: {exc}")
            await client.end()
            return outcome
    except jitpc.ConnectError:
        return ("absent", None)
    except (TimeoutError, jitpc.ClosedError, jitpc.ProtocolError):
        return ("silent", None) if connected else ("absent", None)
    finally:
        client.destroy()


async def describe(server_id: str, timeout: float) -> dict[str, Any] | None:
    """What ``ls`` shows for ``server_id``; ``None`` if none of its files is this user's."""
    paths = address(server_id)
    has_lock = _ours(paths.lock, stat.S_IFREG)
    windows = sys.platform == "win32"  # a pipe, not a file: always worth a try
    has_socket = windows or _ours(paths.socket, stat.S_IFSOCK)
    if not (has_lock or has_socket):
        return None
    entry: dict[str, Any] = {
        "id": server_id,
        "state": "stale",
        "pid": None,
        "version": None,
        "jitpc": None,
        "uptime": None,
        "clients": None,
        "note": None,
        "socket": paths.socket if has_socket else None,
        "lock": paths.lock if has_lock else None,
    }
    kind, found = await probe(server_id, timeout) if has_socket else ("absent", None)
    held = lock_held(paths.lock) if has_lock and kind in ("absent", "silent") else False
    if kind == "status":
        entry["state"] = "serving"
        status = found if isinstance(found, dict) else {}
        entry["pid"] = whole(status.get("pid"))
        version = status.get("version")
        entry["version"] = version if isinstance(version, str) else None
        library = status.get("jitpc")
        entry["jitpc"] = library if isinstance(library, str) else None
        entry["uptime"] = _number(status.get("uptime"))
        clients = whole(status.get("clients"))
        entry["clients"] = None if clients is None else max(0, clients - 1)  # not ls itself
    elif kind in ("lacks", "error"):
        entry["state"] = "serving"
        entry["pid"] = peer_pid_at(paths.socket)
        entry["note"] = "no rpc.status: Node jitpc?" if kind == "lacks" else found
    elif kind == "silent" or held:
        entry["state"] = "not answering"  # wedged, or between its lock and its listen
        entry["pid"] = peer_pid_at(paths.socket) if kind == "silent" else None
    elif held is None:
        entry["note"] = "lock state unknown"
    return entry


def tail(path: str, lines: int) -> tuple[bytes, int] | None:
    """The last ``lines`` lines of the file at ``path`` (of ours, regular), and how many
    there were; ``None`` if there is no such file."""
    fd = open_ours(path)
    if fd is None:
        return None
    try:
        end = os.fstat(fd).st_size
        data = b""
        # Chunks from the end until there are enough newlines: a log may be large.
        while end > 0 and data.count(b"\n", 0, len(data) - 1) < lines:
            start = max(0, end - 65536)
            os.lseek(fd, start, os.SEEK_SET)
            chunk = b""
            while len(chunk) < end - start and (more := os.read(fd, end - start - len(chunk))):
                chunk += more
            data = chunk + data
            end = start
    except OSError:
        return None
    finally:
        os.close(fd)
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a line still being written
    kept = data.splitlines(keepends=True)[-lines:] if lines else []
    return b"".join(kept), len(kept)


class Release:
    """The id's release, waited for in a thread blocked on its lock file: no polling. The
    lock file is opened at once (the file of the server about to be asked to stop); the
    thread closes it, so a wait that timed out can go on."""

    def __init__(self, path: str) -> None:
        try:
            self.watched = open_existing(path)
        except OSError:  # not a lock file of ours
            self.watched = None
        self.future: asyncio.Future[None] | None = None

    @property
    def lockless(self) -> bool:
        """Whether there is no lock file to wait on (not a jitpc server's socket)."""
        return self.watched is None

    async def wait(self, timeout: float) -> bool:
        """Whether the id was free within ``timeout`` seconds (or has no lock file).

        Raises:
            OSError: the lock could not be waited for.
        """
        watched = self.watched
        if watched is None:
            return True
        if self.future is None:
            self.future = run_in_own_thread(lambda: wait_free(watched), "jitpc stop")
        done, _ = await asyncio.wait((self.future,), timeout=timeout)
        if done:
            self.future.result()
        return bool(done)

    def close(self) -> None:
        """Close the lock file, unless a thread waits on it (that one closes it)."""
        if self.watched is not None and self.future is None:
            self.watched.release()


def send_signal(pid: int, signum: int) -> bool:
    """Send ``signum`` to ``pid``; ``False`` if there is no such process any more."""
    if pid <= 1 or pid == os.getpid():  # a pid a server's own answer should never give
        raise OSError(errno.EINVAL, f"will not signal pid {pid}")
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
