"""``jitpc.spawn``: a spinup hook that starts a detached daemon and returns once it serves.

Readiness is said, never polled for. The daemon inherits the write end of a pipe, named by
``JITPC_READY_FD`` (``FD:INODE`` on POSIX, the handle on Windows); its ``listen()`` calls
:func:`announce`, which writes one JSON line, ``{"state": "listening" | "busy", "socket": PATH,
"pid": PID}``, closes the pipe and removes the variable, so that the daemon's own children never
inherit the duty. A daemon that exits, or closes the pipe, without that line is a failure,
reported at once with its exit status and the tail of its log.

One daemon for a herd (research Table B: watchman takes its pidfile lock before daemonising):

* In one process, the spawns of one id on one event loop (or in the blocking layer,
  :mod:`jitpc.sync`) queue behind one lock; those that waited behind a spawn take its outcome
  instead of spawning again.
* Across processes, ``<tmpdir>/<id>.spawn.lock`` is held from before the spawn until the daemon
  has spoken or died. A process that finds it held waits until it is free (blocked on the lock
  in a thread: woken by its release, not by a timer), then, holding it in turn, tries the socket
  once more and spawns only if nobody answers.

The hook's sequencing is steps (see :mod:`._steps`): the same for both I/O layers, which only
perform its waits (the spawn lock, the readiness line, the daemon's exit).

Zombies: while we live, the daemon is our child, and a thread waits for it, so its exit is
reaped whenever it comes (and reported if it comes before the announcement). If we exit first,
it is reparented, and its new parent reaps it.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import ConnectError
from ._lock import try_acquire
from ._paths import address, check_owner
from ._steps import Queue, Ready, Scope, Turn, WaitFree

if TYPE_CHECKING:
    from ._steps import Steps

__all__ = ["LOG_MAX_BYTES", "READY_ENV", "Spawn", "announce", "pass_pipe", "spawn"]

#: The environment variable that names the readiness pipe of a daemon started by spawn().
READY_ENV = "JITPC_READY_FD"
#: A log file over this size is rotated (to ``<log>.1``) before the next spawn appends to it.
LOG_MAX_BYTES = 1 << 20
#: Lines of the daemon's log quoted in a ConnectError.
TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024
# After the pipe's end of file, how long to wait for the daemon's exit status before reporting
# it as alive but silent: a dying process closes its files just before it becomes a zombie.
_EXIT_GRACE = 1.0

StrPath = str | os.PathLike[str]


def announce(state: str, socket: str) -> None:
    """Tell the process that started this one with :func:`spawn` how ``listen()`` went.

    ``state`` is ``"listening"`` (we serve ``socket``) or ``"busy"`` (another process does).
    Only the first call of a process started by :func:`spawn` writes anything: the variable is
    removed from ``os.environ`` first. Never raises: a spawner that has given up is no error.
    """
    value = os.environ.pop(READY_ENV, None)
    if not value:
        return
    try:
        fd = _ready_fd(value)
    except (ValueError, OSError):
        return  # not a pipe of ours: leave it alone
    line = json.dumps({"state": state, "socket": socket, "pid": os.getpid()}) + "\n"
    try:
        os.write(fd, line.encode())  # one write below PIPE_BUF: atomic
    except OSError:
        pass  # EPIPE: the spawner stopped waiting
    finally:
        os.close(fd)


if sys.platform == "win32":
    import _winapi
    import msvcrt

    _READ_FLAGS = os.O_RDONLY | os.O_BINARY | os.O_NOINHERIT
    _LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_BINARY | os.O_NOINHERIT
    _PRIVATE = 0

    def _ready_fd(value: str) -> int:
        handle = int(value)
        # Another process's handle number means nothing here: write only to a pipe.
        if _winapi.GetFileType(handle) != _winapi.FILE_TYPE_PIPE:
            raise ValueError(value)
        return msvcrt.open_osfhandle(handle, os.O_WRONLY)

    def pass_pipe(env: dict[str, str], w: int) -> dict[str, Any]:
        """Popen's arguments that hand the child the readiness pipe's write end ``w`` (named
        in ``env``), and no other handle."""
        handle = msvcrt.get_osfhandle(w)
        os.set_handle_inheritable(handle, True)
        env[READY_ENV] = str(handle)
        # Only the std handles and this one are inherited (not every inheritable handle).
        return {"startupinfo": subprocess.STARTUPINFO(lpAttributeList={"handle_list": [handle]})}

    def _detached(env: dict[str, str], w: int) -> dict[str, Any]:
        """:func:`pass_pipe`'s arguments, and those that detach the daemon."""
        return {
            **pass_pipe(env, w),
            "creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP,
        }

else:
    _READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
    _LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    # For files in the shared temp dir: no symlink, and no blocking open of a planted FIFO.
    _PRIVATE = os.O_NOFOLLOW | os.O_NONBLOCK

    def _ready_fd(value: str) -> int:
        fd, inode = (int(part) for part in value.split(":"))
        st = os.fstat(fd)
        # The number alone could name any file of a process that inherited the variable only.
        if not stat.S_ISFIFO(st.st_mode) or st.st_ino != inode:
            raise ValueError(value)
        return fd

    def pass_pipe(env: dict[str, str], w: int) -> dict[str, Any]:
        """Popen's arguments that hand the child the readiness pipe's write end ``w`` (named
        in ``env``), and no other descriptor."""
        env[READY_ENV] = f"{w}:{os.fstat(w).st_ino}"
        return {"pass_fds": (w,)}

    def _detached(env: dict[str, str], w: int) -> dict[str, Any]:
        """:func:`pass_pipe`'s arguments, and those that detach the daemon."""
        # No controlling terminal: ^C and hangups are not its own.
        return {**pass_pipe(env, w), "start_new_session": True}


def _popen(
    argv: list[str], env: dict[str, str], cwd: StrPath | None, log: int, w: int
) -> subprocess.Popen[bytes]:
    """Start the daemon: stdin from the null device, stdout and stderr to ``log``."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        cwd=cwd,
        close_fds=True,
        **_detached(env, w),
    )


def _open_log(path: str, private: bool) -> int:
    """Open the daemon's log for appending; one over LOG_MAX_BYTES is first rotated to
    ``PATH.1`` (or, if that fails, truncated), so each id's logs stay bounded."""
    flags = _LOG_FLAGS | (_PRIVATE if private else 0)
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if private:
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "jitpc log path is not a regular file", path)
            check_owner(st, path, "log")
            if sys.platform != "win32":
                os.set_blocking(fd, True)  # the daemon inherits this open file
        if stat.S_ISREG(st.st_mode) and st.st_size > LOG_MAX_BYTES:
            try:
                os.replace(path, path + ".1")
            except OSError:
                os.ftruncate(fd, 0)
            else:
                os.close(fd)
                return _open_log(path, private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tail(path: str, start: int, private: bool) -> list[str]:
    """The last lines written to the log from offset ``start`` on (at most TAIL_LINES)."""
    try:
        fd = os.open(path, _READ_FLAGS | (_PRIVATE if private else 0))
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        if size < start:
            start = 0  # rotated meanwhile
        start = max(start, size - _TAIL_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, _TAIL_BYTES)
    except OSError:
        return []
    finally:
        os.close(fd)
    return data.decode(errors="replace").splitlines()[-TAIL_LINES:]


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


_turns: dict[tuple[Any, str], Turn] = {}
# Guards _turns and each Turn's users: the blocking layer runs spawns in several threads.
_turns_guard = threading.Lock()


class Spawn:
    """A spinup hook that starts a detached daemon and waits until it serves; made by
    :func:`spawn`. The connect that runs it tells it the server id."""

    __slots__ = ("argv", "cwd", "env", "id", "log")

    def __init__(
        self,
        argv: list[str],
        *,
        id: str | None,
        log: StrPath | None,
        env: Mapping[str, str] | None,
        cwd: StrPath | None,
    ) -> None:
        self.argv = argv
        self.id = id
        self.log = log
        self.env = env
        self.cwd = cwd

    def __repr__(self) -> str:
        return f"jitpc.spawn({self.argv!r}{'' if self.id is None else f', id={self.id!r}'})"

    async def __call__(self) -> None:
        """Start the daemon of ``id`` (given to :func:`spawn`) and wait until it serves.

        Raises:
            ConnectError: see :func:`spawn`.
            TypeError: no ``id`` was given (a hook run by ``connect`` does not need one).

        Cancelling it stops the wait, not the daemon (see :func:`spawn`).
        """
        if self.id is None:
            raise TypeError(
                "a jitpc.spawn() hook learns its server id from jitpc.connect(); "
                "to call it yourself, give it id="
            )
        from ._aiosteps import run  # (an awaited hook: asyncio runs)

        await run(self._jitpc_spinup(self.id, None, None))

    def _jitpc_spinup(
        self,
        server_id: str,
        attempt: Callable[[float | None], Steps] | None,
        deadline: float | None,
    ) -> Steps:
        """The hook as steps (see :mod:`._steps`), as the connect phase runs it: ``attempt``
        tries the socket once by a deadline (``None``: no server yet), and what it finds is
        returned; ``None`` means "try now"."""
        run = _Run(self, self.id or server_id, deadline)
        try:
            return (yield from run.go(attempt))
        except TimeoutError:
            # (Only the operations given the deadline raise it, when it passes.)
            raise run.failure(run.late()) from None


class _Run:
    """One run of a spawn hook: its paths, the daemon it started, what it waits for."""

    def __init__(self, spawn: Spawn, server_id: str, deadline: float | None) -> None:
        self.spawn = spawn
        self.server_id = server_id
        self.deadline = deadline
        addr = address(server_id)
        self.socket = addr.socket
        self.spawn_lock = addr.spawn_lock
        self.private_log = spawn.log is None
        self.log = addr.log if spawn.log is None else os.fspath(spawn.log)
        self.log_start = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.waiting = False  # for another process's spawn

    def failure(self, message: str) -> ConnectError:
        return ConnectError(message, server_id=self.server_id, path=self.socket)

    def daemon(self) -> str:
        pid = "" if self.proc is None else f"pid {self.proc.pid}: "
        return f"the jitpc daemon for {self.server_id!r} ({pid}{shlex.join(self.spawn.argv)})"

    def with_log(self, message: str) -> str:
        lines = _tail(self.log, self.log_start, self.private_log)
        if not lines:
            return f"{message}; nothing in its log {self.log}"
        quoted = "".join(f"\n    {line}" for line in lines)
        return f"{message}; the last lines of its log {self.log}:{quoted}"

    def late(self) -> str:
        if self.proc is not None:
            return self.with_log(
                f"{self.daemon()} did not say it serves within connect_timeout; it runs on"
            )
        if self.waiting:
            return (
                f"another connect was still starting the jitpc daemon for {self.server_id!r} "
                f"at connect_timeout (waiting for {self.spawn_lock})"
            )
        return f"the jitpc spawn hook for {self.server_id!r} did not finish by connect_timeout"

    def go(self, attempt: Callable[[float | None], Steps] | None) -> Steps:
        key = ((yield Scope()), self.spawn_lock)
        with _turns_guard:
            turn = _turns.get(key)
            if turn is None:
                turn = _turns[key] = Turn()
            turn.users += 1
            seen = turn.finished
        try:
            self.waiting = True
            yield Queue(turn, self.deadline)
            try:
                self.waiting = False
                if turn.finished != seen:  # a spawn of this process ended while we queued
                    if turn.error is not None:
                        raise self.failure(turn.error)
                    return None
                return (yield from self._locked(attempt, turn))
            finally:
                turn.lock.release()
        finally:
            with _turns_guard:
                turn.users -= 1
                if not turn.users:
                    del _turns[key]

    def _locked(self, attempt: Callable[[float | None], Steps] | None, turn: Turn) -> Steps:
        waited = False
        while True:
            try:
                lock = try_acquire(self.spawn_lock)
            except OSError as exc:
                raise self.failure(
                    f"cannot use the jitpc spawn lock {self.spawn_lock}: {exc}"
                ) from exc
            if lock is not None:
                break
            waited = self.waiting = True
            try:
                yield WaitFree(self.spawn_lock, "spawn lock", "jitpc spawn lock", self.deadline)
            except TimeoutError:
                raise
            except OSError as exc:
                raise self.failure(
                    f"cannot use the jitpc spawn lock {self.spawn_lock}: {exc}"
                ) from exc
            self.waiting = False
        try:
            if attempt is not None:
                # With the lock: a spawn that just ended is seen.
                found = yield from attempt(self.deadline)
                if found is not None:
                    return found
            elif waited:
                return None  # another process's spawn ended: no way to know how
            try:
                yield from self._start()
            except ConnectError as exc:
                turn.error = str(exc)
                turn.finished += 1
                raise
            turn.error = None
            turn.finished += 1
            return None
        finally:
            lock.release()

    def _start(self) -> Steps:
        spawn = self.spawn
        env = dict(os.environ if spawn.env is None else spawn.env)
        try:
            log = _open_log(self.log, self.private_log)
        except OSError as exc:
            raise self.failure(f"cannot open the log {self.log} of {self.daemon()}: {exc}") from exc
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            command = shlex.join(spawn.argv)
            header = f"--- {stamp} jitpc: process {os.getpid()} starts {command}\n"
            os.write(log, header.encode())
            self.log_start = os.lseek(log, 0, os.SEEK_END)
            r, w = os.pipe()
            try:
                proc = _popen(spawn.argv, env, spawn.cwd, log, w)
            except BaseException:
                os.close(r)
                raise
            finally:
                os.close(w)  # the daemon's copy is the only one: its exit is an end of file
        except OSError as exc:
            raise self.failure(f"cannot start {self.daemon()}: {exc}") from exc
        finally:
            os.close(log)
        self.proc = proc
        line, code = yield Ready(r, proc, _EXIT_GRACE, self.deadline)
        if line:
            self._check(line)
            return
        if code is not None:
            raise self.failure(
                self.with_log(f"{self.daemon()} {_exit_status(code)} before it served")
            )
        raise self.failure(
            self.with_log(
                f"{self.daemon()} closed its readiness pipe ({READY_ENV}) without saying "
                "it serves; it runs on"
            )
        )

    def _check(self, line: bytes) -> None:
        if not line:
            return
        try:
            said = json.loads(line)
            state, socket = said["state"], said["socket"]
        except (ValueError, TypeError, KeyError):
            raise self.failure(
                self.with_log(f"{self.daemon()} said {line!r} on its readiness pipe")
            ) from None
        if state not in ("listening", "busy"):
            raise self.failure(self.with_log(f"{self.daemon()} said {state!r}, not that it serves"))
        if socket != self.socket:
            raise self.failure(
                f"{self.daemon()} serves {socket!r}, not {self.socket!r}: do its id or its "
                "TMPDIR differ from this client's?"
            )


def spawn(
    argv: Sequence[StrPath],
    *,
    id: str | None = None,
    log: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    cwd: StrPath | None = None,
) -> Spawn:
    """A spinup hook that starts ``argv`` as a detached daemon and returns once it serves:
    ``jitpc.connect(id, spinup=jitpc.spawn([sys.executable, "daemon.py"]))``.

    The daemon runs in a session of its own (on Windows: detached, in a new process group),
    with stdin from the null device and stdout and stderr appended to ``log``; it inherits no
    descriptor of this process but its readiness pipe. The hook returns when the daemon's
    ``jitpc.listen()`` says it serves the id, or that another process already does; then the
    connect tries the socket at once. Within one process, and across processes (through
    ``<tmpdir>/<id>.spawn.lock``), connects that find no server together start one daemon.

    Args:
        argv: the daemon's command line; its ``listen()`` must be for the connect's id.
        id: the server id; by default, that of the ``connect`` running the hook (needed only
            to await the hook yourself).
        log: the daemon's log file; by default ``<tmpdir>/<id>.log``, beside its socket. One
            over 1 MiB is moved to ``<log>.1`` before the next spawn appends to it.
        env: the daemon's environment (default: this process's); it must give the same
            TMPDIR, or the daemon serves another path.
        cwd: the daemon's working directory (default: this process's).

    The hook, when run:

    Raises:
        ConnectError: the daemon could not be started, exited (its exit status and the end of
            its log are in the message) or closed its readiness pipe before it said it serves,
            or serves another path; or ``connect_timeout`` passed first.

    Cancelling it (or the connect's deadline) stops the wait only: the daemon runs on, and may
    still come up; the pipe is closed and the spawn lock released.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("jitpc.spawn() takes the command as a list of arguments, not a string")
    args = [os.fspath(arg) for arg in argv]
    if not args:
        raise ValueError("jitpc.spawn() needs a command")
    return Spawn(args, id=id, log=log, env=env, cwd=cwd)
