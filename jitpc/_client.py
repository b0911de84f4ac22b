"""The public :class:`Client` handle, and ``connect()``.

A :class:`Client` is what users hold: the responders and routers that answer the peer, its
``user_data``, and the current :class:`~jitpc._connection.Connection`. On the connecting side a
:class:`~jitpc._connect.Connector` makes its connection at first use, and, with
``reconnect=True``, makes a new one whenever the last has ended; on the serving side the server
makes one handle per accepted connection, with no connector. Requests in flight die with their
connection (:class:`ClosedError`: they may have run, so they are never resent); the handle, its
responders and routers live on.

With ``version=`` or ``methods=``, the connector checks each new connection's server before the
handle uses it (see :meth:`~jitpc._connect.Connector.open`): until then the handle has no
current connection, and notifications sent meanwhile wait on the handle, not on the connection,
so that nothing reaches a server that fails the check.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

# pydantic-core's, which pydantic re-exports: an untyped client never imports pydantic.
from pydantic_core import ValidationError

from ._connect import CONNECT_TIMEOUT, Connector, Spinup, expect
from ._connection import (
    CLOSED,
    CONNECTING,
    ENDING,
    OPEN,
    Connection,
    FastRoute,
    Responder,
    log_fields,
)
from ._errors import ClosedError, ConnectError
from ._json import dump
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES
from ._threads import run_in_thread

if TYPE_CHECKING:
    from ._method import Method
    from ._steps import OnMismatch

__all__ = ["Client", "Responder", "Routes", "Spinup", "TypedResponder", "connect"]

logger = logging.getLogger("jitpc")

F = TypeVar("F", bound=Responder)
R = TypeVar("R")

#: A typed responder, as a router keeps it: takes the calling client and the raw params.
TypedResponder = Callable[["Client", Any], Any]
#: The same, from params already validated (a request line read whole: see FastRoute).
TypedServe = Callable[["Client", Any], Any]
#: A typed method's fast path, as a router keeps it: a validator of a request's params as
#: written, what serves the params it validated, and the same for a handler that takes no
#: client (``None`` if it takes one, or runs in a thread): no per-client binding to call.
TypedFast = tuple[Callable[[bytes], Any], TypedServe, Callable[[Any], Any] | None]


class _Watcher(Protocol):
    def _routes_changed(self) -> None: ...


class Routes(Protocol):
    """What :meth:`Client.mount` needs of a router (:class:`jitpc.Router` is one)."""

    def _lookup(self, method: str) -> TypedResponder | None: ...

    def _lookup_fast(self, method: str) -> TypedFast | None: ...

    def _watch(self, owner: _Watcher) -> None: ...


class _Serving(Protocol):
    """What a serving-side handle needs of its server."""

    id: str
    _table: dict[str, TypedResponder]
    _fast_table: dict[str, TypedFast]

    def _client_connected(self, client: Client) -> None: ...

    def _client_closed(self, client: Client) -> None: ...


class Client:
    """One end of a jitpc connection: the handle of a peer.

    On the connecting side it comes from :func:`connect` and has ``id == 0``; on the serving side
    the server makes one per accepted connection, with the lowest free small integer as ``id``.

    Attributes:
        id: 0 on the connecting side; the server's free-list id on the serving side.
        server_id: the id of the server this client talks to (or that serves it).
        user_data: free for the application to use; jitpc never reads it.
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Spinup | None = None,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        reconnect: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        version: str | None = None,
        methods: Iterable[type[Method[Any]]] = (),
        on_mismatch: OnMismatch = "error",
    ) -> None:
        self.server_id = server_id
        self.id = 0
        self.user_data: Any = None
        self._log = log_fields(server_id)  # the extra of this handle's log records
        self._connector: Connector | None = Connector(
            server_id,
            spinup=spinup,
            connect_timeout=connect_timeout,
            expected=expect(version, methods, on_mismatch),
        )
        self._reconnect = reconnect
        self._max_message_bytes = max_message_bytes
        self._server: _Serving | None = None
        self._state = OPEN  # OPEN, ENDING (end() called) or CLOSED, for the handle
        self._responders: dict[str, Responder] = {}
        self._routers: list[Routes] = []
        #: Resolved responders by name, filled at first use; cleared on any change.
        self._table: dict[str, Responder] = {}
        #: The typed methods of ``_table`` whose requests can be read whole, by the name as
        #: written (see Connection._serve_whole); filled with it, cleared with it.
        self._fast: dict[bytes, FastRoute] = {}
        self._connection: Connection | None = None
        self._retired: set[Connection] = set()  # ended by the peer, still finishing (reconnect)
        self._opening: asyncio.Task[Connection] | None = None
        self._close_error: ConnectError | None = None  # why the client never connected
        self._waiting = 0  # calls waiting for the connect attempt
        # Notifications (method, params as plain JSON) sent while the server is checked.
        self._held: list[tuple[str, Any]] = []
        self._closed_waiter: asyncio.Future[None] | None = None

    @classmethod
    def _serving(cls, server: _Serving, client_id: int, max_message_bytes: int) -> Client:
        """The handle of a connection the server accepted (the transport comes next)."""
        self = cls(server.id, max_message_bytes=max_message_bytes)
        self._connector = None
        self._server = server
        self.id = client_id
        self._log = log_fields(server.id, client_id)
        self._connection = Connection(
            self, server.id, max_message_bytes=max_message_bytes, accepted=True
        )
        return self

    def __repr__(self) -> str:
        conn = self._connection
        if self._state is CLOSED:
            state = "closed"
        elif conn is not None and conn.state is OPEN:
            state = "open"
        else:
            state = "not connected"
        return f"<jitpc.Client id={self.id} server_id={self.server_id!r} {state}>"

    # -- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the client was ended or destroyed, or, without ``reconnect``, once its
        connection has closed or failed to open (it never reopens then)."""
        return self._state is CLOSED

    async def open(self) -> None:
        """Connect now, rather than at the first request or notification.

        Tries the server's socket; if nothing answers, runs the spinup hook once and retries
        with back-off until ``connect_timeout``. Concurrent calls share one attempt; cancelling
        a caller does not cancel the attempt others may be waiting for.

        With ``version=`` or ``methods=`` (see :func:`connect`), the server is checked first,
        and restarted on a mismatch with ``on_mismatch="restart"``, all within
        ``connect_timeout``.

        Raises:
            VersionMismatch: the server fails the version check (see :func:`connect`).
            ConnectError: no server answered in time (``__cause__`` says why), or the spinup
                hook raised or outlived ``connect_timeout``.
            ClosedError: the client was closed.
            ValueError: the id gives an unusable socket path (too long, for example).
        """
        conn = self._connection
        if conn is None or conn.state is CONNECTING:
            await self._ready()

    async def request(
        self, method: str, params: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Send a request and wait for its result.

        Connects first if needed (see :meth:`open`), and waits while the peer does not read
        what we send. ``timeout`` bounds all of it, connecting included.

        Cancelling the call (or its timeout) is safe: the id is forgotten, the peer is sent a
        cancel notification for it (a jitpc peer cancels the handler; a Node peer ignores it),
        and a late response is discarded. The peer may still have run the request.

        Raises:
            RemoteError: the peer answered with an error; a subclass such as
                :class:`MethodNotFound` for the standard JSON-RPC codes.
            TimeoutError: ``timeout`` seconds passed first.
            ClosedError: the connection closed (or was closed) before the response came.
            ConnectError: the connection could not be opened; :class:`VersionMismatch`, a
                subclass, if its server failed the version check.
            TypeError: ``params`` cannot be written as JSON.
        """
        if timeout is not None:
            async with asyncio.timeout(timeout):
                return await self.request(method, params)
        conn = self._connection
        if conn is None or conn.state is not OPEN or conn.write_paused:
            conn = await self._ready()
        id_, future = conn.send_request(method, params)
        try:
            return await future
        except asyncio.CancelledError:
            conn.cancel(id_)
            raise

    async def call(self, params: Method[R], *, timeout: float | None = None) -> R:
        """Call a typed method: ``counter = await client.call(Inc(key="a"))``.

        Sends ``params`` as the request for its model's method, and validates the result
        against the model's result type. ``timeout`` and cancelling are as for :meth:`request`.

        Raises:
            InvalidParams: the peer rejected the params (its reasons in ``data``).
            MethodNotFound: the peer has no such method.
            InternalError: the peer's handler failed.
            RemoteError: any other error answer.
            ResultValidationError: the result does not fit the result type.
            TimeoutError: ``timeout`` seconds passed first.
            ClosedError: the connection closed before the response came.
            ConnectError: the connection could not be opened; :class:`VersionMismatch`, a
                subclass, if its server failed the version check.
        """
        if timeout is not None:
            async with asyncio.timeout(timeout):
                return await self.call(params)
        method_type = type(params)
        # (``_method`` is imported by now, as ``params`` is a Method; its caches are read here,
        # as result_reader() and result_validator() would, to spare a call per result. Each
        # Method class has its own: see Method.__pydantic_init_subclass__.)
        reader = method_type.__jitpc_read_result__
        if reader is False:
            from ._method import result_reader

            reader = result_reader(method_type)
        # request()'s body, with the reader (which needs the request's id): a coroutine
        # shared by both would cost each call ~1,050 instructions more (callgrind). An answer
        # read whole comes validated.
        conn = self._connection
        if conn is None or conn.state is not OPEN or conn.write_paused:
            conn = await self._ready()
        id_, future = conn.send_request(method_type.__jitpc_method__, params, reader)
        try:
            raw = await future
        except asyncio.CancelledError:
            conn.cancel(id_)
            raise
        if type(raw) is method_type.__jitpc_result_type__:
            return raw  # type: ignore[no-any-return]  # read whole: a parsed answer is no model
        validate = method_type.__jitpc_validate_result__
        if validate is None:
            from ._method import result_validator

            validate = result_validator(method_type)
        try:
            return validate(raw)  # type: ignore[no-any-return]
        except ValidationError as exc:
            from ._method import invalid_result

            raise invalid_result(method_type, raw, exc) from None

    @overload
    def notify(self, method: str, params: Any = None) -> None: ...
    @overload
    def notify(self, method: Method[None]) -> None: ...
    def notify(self, method: str | Method[None], params: Any = None) -> None:
        """Send a notification: a request that gets no response. Returns at once.

        Either ``notify("log", {"line": "hi"})`` or, typed, ``notify(Log(line="hi"))`` with a
        ``Method[None]`` params model. Connects first if needed, in the background; if that
        fails the notification is lost (and logged at debug level), as with any
        fire-and-forget message. A client that checks its server's version holds it (its
        params as they are now) until the server passed the check.

        Raises:
            ClosedError: the client is closed or ending.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: not connected yet and no event loop is running.
        """
        if self._state is not OPEN:
            raise self._closed_error()
        if type(method) is not str:
            name = getattr(type(method), "__jitpc_method__", None)
            if not isinstance(name, str):
                raise TypeError(f"notify() takes a method name or a jitpc.Method, not {method!r}")
            method, params = name, method
        conn = self._current()
        if conn is None:
            self._start_opening()
            conn = self._connection
            if conn is None:  # the server is being checked: nothing goes to it before that
                # Written now, so that an unwritable params raises here, as unchecked.
                self._held.append((method, None if params is None else json.loads(dump(params))))
                return
        conn.notify(method, params)

    @overload
    def respond(self, method: str, *, thread: bool = False) -> Callable[[F], F]: ...
    @overload
    def respond(self, method: str, fn: F, *, thread: bool = False) -> F: ...
    def respond(
        self, method: str, fn: F | None = None, *, thread: bool = False
    ) -> F | Callable[[F], F]:
        """Answer the peer's requests for ``method`` with ``fn(params)``.

        ``fn`` may be sync or async; what it returns (or raises) is the response. A
        :class:`RemoteError` it raises is sent as is, keeping its code and data; any other
        exception is sent as an :class:`InternalError` with its message, and logged. Replaces an
        earlier responder for the same method. Usable as a decorator: ``@client.respond("m")``.

        A synchronous ``fn`` runs on the event loop and must not block: while it runs, nothing
        else is served. With ``thread=True`` it runs in a worker thread instead (see
        :data:`jitpc.MAX_WORKERS`); cancelling such a request stops waiting for it, not the
        thread.
        """
        if fn is None:

            def decorator(fn: F) -> F:
                self.respond(method, fn, thread=thread)
                return fn

            return decorator
        self._responders[method] = functools.partial(run_in_thread, fn) if thread else fn
        self._routes_changed()
        return fn

    def mount(self, router: Routes) -> None:
        """Answer the peer's calls with ``router``'s typed methods.

        Responders set with :meth:`respond` take precedence; routers are searched in the order
        they were mounted (on the serving side, the client's own routers before the server's).
        Methods added to the router later are served too.
        """
        self._routers.append(router)
        router._watch(self)
        self._routes_changed()

    def unrespond(self, method: str) -> None:
        """Stop answering ``method``: the peer's requests for it get a method-not-found error."""
        self._responders.pop(method, None)
        self._routes_changed()

    async def end(self, *, timeout: float | None = None) -> None:
        """Close gracefully: wait for in-flight work, then close and wait until closed.

        New requests fail with :class:`ClosedError` from the moment this is called. What is
        waited for: our requests that someone still awaits (a request given up by a timeout or
        a cancel is not), and our responders' answers to the peer. If ``timeout`` seconds pass
        first, the connection is destroyed instead (see :meth:`destroy`).

        Cancelling ``end()`` stops the wait, not the ending: the connection still closes once
        its work is done. Raises nothing.
        """
        if self._state is OPEN:
            self._state = ENDING
        try:
            async with asyncio.timeout(timeout):
                opening = self._opening
                if opening is not None:
                    conn = self._connection
                    queued = self._held or (conn is not None and conn.queued)
                    if not self._waiting and not queued:
                        opening.cancel()  # nobody awaits the attempt, nothing waits to go out
                    await asyncio.wait((opening,))
                for conn in [self._connection, *self._retired]:
                    if conn is not None:
                        conn.end()
                        await conn.wait_closed()
        except TimeoutError:
            self.destroy()
        self._mark_closed()

    def destroy(self, err: BaseException | None = None) -> None:
        """Close at once: pending requests fail with :class:`ClosedError` (caused by ``err``),
        running async responders are cancelled, and the connection is aborted. Idempotent."""
        self._state = CLOSED
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        for conn in [self._connection, *self._retired]:
            if conn is not None:
                conn.destroy(err)
        self._mark_closed()

    async def wait_closed(self) -> None:
        """Wait until the client has closed (see :attr:`closed`). Raises nothing; cancelling
        the wait is safe (the client goes on)."""
        if self._state is CLOSED:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """End gracefully (see :meth:`end`), or destroy if the block raised. Cancelled while
        ending, the ending goes on to its close (as for :meth:`end`)."""
        if exc is None:
            await self.end()
        else:
            self.destroy()

    # -- connecting ----------------------------------------------------------------------------

    async def _ready(self) -> Connection:
        """The open connection, connecting first if need be, once the peer reads our writes."""
        conn = self._current()
        if conn is None or conn.state is CONNECTING:
            if self._state is not OPEN:
                raise self._closed_error()
            opening = self._start_opening()
            self._waiting += 1
            try:
                # Not shield(): destroy() cancels the attempt, and that must end this wait
                # with ClosedError, not as if this task had been cancelled.
                await asyncio.wait((opening,))
            finally:
                self._waiting -= 1
            if opening.cancelled():
                raise self._closed_error()
            conn = opening.result()
        if conn.write_paused:
            await conn.drained()
        return conn

    def _current(self) -> Connection | None:
        """The connection to send on; with ``reconnect``, never one the peer is ending."""
        conn = self._connection
        if conn is not None and conn.state >= ENDING and self._reconnect and self._state is OPEN:
            # The peer ended it, and it finishes what it owes the peer on its own: new
            # messages go on a new connection.
            self._retired.add(conn)
            self._connection = conn = None
        return conn

    def _start_opening(self) -> asyncio.Task[Connection]:
        """The connect attempt, started on the running loop if it has not been yet."""
        if self._opening is None:
            if self._connector is None:
                raise self._closed_error()
            conn = self._new_connection()
            if self._connector.expected is None:
                self._connection = conn  # notifications queue on it until it connects
            self._opening = asyncio.get_running_loop().create_task(self._open(conn))
            self._opening.add_done_callback(self._opened)
        return self._opening

    def _new_connection(self) -> Connection:
        return Connection(self, self.server_id, max_message_bytes=self._max_message_bytes)

    async def _open(self, conn: Connection) -> Connection:
        connector = self._connector
        assert connector is not None
        conn = await connector.open(conn, self._new_connection)
        if connector.expected is not None:  # checked: the handle uses it from now on
            self._connection = conn
            held, self._held = self._held, []
            for method, params in held:
                try:
                    conn.notify(method, params)
                except TypeError as exc:  # (only an odd method name: the params were written)
                    logger.debug(
                        "jitpc: notification %r to %r lost: %s",
                        method,
                        conn,
                        exc,
                        extra=log_fields(self.server_id),
                    )
        return conn

    def _opened(self, task: asyncio.Task[Connection]) -> None:
        self._opening = None
        if task.cancelled():
            exc: BaseException | None = ClosedError(f"jitpc client for {self.server_id!r} closed")
        else:
            exc = task.exception()
        if exc is None:
            return
        if self._held:
            logger.debug(
                "jitpc: %d notifications to %r lost: %s",
                len(self._held),
                self.server_id,
                exc,
                extra=log_fields(self.server_id),
            )
            self._held = []
        if isinstance(exc, ConnectError) and not self._reconnect:
            self._close_error = exc
        conn = self._connection
        if conn is not None and conn.state is CONNECTING:
            conn.destroy(exc)  # queued notifications are lost
        if not self._reconnect:
            # Closed for good, as by the connection's loss; a connection being checked was
            # never the handle's, so its loss did not tell.
            self._mark_closed()

    def _closed_error(self) -> BaseException:
        if self._close_error is not None:
            return self._close_error
        what = "ending" if self._state is ENDING else "closed"
        return ClosedError(f"jitpc connection to {self.server_id!r} is {what}")

    # -- what the connection calls -------------------------------------------------------------

    def _lookup(self, method: str) -> Responder | None:
        fn = self._responders.get(method)
        if fn is None:
            typed = fast = None
            for router in self._routers:
                typed = router._lookup(method)
                if typed is not None:
                    fast = router._lookup_fast(method)
                    break
            if typed is None and self._server is not None:
                typed = self._server._table.get(method)
                fast = self._server._fast_table.get(method)
            if typed is None:
                return None  # unknown names are not cached: no unbounded growth
            fn = functools.partial(typed, self)
            if fast is not None:
                read, serve, alone = fast
                key = method.encode("utf-8", "replace")  # (a name unlike what is written)
                bound = functools.partial(serve, self) if alone is None else alone
                self._fast[key] = (method, read, bound)
        self._table[method] = fn
        return fn

    def _routes_changed(self) -> None:
        self._table.clear()
        self._fast.clear()

    def _connection_made(self, connection: Connection) -> None:
        if self._server is not None:
            self._server._client_connected(self)

    def _connection_lost(self, connection: Connection, error: ClosedError) -> None:
        if connection is not self._connection:
            self._retired.discard(connection)
            return
        self._connection = None
        if self._server is not None:
            self._server._client_closed(self)
        if not self._reconnect or self._state is not OPEN:
            self._mark_closed()

    def _mark_closed(self) -> None:
        self._state = CLOSED
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)


def connect(
    server_id: str,
    *,
    spinup: Spinup | None = None,
    connect_timeout: float | None = CONNECT_TIMEOUT,
    reconnect: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    version: str | None = None,
    methods: Iterable[type[Method[Any]]] = (),
    on_mismatch: OnMismatch = "error",
) -> Client:
    """A client for the jitpc server ``server_id``; it connects at first use.

    No I/O happens here: the first :meth:`Client.request`, :meth:`Client.notify` or
    :meth:`Client.open` connects, running ``spinup`` (sync or async) once if no server answers
    the first try, then retrying with back-off. Use it as ``async with connect(id) as client:``
    to end the connection on exit.

    Args:
        server_id: the id the server listens on; it names ``<tmpdir>/<id>.sock``.
        spinup: called at most once per connect, after the first failed try; typically starts
            the server process (detached) and may or may not wait for it. A coroutine function
            runs on the loop; any other callable in a worker thread, so that a hook that blocks
            cannot hold the connect past its deadline.
        connect_timeout: seconds the connect phase may take, spinup included (default: Node's
            back-off schedule, about 7.1 s); the back-off goes on, jittered, until then. ``0``
            tries once and runs no hook; ``None`` retries until the server answers.
        reconnect: after the connection ends (the server spun down, restarted or died), the
            next request or notification connects again, spinup included; responders and
            mounted routers carry over. Requests in flight when it ended fail with
            :class:`ClosedError` and are never resent.
        max_message_bytes: the longest message accepted from the server.
        version: the version the server must run (what its ``listen(version=...)`` says).
        methods: typed methods (``jitpc.Method`` subclasses) whose params and result schemas
            must be the server's too (compared by fingerprint).
        on_mismatch: what to do with a server that fails that check: ``"error"`` or
            ``"restart"``.

    Versions: with ``version`` or ``methods``, each new connection (the first, and each
    after a reconnect) is checked before anything is sent on it: the server's ``rpc.status``
    must report that ``version`` and, for each of ``methods``, the same fingerprint. A server
    without ``rpc.status`` (Node jitpc) reports no version and no methods. The check counts
    in ``connect_timeout``. A server that fails it:

    * with ``on_mismatch="error"``: the first request, call or :meth:`Client.open` raises
      :class:`VersionMismatch` (its ``expected`` and ``found`` versions, and the ``methods``
      that differ); the connection is closed, the server left running.
    * with ``on_mismatch="restart"``: it is asked to stop (``rpc.shutdown``, letting its
      requests in flight finish for what is left of ``connect_timeout``, at most 5 s); once it
      has given the id up, ``spinup`` starts the new server (the normal path) and that one is
      checked. If it fails too, or the old one cannot be stopped (it has no
      ``rpc.shutdown``, as Node jitpc; or it kept the id past ``connect_timeout``),
      :class:`VersionMismatch`: a client restarts a server at most once per connect. Only a
      server that failed the check on this client's connection is ever stopped: clients that
      restart the same old server together stop it alone, one of them starts its successor
      (with :func:`jitpc.spawn`, one per herd), and the others find the successor and take it.

    Raises:
        ValueError: ``connect_timeout`` is negative; ``on_mismatch`` is neither
            ``"error"`` nor ``"restart"``; with ``version`` or ``methods``,
            ``connect_timeout`` is ``0`` (no time to ask the server), or
            ``on_mismatch="restart"`` has no ``spinup`` to start the new server.
        TypeError: ``version`` is not a string, or ``methods`` holds something other than
            ``jitpc.Method`` subclasses.
    """
    return Client(
        server_id,
        spinup=spinup,
        connect_timeout=connect_timeout,
        reconnect=reconnect,
        max_message_bytes=max_message_bytes,
        version=version,
        methods=methods,
        on_mismatch=on_mismatch,
    )
