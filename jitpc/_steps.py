"""The connect phase as steps, without I/O: one sequencing for both I/O layers.

Connecting to an id (PROTOCOL.md §6) is a sequence: try the socket; if nothing answers, run the
spinup hook once (a :func:`jitpc.spawn` hook: its herd-locked spawn, waiting for the daemon's
readiness line); sleep the jittered Fibonacci back-off between tries; give up at the deadline
with a message that says why; and, with an :class:`Expected`, ask the server's ``rpc.status``,
restart it once (``rpc.shutdown``, a wait for the id to be free) and check again.

That sequence is written once, here, as generators that *yield operations* (the small classes
below: "try the socket", "sleep", "run the hook", "ask", "wait for this lock to be free",
"wait for the readiness line"...) and receive their outcomes: the value sent back, or the
exception thrown in. Two drivers perform the operations: the asyncio one (:mod:`._aiosteps`,
for :class:`jitpc.Client`) and the blocking one (:mod:`._blocking`, for :mod:`jitpc.sync`).
What the drivers do differs only in how they wait; every decision, every message and every
exception type is made here (and in :mod:`._spawn`'s steps), so the two layers cannot drift.

The rules a driver keeps, per operation, are in each class's docstring. Any operation with a
``deadline`` raises the builtin ``TimeoutError`` (an exception thrown into the steps) when it
passes first; a driver that is itself interrupted (a cancelled task, ^C) throws that into the
steps, which clean up and let it through. The clock is the driver's (``clock``, the same one
its deadlines are measured on).

No I/O and no asyncio here: the blocking layer imports this without asyncio.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping

from ._answers import log_fields
from ._errors import ClosedError, ConnectError, MethodNotFound, RemoteError, VersionMismatch
from ._paths import address
from ._transport import is_retryable

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Literal

    from ._method import Method

    #: What a client does with a server that fails its version check.
    OnMismatch = Literal["error", "restart"]
    #: A generator of operations (the steps of one phase), returning what the phase returns.
    Steps = Generator[Any, Any, Any]

__all__ = [
    "BACKOFF",
    "CONNECT_TIMEOUT",
    "JITTER",
    "RESTART_GRACE",
    "Ask",
    "Dial",
    "Expected",
    "Hook",
    "IsOpen",
    "New",
    "Plan",
    "Queue",
    "Race",
    "Raced",
    "Ready",
    "Reaper",
    "Scope",
    "Sleep",
    "Turn",
    "WaitFree",
    "expect",
    "read_line",
]

# Node jitpc's Fibonacci back-off: the sleeps between connect attempts (PROTOCOL.md §6). Past
# the last one, the sleeps stay at it until the deadline.
BACKOFF = (0.05, 0.1, 0.15, 0.25, 0.4, 0.65, 1.05, 1.7, 2.75)
#: The default bound of the connect phase: Node's whole schedule, about 7.1 s.
CONNECT_TIMEOUT = sum(BACKOFF)
# Each sleep is stretched or shrunk by up to this fraction, so that a herd of clients that
# failed together does not retry in lockstep.
JITTER = 0.2
#: The most ``rpc.shutdown`` lets an old server's requests in flight run, when a client restarts
#: it (less if less of ``connect_timeout`` is left): the server's own default.
RESTART_GRACE = 5.0


#: The longest readiness line read from a spawned daemon.
MAX_LINE = 64 * 1024


# -- the operations ---------------------------------------------------------------------------


class Dial:
    """Try the socket ``path`` once, for the connection ``conn``: ``True`` once it is connected
    and set up; ``False`` if it connected but the connection could not be set up (the driver
    closed it again). Raises the ``OSError`` of the try (see :mod:`._transport`)."""

    __slots__ = ("conn", "path", "deadline")

    def __init__(self, conn: Any, path: str, deadline: float | None = None) -> None:
        self.conn = conn
        self.path = path
        self.deadline = deadline


class Sleep:
    """Sleep ``delay`` seconds."""

    __slots__ = ("delay",)

    def __init__(self, delay: float) -> None:
        self.delay = delay


class Hook:
    """Run a user's spinup hook to its end (a plain callable in a jitpc worker thread, so that
    it may block); returns ``None``, or raises what the hook raised."""

    __slots__ = ("hook", "deadline")

    def __init__(self, hook: Callable[[], object], deadline: float | None) -> None:
        self.hook = hook
        self.deadline = deadline


class Ask:
    """One request on ``conn``; its result, or the :class:`RemoteError` it got, or
    :class:`ClosedError`. At the deadline (and if interrupted) the request is cancelled."""

    __slots__ = ("conn", "method", "params", "deadline")

    def __init__(self, conn: Any, method: str, params: Any, deadline: float | None) -> None:
        self.conn = conn
        self.method = method
        self.params = params
        self.deadline = deadline


class New:
    """A new connection (not connected yet) from the driver's factory."""

    __slots__ = ()


class IsOpen:
    """Whether ``conn`` is open (not ended by its peer, not failed)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn


class WaitFree:
    """Block until no process holds the lock file ``path`` (``_lock.wait_free_at(path, what)``,
    in a thread of its own named ``thread``: a wait given up leaves it blocked)."""

    __slots__ = ("path", "what", "thread", "deadline")

    def __init__(self, path: str, what: str, thread: str, deadline: float | None) -> None:
        self.path = path
        self.what = what
        self.thread = thread
        self.deadline = deadline


class Scope:
    """The key that scopes in-process queues (:class:`Turn`): the event loop, or the blocking
    layer's own key."""

    __slots__ = ()


class Queue:
    """Take ``turn.lock`` (the driver makes it, of its kind, if ``turn.lock`` is ``None``);
    the steps release it (``turn.lock.release()``)."""

    __slots__ = ("turn", "deadline")

    def __init__(self, turn: Turn, deadline: float | None) -> None:
        self.turn = turn
        self.deadline = deadline


class Ready:
    """Wait until the daemon ``proc`` writes its readiness line on ``fd`` or exits; returns
    ``(line, code)``: the line (``b""`` at end of file, ``None`` if it exited first) and its
    exit status (``None`` if it has not exited). After an end of file, waits up to ``grace``
    seconds for the exit. The driver closes ``fd``, whatever happens."""

    __slots__ = ("fd", "proc", "grace", "deadline")

    def __init__(
        self, fd: int, proc: subprocess.Popen[bytes], grace: float, deadline: float | None
    ) -> None:
        self.fd = fd
        self.proc = proc
        self.grace = grace
        self.deadline = deadline


class Race:
    """Wait for the lock ``lock`` to be free (as :class:`WaitFree`, in a thread named
    ``thread``) while running the steps ``dial``; whichever ends first stops the other (the
    steps are closed; the wait's thread runs on). Returns a :class:`Raced`."""

    __slots__ = ("lock", "thread", "dial")

    def __init__(self, lock: str, thread: str, dial: Steps) -> None:
        self.lock = lock
        self.thread = thread
        self.dial = dial


class Raced:
    """The outcome of a :class:`Race`: what ended, and how (both may have)."""

    __slots__ = ("free", "free_error", "dialed", "dial_error", "usable")

    def __init__(
        self,
        free: bool,
        free_error: OSError | None,
        dialed: bool,
        dial_error: BaseException | None,
        usable: bool = False,
    ) -> None:
        self.free = free
        self.free_error = free_error
        self.dialed = dialed
        self.dial_error = dial_error
        self.usable = usable


class Turn:
    """The spawns of one id in one scope (an event loop, or the blocking layer), queued behind
    one lock; those that waited behind a spawn take its outcome."""

    __slots__ = ("error", "finished", "lock", "users")

    def __init__(self) -> None:
        self.lock: Any = None  # made by the driver (Queue)
        self.users = 0
        self.finished = 0  # spawns that came to an outcome
        self.error: str | None = None  # the last outcome, if it was a failure


# -- helpers both drivers use -----------------------------------------------------------------


class Reaper:
    """A thread waits for ``proc``'s exit, which reaps it whenever it comes, and calls
    ``notify(code)`` unless :meth:`detach` came first."""

    def __init__(self, proc: subprocess.Popen[bytes], notify: Callable[[int], object]) -> None:
        self.proc = proc
        self._mutex = threading.Lock()
        self._notify: Callable[[int], object] | None = notify
        # The thread holds the Popen until the exit: no "still running" ResourceWarning.
        threading.Thread(target=self._reap, name=f"jitpc reaper {proc.pid}", daemon=True).start()

    def _reap(self) -> None:
        code = self.proc.wait()
        with self._mutex:
            notify, self._notify = self._notify, None
        if notify is not None:
            notify(code)

    def detach(self) -> None:
        """Stop telling about the exit (the thread still reaps)."""
        with self._mutex:
            self._notify = None


def read_line(fd: int) -> bytes:
    """Read the first line of ``fd`` (blocking) and close it: ``b""`` at end of file."""
    buffer = b""
    try:
        while b"\n" not in buffer and len(buffer) < MAX_LINE:
            data = os.read(fd, 4096)
            if not data:
                return b""
            buffer += data
    except OSError:
        return b""  # as good as an end of file: broken
    finally:
        os.close(fd)
    return buffer.partition(b"\n")[0]


def _delays() -> Iterator[float]:
    yield from BACKOFF
    while True:
        yield BACKOFF[-1]


# -- the version check ------------------------------------------------------------------------


class Expected:
    """What a client asks of the servers it connects to (see :func:`expect`).

    (A plain class, not a dataclass: making a dataclass costs a one-shot ~1 ms each.)"""

    __slots__ = ("fingerprints", "on_mismatch", "version")

    def __init__(
        self,
        version: str | None,
        fingerprints: tuple[tuple[str, str], ...],
        on_mismatch: OnMismatch,
    ) -> None:
        #: The version the server must report (``None``: any).
        self.version = version
        #: (method name, fingerprint) of each typed method whose schemas must match.
        self.fingerprints = fingerprints
        self.on_mismatch: OnMismatch = on_mismatch

    def differences(self, status: Any) -> tuple[str | None, tuple[str, ...]] | None:
        """``None`` if the server whose ``rpc.status`` is ``status`` (``None``: it has none)
        will do; else the version it reports and the methods that differ."""
        found, schemas = _reported(status)
        differ = tuple(name for name, print_ in self.fingerprints if schemas.get(name) != print_)
        if (self.version is None or found == self.version) and not differ:
            return None
        return found, differ

    def mismatch(self, server_id: str, path: str, status: Any, why: str = "") -> VersionMismatch:
        """The error for a server that does not do (see :meth:`differences`); ``why`` ends
        the message (what the restart did)."""
        found, differ = self.differences(status) or (_reported(status)[0], ())
        if status is None:
            runs = "runs no version (a server without rpc.status, such as Node jitpc)"
        elif found is None:
            runs = "runs no version"
        else:
            runs = f"runs version {found!r}"
        if self.version is not None and found != self.version:
            message = f"jitpc server {server_id!r} {runs}, not {self.version!r}"
            if differ:
                message += f" (methods that differ: {', '.join(differ)})"
        else:
            message = (
                f"jitpc server {server_id!r} {runs}, but these methods differ from the "
                f"client's: {', '.join(differ)}"
            )
        return VersionMismatch(
            message + why,
            server_id=server_id,
            path=path,
            expected=self.version,
            found=found,
            methods=differ,
        )


def _reported(status: Any) -> tuple[str | None, Mapping[str, Any]]:
    """The version and the schemas an ``rpc.status`` result reports; ``None`` and ``{}`` for
    a server without ``rpc.status``, or one from before versions (it has neither key)."""
    if not isinstance(status, dict):
        return None, {}
    version = status.get("version")
    schemas = status.get("schemas")
    if version is not None and not isinstance(version, str):
        version = str(version)
    return version, schemas if isinstance(schemas, dict) else {}


def expect(
    version: str | None, methods: Iterable[type[Method[Any]]], on_mismatch: str
) -> Expected | None:
    """Check ``connect()``'s version arguments; ``None`` if nothing is to be checked.

    Raises:
        TypeError: ``version`` is not a string, or ``methods`` holds something other than
            ``jitpc.Method`` subclasses.
        ValueError: ``on_mismatch`` is neither ``"error"`` nor ``"restart"``.
    """
    if on_mismatch not in ("error", "restart"):
        raise ValueError(f"on_mismatch must be 'error' or 'restart', not {on_mismatch!r}")
    if version is not None and not isinstance(version, str):
        raise TypeError(f"version must be a string or None, not {version!r}")
    if isinstance(methods, (str, bytes, type)):
        raise TypeError(f"methods must be an iterable of jitpc.Method subclasses, not {methods!r}")
    try:
        given: list[object] = [method for method in methods]
    except TypeError:
        raise TypeError(
            f"methods must be an iterable of jitpc.Method subclasses, not {methods!r}"
        ) from None
    fingerprints: dict[str, str] = {}
    if given:
        # (Here, not at the top: an untyped client never imports pydantic.)
        from ._method import Method, fingerprint
    for method in given:
        if not (
            isinstance(method, type)
            and issubclass(method, Method)
            and hasattr(method, "__jitpc_method__")
        ):
            raise TypeError(
                f"methods must hold jitpc.Method subclasses (params models), not {method!r}"
            )
        fingerprints.setdefault(method.__jitpc_method__, fingerprint(method))
    if version is None and not fingerprints:
        return None
    mode: OnMismatch = "restart" if on_mismatch == "restart" else "error"
    return Expected(version, tuple(fingerprints.items()), mode)


# -- the sequencing ---------------------------------------------------------------------------


class Plan:
    """How to connect to the server of ``server_id``: the arguments of a connect phase, checked,
    and its steps (:meth:`phase`, :meth:`connect`), for a driver to run.

    Args:
        server_id: the id; it names ``<tmpdir>/<id>.sock``.
        spinup: run at most once per connect phase, after the first failed try. A
            :class:`ConnectError` it raises is passed on as is; a :func:`jitpc.spawn` hook is
            run as steps too (see :mod:`._spawn`), with the id and the deadline.
        connect_timeout: seconds the whole phase may take, the hook included; ``0`` makes one
            try and runs no hook; ``None`` retries without end.
        expected: what each connection's server is checked for (see :meth:`open`).

    Raises:
        ValueError: ``connect_timeout`` is negative; or, with ``expected``, ``0`` (no time to
            ask the server), or ``on_mismatch="restart"`` without a spinup hook (nothing would
            start the new server).
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Callable[[], object] | None = None,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        expected: Expected | None = None,
    ) -> None:
        if connect_timeout is not None and connect_timeout < 0:
            raise ValueError("connect_timeout must not be negative")
        if expected is not None:
            if connect_timeout == 0:
                raise ValueError(
                    "connect_timeout=0 leaves no time to ask the server its version; "
                    "give it some seconds, or None"
                )
            if expected.on_mismatch == "restart" and spinup is None:
                raise ValueError(
                    "on_mismatch='restart' needs a spinup hook, to start the server that "
                    "replaces the old one"
                )
        self.server_id = server_id
        self.spinup = spinup
        self.connect_timeout = connect_timeout
        self.expected = expected

    def deadline(self, now: float) -> float | None:
        """The phase's deadline, for a phase that starts at ``now``."""
        timeout = self.connect_timeout
        return None if timeout is None else now + timeout

    # -- errors --------------------------------------------------------------------------------

    def failure(self, message: str) -> ConnectError:
        return ConnectError(message, server_id=self.server_id, path=address(self.server_id).socket)

    def unusable(self) -> ConnectError:
        return self.failure(
            f"connected to the jitpc server {self.server_id!r}, but could not set up the connection"
        )

    def mismatch(self, status: Any, why: str = "") -> VersionMismatch:
        assert self.expected is not None
        path = address(self.server_id).socket
        return self.expected.mismatch(self.server_id, path, status, why)

    # -- steps ---------------------------------------------------------------------------------

    def phase(self, conn: Any, clock: Callable[[], float]) -> Steps:
        """Connect ``conn`` and, with :attr:`expected`, check its server first; returns the
        connection that is open and, if checked, passed (a new one, from :class:`New`, if the
        first closed or its server was restarted). A connection that fails is destroyed.

        The check asks ``rpc.status`` (a server without it, such as Node jitpc, reports no
        version and no schemas). A server that fails it, with ``on_mismatch="restart"``, is
        asked to stop (``rpc.shutdown``, its grace what is left of ``connect_timeout``, at most
        :data:`RESTART_GRACE`); once the id is free the normal path (the spinup hook) runs
        again, and the new server is checked in turn. All of it by one deadline.

        Raises:
            VersionMismatch: the server (or the one started in its place) fails the check,
                and ``on_mismatch`` is ``"error"``, or it cannot be restarted (no
                ``rpc.shutdown``), or it did not give the id up by the deadline.
            ConnectError: as for :meth:`connect`; or the server did not answer
                ``rpc.status`` (an error, a close, the deadline).
        """
        deadline = self.deadline(clock())
        expected = self.expected
        restarted = reset = False
        try:
            yield from self.connected(conn, deadline, self.spinup, clock)
            while expected is not None:
                try:
                    status = yield from self._status(conn, deadline)
                except ClosedError as exc:
                    if reset:
                        raise self.failure(
                            f"jitpc server {self.server_id!r} closed the connection before it "
                            "answered rpc.status, twice"
                        ) from exc
                    # A server that stops as we connect (another client restarts it) resets
                    # the connections it had not accepted yet: connect again, once.
                    reset = True
                    conn.destroy()
                    conn = yield New()
                    yield from self.connected(conn, deadline, self.spinup, clock)
                    continue
                if expected.differences(status) is None:
                    break
                if expected.on_mismatch == "error":
                    raise self.mismatch(status)
                if restarted:
                    raise self.mismatch(status, "; it was restarted once already")
                yield from self._stop(conn, status, deadline, clock)
                conn.destroy()
                conn = yield from self._replaced(status, deadline, clock)
                restarted = True
            if not (yield IsOpen(conn)):  # ended by the server just after the check
                raise self.failure(
                    f"jitpc server {self.server_id!r} closed the connection as it opened"
                )
        except BaseException as exc:
            conn.destroy(exc)
            raise
        return conn

    def _status(self, conn: Any, deadline: float | None) -> Steps:
        """The server's ``rpc.status``; ``None`` if it has none (Node jitpc).

        Raises:
            ClosedError: the connection closed first.
            ConnectError: an error answer, or none by the deadline.
        """
        try:
            return (yield Ask(conn, "rpc.status", None, deadline))
        except MethodNotFound:
            return None
        except RemoteError as exc:
            raise self.failure(
                f"jitpc server {self.server_id!r} answered rpc.status with an error, so its "
                f"version is unknown: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise self.failure(
                f"jitpc server {self.server_id!r} did not answer rpc.status within "
                f"connect_timeout ({self.connect_timeout} s)"
            ) from exc

    def _stop(
        self, conn: Any, status: Any, deadline: float | None, clock: Callable[[], float]
    ) -> Steps:
        """Ask the server of ``conn``, which failed the check, to stop."""
        grace = RESTART_GRACE
        if deadline is not None:
            grace = max(0.0, min(grace, deadline - clock()))
        try:
            yield Ask(conn, "rpc.shutdown", {"grace": round(grace, 3)}, deadline)
        except MethodNotFound:
            raise self.mismatch(
                status, "; it cannot be restarted: it has no rpc.shutdown"
            ) from None
        except RemoteError as exc:
            raise self.mismatch(status, f"; it refused to stop (rpc.shutdown): {exc}") from exc
        except ClosedError:
            pass  # it was stopping already: another client asked first
        except TimeoutError:
            raise self.mismatch(
                status,
                f"; asked to stop, it did not answer rpc.shutdown within connect_timeout "
                f"({self.connect_timeout} s)",
            ) from None

    def _replaced(self, status: Any, deadline: float | None, clock: Callable[[], float]) -> Steps:
        """Wait until the stopped server has given the id up, then connect the normal way
        (spinup included); or connect to a successor that another client started meanwhile.

        Whoever waits for the lock after the successor took it would wait for the successor
        to exit, so the wait races tries of the socket: once the old server has stopped
        accepting, any server that answers is a new one. (The losing wait's thread stays
        blocked until that new server exits, holding only a descriptor of the lock file.)
        """
        lock = address(self.server_id).lock
        conn = yield New()
        try:
            raced: Raced = yield Race(
                lock, "jitpc id lock", self.connect(conn, deadline, None, clock)
            )
            if raced.dialed:
                error = raced.dial_error
                if error is None:
                    if raced.usable:
                        return conn  # the successor, which another client started
                    raise self.unusable()
                if not isinstance(error, ConnectError):
                    raise error
                if not raced.free and deadline is not None and clock() >= deadline:
                    raise self.mismatch(
                        status,
                        "; asked to stop, it still held the id when connect_timeout "
                        f"({self.connect_timeout} s) passed",
                    ) from None
                if not raced.free:
                    raise error  # refused, say: not a server that is still starting
            if raced.free_error is not None:
                raise self.failure(
                    f"cannot wait for the jitpc lock {lock}: {raced.free_error}"
                ) from raced.free_error
        except BaseException:
            conn.destroy()
            raise
        conn.destroy()  # (the polling's: it may have been cut off mid-connect)
        conn = yield New()
        try:
            yield from self.connected(conn, deadline, self.spinup, clock)
        except BaseException:
            conn.destroy()
            raise
        return conn

    def connected(
        self,
        conn: Any,
        deadline: float | None,
        spinup: Callable[[], object] | None,
        clock: Callable[[], float],
    ) -> Steps:
        """:meth:`connect`, and a :class:`ConnectError` if the connection could not be set up."""
        if not (yield from self.connect(conn, deadline, spinup, clock)):
            raise self.unusable()

    def connect(
        self,
        conn: Any,
        deadline: float | None,
        spinup: Callable[[], object] | None,
        clock: Callable[[], float],
    ) -> Steps:
        """Connect ``conn``: try the socket, run ``spinup`` once after the first failed try,
        back off (jittered) between tries, until ``deadline``. Returns whether the connection
        could be set up (``False``: the driver closed it again; see :meth:`connected`).

        Raises:
            ConnectError: no server answered by the deadline (``__cause__``: the last error),
                the server runs as another user, the connection could not be set up, or the
                hook raised or outlived the deadline.
            ValueError: the id gives an unusable socket path.
        """
        server_id = self.server_id
        path = address(server_id).socket
        delays = _delays()
        tries = 0
        start = clock()
        failure = self.failure
        last_error: OSError | None = None

        def attempt(bound: float | None = None) -> Steps:
            """One try: ``True`` once connected and set up, ``False`` if connected but the
            connection could not be set up, ``None`` if the server may answer later. ``bound``:
            a deadline for the try itself (a spawn's)."""
            nonlocal tries, last_error
            tries += 1
            try:
                return (yield Dial(conn, path, bound))
            except OSError as exc:
                if isinstance(exc, TimeoutError) and bound is not None:
                    raise  # the bound passed: not the socket's answer
                if isinstance(exc, PermissionError):
                    raise failure(
                        f"refusing the jitpc server for {server_id!r} at {path}: {exc}"
                    ) from exc
                if not is_retryable(exc):
                    raise failure(
                        f"cannot connect to jitpc server {server_id!r} at {path}: {exc}"
                    ) from exc
                last_error = exc
                return None

        while True:
            found = yield from attempt()
            if found is not None:
                return found
            if spinup is not None and (deadline is None or clock() < deadline):
                hook, spinup = spinup, None
                steps = getattr(hook, "_jitpc_spinup", None)
                if steps is not None:  # a jitpc.spawn() hook
                    found = yield from steps(server_id, attempt, deadline)
                    if found is not None:
                        return found
                    continue  # the daemon says it serves (or another does): try now
                yield from self._run_hook(hook, deadline)
            now = clock()
            if deadline is not None and now >= deadline:
                raise failure(
                    f"no jitpc server for {server_id!r} at {path} after {tries} "
                    f"{'try' if tries == 1 else 'tries'} over {now - start:.1f} s: {last_error}"
                ) from last_error
            import random  # (here: a one-shot that connects at once never needs it)

            delay = next(delays) * random.uniform(1 - JITTER, 1 + JITTER)
            if deadline is not None:
                delay = min(delay, deadline - now)
            import logging  # (here: a one-shot that connects at once never imports it)

            logging.getLogger("jitpc").debug(
                "jitpc: no server at %s yet (%s); trying again",
                path,
                last_error,
                extra=log_fields(server_id),
            )
            yield Sleep(delay)

    def _run_hook(self, hook: Callable[[], object], deadline: float | None) -> Steps:
        try:
            yield Hook(hook, deadline)
        except ConnectError:
            raise  # the hook's own account of why there is no server
        except TimeoutError as exc:
            raise self.failure(
                f"the spinup hook for jitpc server {self.server_id!r} did not return within "
                f"connect_timeout ({self.connect_timeout} s)"
            ) from exc
        except Exception as exc:
            raise self.failure(
                f"the spinup hook for jitpc server {self.server_id!r} failed: {exc!r}"
            ) from exc
