"""Where a server with a given id lives: the same paths Node's jitpc computes.

A Python and a Node process must agree on these byte for byte, so ``tmpdir`` reimplements
Node's ``os.tmpdir()`` rather than using :func:`tempfile.gettempdir`, which reads the variables
in another order and falls back differently (PROTOCOL.md §1).
"""

from __future__ import annotations

import errno
import ntpath
import os
import posixpath
import stat
import sys
from collections.abc import Mapping

__all__ = [
    "MAX_SOCKET_PATH_BYTES",
    "Address",
    "address",
    "check_owner",
    "file_identity",
    "open_existing_file",
    "tmpdir",
]

# sun_path is 108 bytes on Linux and 104 on macOS and the BSDs, including the trailing NUL.
MAX_SOCKET_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103


def tmpdir(env: Mapping[str, str] | None = None, *, platform: str = sys.platform) -> str:
    """Node's ``os.tmpdir()``: the directory that holds jitpc's lock (and socket) files."""
    if env is None:
        env = os.environ
    if platform == "win32":
        path = env.get("TEMP") or env.get("TMP")
        if not path:
            root = env.get("SystemRoot") or env.get("windir") or ""
            path = root + "\\temp"
        if len(path) > 1 and path.endswith("\\") and not path.endswith(":\\"):
            path = path[:-1]
        return path
    path = env.get("TMPDIR") or env.get("TMP") or env.get("TEMP") or "/tmp"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


class Address:
    """The files of one server id: its socket (or pipe), lock file and spawn log. Immutable;
    equal to another of the same paths.

    (A plain class, not a frozen dataclass: importing dataclasses costs a one-shot command
    ~20 ms, a fifth of it.)"""

    __slots__ = ("_lock", "_server_id", "_socket")
    _server_id: str
    _socket: str
    _lock: str

    def __init__(self, server_id: str, socket: str, lock: str) -> None:
        object.__setattr__(self, "_server_id", server_id)
        object.__setattr__(self, "_socket", socket)
        object.__setattr__(self, "_lock", lock)

    @property
    def server_id(self) -> str:
        """The id."""
        return self._server_id

    @property
    def socket(self) -> str:
        r"""The Unix socket (``<tmpdir>/<id>.sock``) or Windows named pipe (``\\.\pipe\<id>``)."""
        return self._socket

    @property
    def lock(self) -> str:
        """The lock file, ``<tmpdir>/<id>.lock``, held by the serving process."""
        return self._lock

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to {name!r}: an Address is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r}: an Address is immutable")

    def _fields(self) -> tuple[str, str, str]:
        return (self._server_id, self._socket, self._lock)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Address:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[type[Address], tuple[str, str, str]]:
        return (Address, self._fields())  # (copy and pickle, past __setattr__)

    def __repr__(self) -> str:
        return f"Address(server_id={self.server_id!r}, socket={self.socket!r}, lock={self.lock!r})"

    @property
    def log(self) -> str:
        """Where :func:`jitpc.spawn` appends a daemon's output by default: ``<tmpdir>/<id>.log``
        (rotated to ``.log.1``)."""
        return self.lock.removesuffix(".lock") + ".log"

    @property
    def spawn_lock(self) -> str:
        """Held by a spawning client until its daemon is ready: ``<tmpdir>/<id>.spawn.lock``."""
        return self.lock.removesuffix(".lock") + ".spawn.lock"


def address(
    server_id: str, env: Mapping[str, str] | None = None, *, platform: str = sys.platform
) -> Address:
    """The files of ``server_id``: ``.socket`` (the Unix socket, or the named pipe on Windows)
    and ``.lock`` as Node jitpc 2.x computes them, and ``.log``, where :func:`jitpc.spawn`
    writes a daemon's output by default. The tmpdir is read from the environment at each call
    (``TMPDIR``, then ``TMP``, ``TEMP``, ``/tmp``, as Node's ``os.tmpdir()``), not cached as
    :func:`tempfile.gettempdir` does. ``env`` and ``platform`` compute another machine's paths.

    Raises:
        ValueError: the id is empty or holds a NUL, or the socket path would be longer than the
            platform's limit for Unix socket paths.
    """
    if not server_id or "\0" in server_id:
        raise ValueError(f"a jitpc id must be a non-empty string without NUL, not {server_id!r}")
    base = tmpdir(env, platform=platform)
    # Node builds the paths with path.join(), which also normalises "..", "." and "//".
    if platform == "win32":
        lock = ntpath.normpath(base + "\\" + server_id) + ".lock"
        return Address(server_id, "\\\\.\\pipe\\" + server_id, lock)
    prefix = posixpath.normpath(base + "/" + server_id)
    sock = prefix + ".sock"
    size = len(os.fsencode(sock))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ValueError(
            f"the socket path for jitpc id {server_id!r} is {size} bytes, over this platform's "
            f"limit of {MAX_SOCKET_PATH_BYTES} for Unix socket paths: {sock!r}. Use a shorter id "
            "or point TMPDIR at a shorter directory."
        )
    return Address(server_id, sock, prefix + ".lock")


def file_identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of what ``path`` names (a symlink itself, not its target), or
    ``None`` if nothing: whether a lock or socket file is still the one we made."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def check_owner(st: os.stat_result, path: str, what: str) -> None:
    """Refuse a lock or socket file of another user (POSIX; Windows has no ``st_uid``, and the
    user's %TEMP% ACL is the barrier there).

    Raises:
        PermissionError: ``st`` belongs to another user; the message names both uids.
    """
    if sys.platform == "win32":
        return
    uid = os.geteuid()
    if st.st_uid != uid:
        raise PermissionError(
            errno.EACCES,
            f"jitpc {what} file is owned by uid {st.st_uid}, not by this user (uid {uid}); "
            "another user holds this id's path",
            path,
        )


# Read-only, never created, never through a symlink, never blocking on a FIFO put in its place.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOINHERIT", 0)
)


def open_existing_file(path: str, what: str) -> int | None:
    """A read-only descriptor of the regular file of this user's at ``path`` (in the shared
    tmpdir: see ``_READ_FLAGS``); ``None`` if there is no such file.

    Raises:
        OSError: it is not a regular file (``ELOOP`` for a symlink), or belongs to another
            user.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"jitpc {what} path is not a regular file", path)
        check_owner(st, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd
