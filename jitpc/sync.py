"""A blocking jitpc client, for programs that do not use asyncio. A client of the counter
daemon of the docs' "The sync facade" (``counters.py``, which also holds its models)::

    import sys

    import jitpc
    import jitpc.sync
    from counters import Inc

    spawn = jitpc.spawn([sys.executable, "counters.py"])
    with jitpc.sync.connect("counters", spinup=spawn, connect_timeout=15) as client:
        counter = client.call(Inc(key="a"))  # a Counter, as with the async client
        print(repr(counter))
        # > Counter(key='a', count=1)
        print(client.request("inc", {"key": "a"}, timeout=5))
        # > {'key': 'a', 'count': 2}

A blocking I/O layer over the same sans-I/O core as :class:`jitpc.Client` (see
:mod:`jitpc._blocking`), with threads and a blocking socket, as websockets' ``sync`` package
does over its protocol: no event loop, and no asyncio imported (on POSIX; a coroutine spinup
hook imports it, and so do Windows' named pipes). Each connection has a reader thread (a
daemon) that reads what the server sends and wakes the thread waiting for each answer; writes
go out from the calling thread. The connect phase is the async client's, step for step (the
same back-off, spinup hook, :func:`jitpc.spawn` herd rule, version check and restart, and the
same errors). Exceptions are the same ``jitpc`` exceptions as the async client's.

Timeouts, in seconds, have one meaning throughout:

* A call's ``timeout`` (:meth:`Client.request`, :meth:`Client.call`, :meth:`Client.open`) is
  its whole deadline: connecting (the spinup hook included), waiting for the server to read,
  and waiting for the answer. When it passes the call raises the builtin ``TimeoutError`` and
  the request is cancelled: the server is told (a jitpc server cancels its handler) and a late
  answer is dropped. The client's own ``timeout=`` is the default of every call's.
* ``connect_timeout`` bounds connecting alone, however many calls wait for it; when it passes
  first, they raise :class:`jitpc.ConnectError`. Whichever deadline comes first wins. The
  connect attempt goes on in a thread of its own once it has to wait (a back-off sleep, the
  hook), so that a call that gives up on it does not stop it for the others.
* :meth:`Client.close`'s ``timeout`` is how long the graceful close may wait for work in
  flight; past it, the connection is destroyed.

A client that is garbage collected without being closed is destroyed, and whatever is still
open at interpreter exit is closed then, quietly. A call still waiting then (in a daemon thread:
a non-daemon thread keeps the interpreter alive until its call returns, as any blocking call
would) raises :class:`jitpc.ClosedError`.

The ``spinup`` hook runs in a jitpc worker thread, so it may block: the deadlines above still
hold (the thread runs on). The functions given to :meth:`Client.respond` run *in the
connection's reader thread*, and block it while they run (nothing more is read from that
server meanwhile); keep them short, and do not call the sync API from them (that would wait
for the thread they are blocking, so it raises ``RuntimeError`` instead). With ``thread=True``
a responder runs in a worker thread instead, where it may block and use the sync API.

The sync API cannot be used from a thread that runs an event loop (it would block that loop):
it raises ``RuntimeError`` there. Use :func:`jitpc.connect` in async code.

In a child forked without exec (``os.fork()``, multiprocessing's 'fork' start method) the sync
API works as in a new process, and deadlines hold as anywhere. The parent's reader threads do
not exist there, and the child has closed its copies of the parent's connections (see
``jitpc._fork``), so a client the parent had used is closed in the child: its calls raise
:class:`jitpc.ClosedError`, and closing it does nothing (the parent's connection is
untouched). A client the parent made but never used connects anew.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType

from . import _claim
from ._blocking import CLOSED, OPEN, Connection, in_reader, perform
from ._errors import ClosedError, ConnectError
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES
from ._steps import CONNECT_TIMEOUT, Dial, IsOpen, New, Plan, expect

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    from ._method import Method
    from ._steps import OnMismatch, Steps

    R = TypeVar("R")
    #: A responder: takes the request's params, returns the result.
    Responder = Callable[[Any], Any]
    F = TypeVar("F", bound=Responder)


__all__ = ["Client", "connect"]

_OPEN, _ENDING, _CLOSED = 1, 2, 3

#: Steps a connect attempt runs in the calling thread, before it needs a thread of its own.
_QUICK = (Dial, IsOpen, New)


def _cut_off() -> ClosedError:
    why = "the interpreter is exiting" if _exiting else "its client was closed"
    return ClosedError(f"jitpc.sync call cut off: {why}")


def _forked() -> ClosedError:
    return ClosedError(
        "jitpc.sync client used before this process forked: its connection is the parent's; "
        "connect a new client in the child"
    )


class _Opening:
    """One connect attempt, shared by the calls that wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.conn: Connection | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.waiting = 0


class _Core:
    """A client's state: what its connections, its finalizer and the exit handler may hold
    without keeping the :class:`Client` itself alive."""

    def __init__(self, plan: Plan, reconnect: bool, max_message_bytes: int) -> None:
        self.plan = plan
        self.reconnect = reconnect
        self.max_message_bytes = max_message_bytes
        self.lock = threading.Lock()
        self.state = _OPEN
        self.responders: dict[str, tuple[Responder, bool]] = {}
        self.conn: Connection | None = None
        self.opening: _Opening | None = None
        self.close_error: ConnectError | None = None
        self.held: list[tuple[str, Any]] = []  # notifications sent while connecting
        self.used = False
        self.inherited = False

    # -- what the connections use ----------------------------------------------------------

    def new(self) -> Connection:
        return Connection(
            self.plan.server_id, self.responders.get, max_message_bytes=self.max_message_bytes
        )

    # -- state -------------------------------------------------------------------------------

    def closed(self) -> bool:
        if self.state == _CLOSED or self.inherited:
            return True
        if self.reconnect:
            return False
        if self.close_error is not None:
            return True
        conn = self.conn
        return conn is not None and conn.state == CLOSED

    def closed_error(self) -> BaseException:
        if self.close_error is not None:
            return self.close_error
        what = "ending" if self.state == _ENDING else "closed"
        return ClosedError(f"jitpc connection to {self.plan.server_id!r} is {what}")

    def check(self) -> None:
        """Refuse a call in a thread that must not block, or in a forked child."""
        _check_thread()
        if self.inherited:
            raise _forked()
        if _exiting:
            raise _cut_off()

    # -- connecting --------------------------------------------------------------------------

    def current(self) -> Connection | None:
        """The open connection, if any (with the lock held)."""
        conn = self.conn
        if conn is not None and conn.state != OPEN:
            if self.state == _OPEN and self.reconnect:
                self.conn = conn = None  # ended: the next call connects again
            elif conn.state == CLOSED:
                raise conn.closed_error()
        return conn

    def ready(self, deadline: float | None) -> Connection:
        """The open connection, connecting first if need be, by ``deadline``."""
        with self.lock:
            if self.state != _OPEN:
                raise self.closed_error()
            if self.close_error is not None:
                raise self.close_error
            conn = self.current()
            if conn is not None:
                return conn
            opening = self.opening
            if opening is None:
                opening = self.start()
            opening.waiting += 1
        try:
            if not opening.done.is_set():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not opening.done.wait(remaining):
                    raise TimeoutError
        finally:
            with self.lock:
                opening.waiting -= 1
        if opening.error is not None:
            raise opening.error
        assert opening.conn is not None
        return opening.conn

    def start(self) -> _Opening:
        """Start a connect attempt (with the lock held)."""
        conn = self.new()
        steps = self.plan.phase(conn, time.monotonic)
        self.used = True
        _live.add(self)
        _register_atexit()
        opening = self.opening = _Opening()
        # Run in this thread while the steps do not wait (the usual case: the server is
        # there); a thread of its own takes over at the first wait. (Not with the lock
        # held: a try made here takes the lock of nothing but its new connection.)
        self.lock.release()
        try:
            self._drive(opening, steps, inline=True)
        finally:
            self.lock.acquire()
        return opening

    def _drive(self, opening: _Opening, steps: Steps, inline: bool, op: Any = None) -> None:
        value: Any = None
        error: BaseException | None = None
        pending = op is not None
        while True:
            if not pending:
                try:
                    if opening.cancelled and error is None:
                        error = ClosedError(f"jitpc client for {self.plan.server_id!r} closed")
                    op = steps.send(value) if error is None else steps.throw(error)
                except StopIteration as stop:
                    self._finish(opening, stop.value, None)
                    return
                except BaseException as exc:
                    self._finish(opening, None, exc)
                    return
                value = error = None
            pending = False
            if inline and type(op) not in _QUICK:
                thread = threading.Thread(
                    target=self._drive,
                    args=(opening, steps, False, op),
                    name="jitpc.sync connect",
                    daemon=True,
                )
                thread.start()
                return
            try:
                value = perform(op, self.new)
            except BaseException as exc:
                error = exc

    def _finish(
        self, opening: _Opening, conn: Connection | None, error: BaseException | None
    ) -> None:
        with self.lock:
            if self.opening is opening:
                self.opening = None
            if opening.cancelled:
                if conn is not None:
                    conn.destroy()
                return
            if error is None:
                assert conn is not None
                self.conn = conn
                held, self.held = self.held, []
            else:
                held, self.held = [], []
                if isinstance(error, ConnectError) and not self.reconnect:
                    self.close_error = error
            opening.conn, opening.error = conn, error
        for method, params in held:
            try:
                conn.notify(method, params)  # type: ignore[union-attr]
            except (ClosedError, TypeError):
                break  # lost, as any fire-and-forget message
        opening.done.set()

    def cancel_opening(self, opening: _Opening, error: BaseException) -> None:
        """Give a connect attempt up: its waiters get ``error``, and what it connects is
        destroyed (with the lock held)."""
        if opening.done.is_set():
            return
        opening.cancelled = True
        opening.error = error
        if self.opening is opening:
            self.opening = None
        opening.done.set()

    # -- closing -----------------------------------------------------------------------------

    def close(self, graceful: bool, timeout: float | None) -> None:
        if self.inherited:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            if self.state == _OPEN:
                self.state = _ENDING
            opening = self.opening
            if opening is not None and (not graceful or (not opening.waiting and not self.held)):
                self.cancel_opening(opening, ClosedError(self.closed_error().args[0]))
                opening = None
        if opening is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not opening.done.wait(remaining):
                with self.lock:
                    self.cancel_opening(
                        opening, ClosedError(f"jitpc connection to {self.plan.server_id!r} closed")
                    )
        with self.lock:
            conn = self.conn
            self.state = _CLOSED
        if conn is not None:
            if graceful:
                conn.end(deadline)
            else:
                conn.destroy()
        _live.discard(self)

    def abandon(self) -> None:
        """The client was garbage collected unclosed (a finalizer: any thread, maybe one that
        holds a lock of ours, so it takes none): shut its connection down."""
        if self.inherited:
            return
        self.state = _CLOSED
        opening = self.opening
        if opening is not None:
            opening.cancelled = True
        conn = self.conn
        if conn is not None:
            conn.abort()
        _live.discard(self)

    def cut_off(self) -> None:
        """At interpreter exit."""
        with self.lock:
            self.state = _CLOSED
            opening = self.opening
            if opening is not None:
                self.cancel_opening(opening, _cut_off())
            conn = self.conn
        if conn is not None:
            conn.destroy(_cut_off())
            conn._join(time.monotonic() + 1.0)


def _check_thread() -> None:
    asyncio = sys.modules.get("asyncio")  # (a running loop means asyncio is imported)
    if asyncio is not None and asyncio.events._get_running_loop() is not None:
        raise RuntimeError(
            "jitpc.sync cannot be called from a running event loop (it would block it); "
            "use jitpc.connect() and await its methods instead"
        )
    if in_reader():
        raise RuntimeError(
            "jitpc.sync cannot be called from a responder running in a connection's reader "
            "thread (it would wait for that thread); use respond(..., thread=True)"
        )


# Every client (for fork), and those with a connection or an attempt (for exit).
_cores: weakref.WeakSet[_Core] = weakref.WeakSet()
_live: weakref.WeakSet[_Core] = weakref.WeakSet()
_exiting = False
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        # At first use, not at import: it runs before the handlers registered before it.
        atexit.register(_close_at_exit)
        _atexit_registered = True


def _close_at_exit() -> None:
    global _exiting
    _exiting = True
    for core in list(_live):
        core.cut_off()


def _after_fork_in_child() -> None:
    """The parent's connections and threads: the clients that used them are closed here."""
    global _live
    for core in list(_cores):
        core.lock = threading.Lock()
        if core.used and core.state != _CLOSED:
            core.inherited = True
        core.opening = None
    _live = weakref.WeakSet()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _result_reader(method_type: Any) -> Callable[[bytes], Any] | None:
    """The reader of a typed call's result from its bytes, if its type has one."""
    from ._method import result_reader  # (here: only a typed call needs pydantic)

    return result_reader(method_type)


def _validate(method_type: Any, raw: Any) -> Any:
    """A typed call's result, validated as :meth:`jitpc.Client.call` does."""
    from ._method import check_result  # (here: only a typed call needs pydantic)

    return check_result(method_type, raw)


class Client:
    """A blocking jitpc client: each method blocks until its outcome, as the async
    :class:`jitpc.Client`'s would be.

    Made by :func:`connect`, which documents the arguments. Safe to use from several threads at
    once: their requests share the one connection, as concurrent tasks would. Close it with
    :meth:`close`, or use it as ``with jitpc.sync.connect(id) as client:``.
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Callable[[], object] | None = None,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        reconnect: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout: float | None = None,
        version: str | None = None,
        methods: Iterable[type[Method[Any]]] = (),
        on_mismatch: OnMismatch = "error",
    ) -> None:
        plan = Plan(
            server_id,
            spinup=spinup,
            connect_timeout=connect_timeout,
            expected=expect(version, methods, on_mismatch),
        )
        self._core = core = _Core(plan, reconnect, max_message_bytes)
        self._timeout = timeout
        _cores.add(core)
        self._finalizer = weakref.finalize(self, core.abandon)
        self._finalizer.atexit = False  # _close_at_exit handles exit

    def __repr__(self) -> str:
        return f"<jitpc.sync.Client server_id={self.server_id!r} " + (
            "closed>" if self.closed else "open>"
        )

    @property
    def server_id(self) -> str:
        """The id of the server this client talks to."""
        return self._core.plan.server_id

    @property
    def closed(self) -> bool:
        """True once the client was closed; without ``reconnect``, also once its connection has
        ended or failed to open (it never reopens then); in a forked child, if it was used
        before the fork."""
        return self._core.closed()

    def _deadline(self, timeout: float | None) -> float | None:
        limit = self._timeout if timeout is None else timeout
        return None if limit is None else time.monotonic() + limit

    def _request(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        reader: Callable[[bytes], Any] | None,
    ) -> Any:
        """:meth:`request`'s steps, with a typed call's result reader (or ``None``)."""
        core = self._core
        core.check()
        deadline = self._deadline(timeout)
        return core.ready(deadline).request(method, params, deadline, reader)

    def open(self, *, timeout: float | None = None) -> None:
        """Connect now, rather than at the first request. Blocks until connected.

        Tries the server's socket; if nothing answers, runs the spinup hook once (in a worker
        thread) and retries with back-off until ``connect_timeout`` has passed.

        Args:
            timeout: seconds to wait at most (default: the client's ``timeout``).

        Raises:
            VersionMismatch: the server failed the version check (see :func:`connect`).
            ConnectError: no server answered within ``connect_timeout``, or the spinup hook
                raised or outlived it.
            ClosedError: the client was closed.
            TimeoutError: ``timeout`` passed first (the attempt goes on in the background,
                bounded by ``connect_timeout``).
            RuntimeError: called from a thread running an event loop.
        """
        core = self._core
        core.check()
        core.ready(self._deadline(timeout))

    def request(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and block until its result comes. Connects first if needed.

        Args:
            method: the method name.
            params: anything JSON can write (or a pydantic model).
            timeout: the call's whole deadline, connecting included (default: the client's
                ``timeout``). When it passes the request is cancelled: the server is told (a
                jitpc server cancels its handler; the request may still have run) and a late
                response is dropped.

        Raises:
            RemoteError: the peer answered with an error; a subclass such as
                :class:`jitpc.MethodNotFound` for the standard JSON-RPC codes.
            ClosedError: the connection closed (or was closed) before the response came.
            ConnectError: the connection could not be opened within ``connect_timeout``;
                :class:`jitpc.VersionMismatch`, a subclass, if its server failed the version
                check.
            TimeoutError: ``timeout`` passed first.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: called from a thread running an event loop.
        """
        return self._request(method, params, timeout, None)

    def call(self, params: Method[R], *, timeout: float | None = None) -> R:
        """Call a typed method and block until its validated result comes.

        ``counter = client.call(Inc(key="a"))``: the result has ``Inc``'s result type.
        ``timeout`` is the call's whole deadline, as for :meth:`request`.

        Raises:
            InvalidParams: the peer rejected the params (its reasons in ``data``).
            MethodNotFound: the peer has no such method.
            InternalError: the peer's handler failed.
            RemoteError: any other error answer.
            ResultValidationError: the result does not fit the result type.
            ClosedError: the connection closed before the response came.
            ConnectError: the connection could not be opened within ``connect_timeout``;
                :class:`jitpc.VersionMismatch`, a subclass, if its server failed the version
                check.
            TimeoutError: ``timeout`` passed first.
            RuntimeError: called from a thread running an event loop.
        """
        method_type = type(params)
        reader = _result_reader(method_type)
        raw = self._request(method_type.__jitpc_method__, params, timeout, reader)
        if reader is not None and type(raw) is method_type.__jitpc_result_type__:
            return raw  # type: ignore[no-any-return]  # read whole: a parsed answer is no model
        return _validate(method_type, raw)  # type: ignore[no-any-return]

    if TYPE_CHECKING:  # (the variants, for mypy: typing.overload is typing's)

        @overload
        def notify(self, method: str, params: Any = None) -> None: ...
        @overload
        def notify(self, method: Method[None]) -> None: ...

    def notify(self, method: str | Method[None], params: Any = None) -> None:
        """Send a notification: ``notify("log", {"line": "hi"})`` or ``notify(Log(line="hi"))``.

        Blocks only until the message is written (or queued); connects in the background if
        needed (if that fails, the notification is lost).

        Raises:
            ClosedError: the client is closed or ending.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: called from a thread running an event loop.
        """
        core = self._core
        core.check()
        if type(method) is not str:
            name = getattr(type(method), "__jitpc_method__", None)
            if not isinstance(name, str):
                raise TypeError(f"notify() takes a method name or a jitpc.Method, not {method!r}")
            method, params = name, method
        with core.lock:
            if core.state != _OPEN or core.close_error is not None:
                raise core.closed_error()
            conn = core.current()
            if conn is None:
                # Written now, so that an unwritable params raises here; sent once connected.
                import json

                from ._json import dump

                core.held.append((method, None if params is None else json.loads(dump(params))))
                if core.opening is None:
                    core.start()
                return
        conn.notify(method, params)

    if TYPE_CHECKING:

        @overload
        def respond(self, method: str, *, thread: bool = False) -> Callable[[F], F]: ...
        @overload
        def respond(self, method: str, fn: F, *, thread: bool = False) -> F: ...

    def respond(
        self, method: str, fn: F | None = None, *, thread: bool = False
    ) -> F | Callable[[F], F]:
        """Answer the server's requests for ``method`` with ``fn(params)``. Does not block.

        What ``fn`` returns is the result; a :class:`jitpc.RemoteError` it raises is sent as
        is, any other exception as an :class:`jitpc.InternalError`. Replaces an earlier
        responder for ``method``; with ``reconnect``, it carries over to the next connection.
        Usable as a decorator: ``@client.respond("m")`` or ``@client.respond("m", thread=True)``.

        ``fn`` is a plain function. By default it runs **in the connection's reader thread**,
        so nothing more is read from the server while it runs, and must not call the sync API
        (that raises ``RuntimeError``). With ``thread=True`` it runs in a jitpc worker thread
        (a small pool shared by the process): it may block, and may call the sync API, but not
        close its own client (the close would wait for its answer). A server's cancel stops
        waiting for such a responder (the server gets its -32800 answer), not its thread.
        """
        if fn is None:

            def decorator(fn: F) -> F:
                self.respond(method, fn, thread=thread)
                return fn

            return decorator
        self._core.responders[method] = (fn, thread)
        return fn

    def close(self, *, timeout: float | None = None) -> None:
        """Close gracefully, and block until closed. Idempotent.

        New requests fail with :class:`jitpc.ClosedError` from now on; requests still awaited
        (in other threads) get their responses, and our responders finish their answers
        (requests given up by a timeout are not waited for). If ``timeout`` (default: the
        client's ``timeout``) passes first, the connection is destroyed instead: requests still
        waiting fail with :class:`jitpc.ClosedError`.

        Raises:
            RuntimeError: called from a thread running an event loop.
        """
        self._close(graceful=True, timeout=timeout)

    def _close(self, *, graceful: bool, timeout: float | None) -> None:
        _check_thread()
        self._finalizer.detach()
        self._core.close(graceful, self._timeout if timeout is None else timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: gracefully, or at once if the block raised."""
        if exc is None:
            self.close()
        else:
            self._close(graceful=False, timeout=None)


def connect(
    server_id: str,
    *,
    spinup: Callable[[], object] | None = None,
    connect_timeout: float | None = CONNECT_TIMEOUT,
    reconnect: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float | None = None,
    version: str | None = None,
    methods: Iterable[type[Method[Any]]] = (),
    on_mismatch: OnMismatch = "error",
) -> Client:
    """A blocking client for the jitpc server ``server_id``; it connects at first use.

    No I/O happens here (and no thread starts): the first :meth:`Client.request`,
    :meth:`Client.call`, :meth:`Client.notify` or :meth:`Client.open` connects, as
    :func:`jitpc.connect` does.

    Args:
        server_id: the id the server listens on; it names ``<tmpdir>/<id>.sock``.
        spinup: called at most once per connect, after the first failed try; typically it
            starts the server process (detached). A plain function runs in a jitpc worker
            thread, so it may block (``connect_timeout`` and each call's ``timeout`` still
            hold); a coroutine function runs there with ``asyncio.run``. It must not use this
            client (that would wait for the connect it is part of).
        connect_timeout: seconds connecting may take, spinup included (default: Node's back-off
            schedule, about 7.1 s); past it, :class:`jitpc.ConnectError`. ``0`` tries once and
            runs no hook; ``None`` retries until the server answers (a call's ``timeout``
            still bounds the call).
        reconnect: after the connection ends (the server spun down, restarted or died), the
            next call connects again, spinup included; responders carry over. Requests in
            flight when it ended fail with :class:`jitpc.ClosedError` and are never resent.
        max_message_bytes: the longest message accepted from the server.
        timeout: the default of every call's ``timeout``, its whole deadline, connecting
            included, and of :meth:`Client.close`'s (``None``: no bound).
        version: the version the server must run, as for :func:`jitpc.connect`.
        methods: typed methods whose schemas the server must share, as for
            :func:`jitpc.connect`.
        on_mismatch: ``"error"``: the first call raises :class:`jitpc.VersionMismatch`;
            ``"restart"``: the server is restarted once, within ``connect_timeout``.

    Raises:
        ValueError: ``connect_timeout`` is negative, or the version arguments do not go
            together (see :func:`jitpc.connect`).
        TypeError: ``version`` is not a string, or ``methods`` holds something other than
            ``jitpc.Method`` subclasses.
    """
    return Client(
        server_id,
        spinup=spinup,
        connect_timeout=connect_timeout,
        reconnect=reconnect,
        max_message_bytes=max_message_bytes,
        timeout=timeout,
        version=version,
        methods=methods,
        on_mismatch=on_mismatch,
    )


_claim()  # its errors say they come from jitpc, as if reached through it
