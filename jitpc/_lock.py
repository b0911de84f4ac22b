"""One server per id: an exclusive, non-blocking lock on ``<tmpdir>/<id>.lock``.

The lock must contend with the Node package's lock (PROTOCOL.md §2), so each platform takes the
same kind of lock Node takes: an open-file-description write lock over the whole file on Linux
(it conflicts inside one process too, unlike ``fcntl.lockf``), ``flock`` on macOS and the BSDs,
``LockFileEx`` on Windows. The kernel releases it when the process dies, so a crash never wedges
an id.

Rules kept here (see research T3 and T5):

1. The file is opened without following a symlink, without truncating, mode 0600, close-on-exec.
2. A lock file that is not a regular file, or is owned by another user, is an error rather than
   a silent "another server exists".
3. After locking, the path must still name the inode we locked: if a temp cleaner (or anyone)
   unlinked or replaced it between our open and our lock, we try again with the new file.
4. The lock file is never unlinked: leaving it is what makes rule 3 sufficient.
5. A forked child closes its copy of the descriptor (see ``_fork``): the lock belongs to the
   open file description, so a child's copy would keep the id locked after the server exits.
   Closing that copy does not unlock the parent's: nothing ever unlocks explicitly.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from . import _fork
from ._paths import check_owner, file_identity, open_existing_file

__all__ = ["Lock", "try_acquire", "wait_unlocked"]

_ATTEMPTS = 16


class Lock:
    """A held id lock. :meth:`release` (or process exit) gives the id up."""

    __slots__ = ("__weakref__", "_fd", "identity", "path")

    def __init__(self, fd: int, path: str, identity: tuple[int, int]) -> None:
        self._fd: int | None = fd
        self.path = path
        self.identity = identity

    @property
    def held(self) -> bool:
        return self._fd is not None

    def still_ours(self) -> bool:
        """Whether the lock path still names the file we hold locked."""
        return file_identity(self.path) == self.identity

    def release(self) -> None:
        """Release the lock; idempotent. Closing the descriptor drops the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def fileno(self) -> int:
        """The locked descriptor; -1 once released."""
        return -1 if self._fd is None else self._fd

    def detach(self) -> int:
        """Forget the descriptor without closing it (a forked child's copy, closed apart)."""
        fd, self._fd = self.fileno(), None
        return fd


if sys.platform == "win32":
    import ctypes
    import msvcrt
    from ctypes import wintypes

    _LOCKFILE_FAIL_IMMEDIATELY = 0x1
    _LOCKFILE_EXCLUSIVE_LOCK = 0x2
    _ERROR_LOCK_VIOLATION = 33
    _MAXDWORD = 0xFFFFFFFF

    class _Overlapped(ctypes.Structure):
        _fields_ = [
            ("Internal", ctypes.c_void_p),
            ("InternalHigh", ctypes.c_void_p),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        ]

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _LockFileEx = _kernel32.LockFileEx
    _LockFileEx.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    ]
    _LockFileEx.restype = wintypes.BOOL
    _UnlockFileEx = _kernel32.UnlockFileEx
    _UnlockFileEx.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    ]
    _UnlockFileEx.restype = wintypes.BOOL

    _OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_BINARY | os.O_NOINHERIT

    def wait_unlocked(fd: int) -> None:
        """Block until no process holds the lock on the file ``fd`` (opened by the caller):
        a blocking shared lock over the region the lock covers, dropped at once."""
        handle = msvcrt.get_osfhandle(fd)
        overlapped = _Overlapped()
        if not _LockFileEx(handle, 0, 0, _MAXDWORD, _MAXDWORD, ctypes.byref(overlapped)):
            raise ctypes.WinError(ctypes.get_last_error())
        _UnlockFileEx(handle, 0, _MAXDWORD, _MAXDWORD, ctypes.byref(overlapped))

    def is_held(fd: int) -> bool | None:
        """Whether a process holds the lock on the file ``fd``: unknown here (``None``), as
        LockFileEx can only be asked by taking the lock, which would make a server's
        ``listen()`` at that instant fail."""
        return None

    def _try_lock(fd: int) -> bool:
        handle = msvcrt.get_osfhandle(fd)
        overlapped = _Overlapped()
        ok = _LockFileEx(
            handle,
            _LOCKFILE_EXCLUSIVE_LOCK | _LOCKFILE_FAIL_IMMEDIATELY,
            0,
            _MAXDWORD,
            _MAXDWORD,
            ctypes.byref(overlapped),
        )
        if ok:
            return True
        code = ctypes.get_last_error()
        if code == _ERROR_LOCK_VIOLATION:
            return False
        raise ctypes.WinError(code)

else:
    import fcntl
    import struct

    _OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

    if sys.platform == "linux":
        # struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
        # l_start = l_len = 0: the whole file, however far it grows. l_pid must be 0 for OFD locks.
        _FLOCK = struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)

        # A whole-file OFD read lock: it waits while the write lock is held (OFD locks
        # conflict inside one process too).
        _RDLOCK = struct.pack("@hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)

        def wait_unlocked(fd: int) -> None:
            """Block until no process holds the lock on the file ``fd``; keeps a shared lock
            (the caller closes ``fd``)."""
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _RDLOCK)

        def is_held(fd: int) -> bool | None:
            """Whether a process holds the lock on the file ``fd``. F_OFD_GETLK only asks: it
            takes no lock, so a server whose ``listen()`` tries the lock at that instant still
            gets it (a try-lock, even shared and dropped at once, would make it fail)."""
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK)
            return bool(struct.unpack("@hhqqi4x", answer)[0] != fcntl.F_UNLCK)

        def _try_lock(fd: int) -> bool:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            return True

    else:

        def wait_unlocked(fd: int) -> None:
            """Block until no process holds the lock on the file ``fd``; keeps a shared lock
            (the caller closes ``fd``)."""
            fcntl.flock(fd, fcntl.LOCK_SH)

        def is_held(fd: int) -> bool | None:
            """Whether a process holds the lock on the file ``fd``: unknown here (``None``), as
            flock can only be asked by taking the lock, which would make a server's
            ``listen()`` at that instant fail."""
            return None

        def _try_lock(fd: int) -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    return False
                raise
            return True


def open_existing(path: str, what: str = "lock") -> Lock | None:
    """The lock file at ``path``, opened read-only to watch it (never created), as a
    :class:`Lock` that holds no lock yet; ``None`` if there is no such file. Tracked, so that
    a child forked while it waits closes its copy (a read lock taken by :func:`wait_free`
    belongs to the open file, and a copy would keep the id taken).

    Raises:
        OSError: it is not a regular file, or (POSIX) belongs to another user.
    """
    fd = open_existing_file(path, what)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        watched = Lock(fd, path, (st.st_dev, st.st_ino))
        _fork.track(watched)
    except BaseException:
        os.close(fd)
        raise
    return watched


def wait_free(watched: Lock) -> None:
    """Block until no process holds the lock on ``watched`` (from :func:`open_existing`),
    then close it, which drops the shared lock the wait took."""
    try:
        if watched.held:
            wait_unlocked(watched.fileno())
    finally:
        watched.release()


def wait_free_at(path: str, what: str = "lock") -> None:
    """Block until no process holds the lock file at ``path`` (or there is none).

    Raises:
        OSError: as for :func:`open_existing`.
    """
    watched = open_existing(path, what)
    if watched is not None:
        wait_free(watched)


def try_acquire(path: str) -> Lock | None:
    """Take the id lock at ``path``; ``None`` if another process (or listener) holds it.

    Raises:
        OSError: the file cannot be opened or locked (``ELOOP`` for a symlink), is not a regular
            file, or (POSIX) belongs to another user.
    """
    for _ in range(_ATTEMPTS):
        fd = os.open(path, _OPEN_FLAGS, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "jitpc lock path is not a regular file", path)
            check_owner(st, path, "lock")
            if not _try_lock(fd):
                os.close(fd)
                return None
            lock = Lock(fd, path, (st.st_dev, st.st_ino))
            _fork.track(lock)
        except BaseException:
            os.close(fd)
            raise
        if lock.still_ours():
            return lock
        # The file was unlinked or replaced between our open and our lock: the lock we hold is
        # on an orphaned inode that nobody else will ever contend for. Start again.
        lock.release()
    raise OSError(errno.EAGAIN, "jitpc lock file keeps being replaced under us", path)
