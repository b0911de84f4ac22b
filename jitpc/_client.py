"""One jitpc connection, from either end, and ``connect()``.

A :class:`Client` is a peer: it sends requests and notifications and answers the requests its
peer sends, on the connecting side and on the serving side alike. It is an asyncio glue layer
around the I/O-free :class:`~jitpc._protocol.Peer`:

* An :class:`asyncio.Protocol` feeds received bytes to the core; no reader task, no
  ``StreamReader`` line limit (research T14).
* Outgoing messages queued during one loop tick go out together, up to ``WRITE_BATCH`` per
  write, so that the peer can start on the first ones while the rest are made.
* A synchronous responder answers in the same callback that read the request: no task per
  request. An async responder runs as a task.
* Every request ends exactly once: with its result, a :class:`RemoteError`, or a
  :class:`ClosedError` when the connection ends first. Nothing is ever resent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from pydantic import ValidationError

from . import _shutdown, _typed
from ._errors import (
    ClosedError,
    ConnectError,
    InternalError,
    MethodNotFound,
    ProtocolError,
    RemoteError,
    ResultValidationError,
)
from ._method import Method, result_validator
from ._paths import address
from ._peercred import check_peer
from ._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BadMessage,
    ErrorResponse,
    Event,
    Notification,
    Peer,
    Request,
    Response,
)
from ._transport import is_retryable, open_stream, peer_gone
from ._typed import Router, TypedResponder, is_awaitable, validation_errors

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Client", "Responder", "Spinup", "connect"]

logger = logging.getLogger("jitpc")

#: A responder takes the request's params and returns the result, or an awaitable of it.
Responder = Callable[[Any], Any]
#: A spinup hook: a sync or async callable that (typically) starts a server process.
Spinup = Callable[[], Awaitable[object] | object]

F = TypeVar("F", bound=Responder)
R = TypeVar("R")

# Node jitpc's Fibonacci back-off: the sleeps between connect attempts (PROTOCOL.md §6).
BACKOFF = (0.05, 0.1, 0.15, 0.25, 0.4, 0.65, 1.05, 1.7, 2.75)
#: Requests from the peer handled at once on one connection (async responders); at the cap,
#: reading from that peer stops until some finish.
MAX_IN_FLIGHT = 1024
#: Bytes of answers written while the peer is not reading them; past it, reading stops.
MAX_UNSENT_REPLY_BYTES = 4 * 1024 * 1024
#: Messages queued in one loop turn go out together, but at most this many per write: the peer
#: starts on the first ones while this end makes the rest, so both processes work at once.
#: (One write per turn made them take turns: with 64 requests in flight, 16 per write gave
#: 1.5-1.9x the throughput, for the same CPU per request.)
WRITE_BATCH = 16

# Each sleep is stretched or shrunk by up to this fraction, so that a herd of clients that
# failed together does not retry in lockstep.
JITTER = 0.2


class _Link(asyncio.Protocol):
    """The asyncio protocol of one connection; it only forwards to its :class:`Client`."""

    def __init__(self, client: Client) -> None:
        # Bound methods as instance attributes: the transport calls them with no extra hop.
        self.connection_made = client._connection_made  # type: ignore[method-assign]
        self.data_received = client._data_received  # type: ignore[method-assign]
        self.eof_received = client._eof_received  # type: ignore[method-assign]
        self.connection_lost = client._connection_lost  # type: ignore[method-assign]
        self.pause_writing = client._pause_writing  # type: ignore[method-assign]
        self.resume_writing = client._resume_writing  # type: ignore[method-assign]


class Client:
    """One end of a jitpc connection.

    On the connecting side it comes from :func:`connect` and has ``id == 0``; on the serving side
    the server makes one per accepted connection, with the lowest free small integer as ``id``.

    Attributes:
        id: 0 on the connecting side; the server's free-list id on the serving side.
        user_data: free for the application to use; jitpc never reads it.
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Spinup | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        _server: Server | None = None,
        _id: int = 0,
    ) -> None:
        self.server_id = server_id
        self.id = _id
        self.user_data: Any = None
        self._spinup = spinup
        self._server = _server
        self._peer = Peer(max_message_bytes=max_message_bytes)
        self._link = _Link(self)
        self._responders: dict[str, Responder] = {}
        self._routers: list[Router] = []
        self._typed_cache = _typed.Cache()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._opening: asyncio.Task[None] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._close_error: ConnectError | None = None  # why the client never connected
        self._closed = False
        self._ending = False
        self._eof_sent = False
        self._peer_eof = False
        self._flush_pending = False
        self._wrote_early = False  # a request was written at once since the last flush/read
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._held: list[bytes] | None = None
        self._reading_paused = False
        self._unsent_replies = 0
        self._deferred: list[Event] = []
        self._holds = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._transport else "not connected"
        return f"<jitpc.Client id={self.id} server_id={self.server_id!r} {state}>"

    # -- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection has closed (or failed to open); it never reopens."""
        return self._closed

    async def open(self) -> None:
        """Connect now, rather than at the first request or notification.

        Tries the server's socket; if nothing answers, runs the spinup hook once and retries
        with Node jitpc's Fibonacci back-off (about 7 s in all). Concurrent calls share one
        attempt. Cancelling a caller does not cancel the attempt others may be waiting for.

        Raises:
            ConnectError: no server answered (``__cause__`` says why), or the spinup hook raised.
            ClosedError: the client was closed.
            ValueError: the id gives an unusable socket path (too long, for example).
        """
        if self._transport is not None and not self._closed:
            return
        if self._closed:
            raise self._closed_error()
        await asyncio.shield(self._start_opening())

    async def request(self, method: str, params: Any = None) -> Any:
        """Send a request and wait for its result.

        Connects first if needed (see :meth:`open`). Cancelling the call is safe: the id is
        forgotten and a late response is discarded; the peer may still run the request.

        Raises:
            RemoteError: the peer answered with an error; a subclass such as
                :class:`MethodNotFound` for the standard JSON-RPC codes.
            ClosedError: the connection closed (or was closed) before the response came.
            ConnectError: the connection could not be opened.
            TypeError: ``params`` cannot be written as JSON.
        """
        if self._transport is None or self._write_paused:
            await self._ready()
        id_, future = self._send(method, params)
        try:
            return await future
        finally:
            if self._pending.pop(id_, None) is not None:
                self._maybe_finish_end()

    async def call(self, params: Method[R]) -> R:
        """Call a typed method: ``counter = await client.call(Inc(key="a"))``.

        Sends ``params`` as the request for its model's method, and validates the result
        against the model's result type. Cancelling is safe, as for :meth:`request`.

        Raises:
            InvalidParams: the peer rejected the params (its reasons in ``data``).
            MethodNotFound: the peer has no such method.
            InternalError: the peer's handler failed.
            RemoteError: any other error answer.
            ResultValidationError: the result does not fit the result type.
            ClosedError: the connection closed before the response came.
            ConnectError: the connection could not be opened.
        """
        method_type = type(params)
        # request()'s steps, inline: one coroutine less per call.
        if self._transport is None or self._write_paused:
            await self._ready()
        id_, future = self._send(method_type.__jitpc_method__, params)
        try:
            raw = await future
        finally:
            if self._pending.pop(id_, None) is not None:
                self._maybe_finish_end()
        try:
            return result_validator(method_type)(raw)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise ResultValidationError(
                f"the result of {method_type.__jitpc_method__!r} does not fit "
                f"{_type_name(method_type.__jitpc_result_type__)}: {exc}",
                validation_errors(exc),
                raw,
            ) from None

    async def _ready(self) -> None:
        """Connect if not connected yet; wait while the peer is not reading our requests."""
        if self._transport is None:
            await self.open()
        if self._write_paused:
            await self._drained()

    def _send(self, method: str, params: Any) -> tuple[int, asyncio.Future[Any]]:
        if self._closed or self._ending:
            raise self._closed_error()
        id_ = self._peer.send_request(method, params)
        future = self._loop.create_future()  # type: ignore[union-attr]
        self._pending[id_] = future
        if self._flush_pending or self._wrote_early:
            # More requests in the same turn: they share writes (see WRITE_BATCH).
            self._schedule_flush()
        else:
            # The first request since the last read or flush goes out at once: a sequential
            # caller waits for nothing more, and costs no callback.
            self._wrote_early = True
            self._flush()
        return id_, future

    @overload
    def notify(self, method: str, params: Any = None) -> None: ...
    @overload
    def notify(self, method: Method[None]) -> None: ...
    def notify(self, method: str | Method[None], params: Any = None) -> None:
        """Send a notification: a request that gets no response. Returns at once.

        Either ``notify("log", {"line": "hi"})`` or, typed, ``notify(Log(line="hi"))`` with a
        ``Method[None]`` params model. Connects first if needed, in the background; if that
        fails the notification is lost (and logged at debug level), as with any
        fire-and-forget message.

        Raises:
            ClosedError: the client is closed or ending.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: not connected yet and no event loop is running.
        """
        if self._closed or self._ending:
            raise self._closed_error()
        if isinstance(method, Method):
            method, params = type(method).__jitpc_method__, method
        self._peer.send_notification(method, params)
        if self._transport is None:
            self._start_opening()
        else:
            self._schedule_flush()

    @overload
    def respond(self, method: str) -> Callable[[F], F]: ...
    @overload
    def respond(self, method: str, fn: F) -> F: ...
    def respond(self, method: str, fn: F | None = None) -> F | Callable[[F], F]:
        """Answer the peer's requests for ``method`` with ``fn(params)``.

        ``fn`` may be sync or async; what it returns (or raises) is the response. A
        :class:`RemoteError` it raises is sent as is, keeping its code and data; any other
        exception is sent as an :class:`InternalError` with its message, and logged. Replaces an
        earlier responder for the same method. Usable as a decorator: ``@client.respond("m")``.
        """
        if fn is None:

            def decorator(fn: F) -> F:
                self._responders[method] = fn
                return fn

            return decorator
        self._responders[method] = fn
        return fn

    def mount(self, router: Router) -> None:
        """Answer the peer's calls with ``router``'s typed methods.

        Responders set with :meth:`respond` take precedence; routers are searched in the order
        they were mounted (on the serving side, the client's own routers before the server's).
        """
        self._routers.append(router)
        _typed.changed()

    def unrespond(self, method: str) -> None:
        """Stop answering ``method``: the peer's requests for it get a method-not-found error."""
        self._responders.pop(method, None)

    async def end(self) -> None:
        """Close gracefully: wait for in-flight work, then close and wait until closed.

        New requests fail with :class:`ClosedError` from the moment this is called; requests
        already sent still get their responses, and responders already running finish and
        answer. Then the connection is half-closed, and closes once the peer ends too.
        """
        if not self._closed and not self._ending:
            if self._transport is None:
                if self._opening is None:
                    self._mark_closed(None)
                    return
                try:
                    await asyncio.shield(self._opening)
                except (ConnectError, ClosedError):
                    return
            self._ending = True
            self._maybe_finish_end()
        await self.wait_closed()

    def destroy(self, err: BaseException | None = None) -> None:
        """Close at once: pending requests fail with :class:`ClosedError` (caused by ``err``),
        running async responders are cancelled, and the connection is aborted. Idempotent."""
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        self._close_now(err, abort=True)

    async def wait_closed(self) -> None:
        """Wait until the connection has closed, however that happens."""
        if self._closed:
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
        if exc is None:
            await self.end()
        else:
            self.destroy()

    # -- opening -------------------------------------------------------------------------------

    def _start_opening(self) -> asyncio.Task[None]:
        """The connect attempt, started on the running loop if it has not been yet."""
        if self._opening is None:
            loop = self._loop = asyncio.get_running_loop()
            self._opening = loop.create_task(self._connect())
            self._opening.add_done_callback(self._opened)
        return self._opening

    async def _connect(self) -> None:
        path = address(self.server_id).socket

        def failure(message: str) -> ConnectError:
            return ConnectError(message, server_id=self.server_id, path=path)

        spinup = self._spinup
        delays = iter(BACKOFF)
        tries = 0
        while True:
            tries += 1
            try:
                transport = await open_stream(path, self._protocol)
            except PermissionError as exc:
                raise failure(
                    f"refusing the jitpc server for {self.server_id!r} at {path}: {exc}"
                ) from exc
            except OSError as exc:
                if not is_retryable(exc):
                    raise failure(
                        f"cannot connect to jitpc server {self.server_id!r} at {path}: {exc}"
                    ) from exc
                last_error = exc
            else:
                if self._transport is None and not self._closed:
                    transport.close()  # our connection_made failed: never leave a request hanging
                    raise failure(f"connected to {path}, but could not set up the connection")
                return
            if spinup is not None:
                hook, spinup = spinup, None
                try:
                    started = hook()
                    if inspect.isawaitable(started):
                        await started
                except Exception as exc:
                    raise failure(
                        f"the spinup hook for jitpc server {self.server_id!r} failed: {exc!r}"
                    ) from exc
            delay = next(delays, None)
            if delay is None:
                raise failure(
                    f"no jitpc server for {self.server_id!r} at {path} after {tries} tries "
                    f"over {sum(BACKOFF):.1f} s: {last_error}"
                ) from last_error
            logger.debug("jitpc: no server at %s yet (%s); trying again", path, last_error)
            await asyncio.sleep(delay * random.uniform(1 - JITTER, 1 + JITTER))

    def _protocol(self) -> asyncio.Protocol:
        return self._link

    def _opened(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.debug("jitpc client for %r could not connect: %s", self.server_id, exc)
            self._mark_closed(exc)

    def _closed_error(self) -> BaseException:
        exc = self._close_error
        if isinstance(exc, ConnectError):
            return exc
        return ClosedError(
            f"jitpc connection to {self.server_id!r} is "
            + ("ending" if self._ending and not self._closed else "closed")
        )

    # -- transport callbacks ---------------------------------------------------------------

    def _connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence no isinstance).
        transport = cast(asyncio.Transport, transport)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._closed:
            transport.abort()
            return
        if self._server is not None:
            # (The connecting side checks its server before the connection is set up.)
            refusal = _foreign_peer(transport)
            if refusal is not None:
                transport.abort()
                logger.warning("jitpc server %r refused a connection: %s", self.server_id, refusal)
                self._mark_closed(refusal)
                return
        self._transport = transport
        _shutdown.track(self._loop, self)
        if self._server is not None:
            self._server._client_connected(self)
        self._flush()

    def _hold(self) -> None:
        """Read nothing into the core until as many :meth:`_release` calls (async on_client)."""
        self._holds += 1
        if self._held is None:
            self._held = []
            self._update_reading()

    def _release(self) -> None:
        self._holds -= 1
        if self._holds:
            return
        held, self._held = self._held, None
        if self._closed or self._transport is None:
            return
        self._update_reading()
        for data in held or ():
            if not self._closed:
                self._data_received(data)

    def _update_reading(self) -> None:
        """Pause or resume reading from the peer: backpressure (research T13, section 2).

        Reading stops while an async on_client runs, while ``MAX_IN_FLIGHT`` requests from the
        peer are being handled, or while more than ``MAX_UNSENT_REPLY_BYTES`` of our answers wait
        behind a peer that does not read them. What a peer can make us hold is then bounded,
        and the kernel's socket buffer pushes back on the peer. Only answers count toward the
        byte bound: our own requests wait for the drain in :meth:`request` instead, so two
        peers sending each other large requests at once never both stop reading.
        """
        transport = self._transport
        if transport is None or self._closed:
            return
        pause = (
            self._held is not None
            or bool(self._deferred)
            or len(self._tasks) >= MAX_IN_FLIGHT
            or self._unsent_replies > MAX_UNSENT_REPLY_BYTES
        )
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _data_received(self, data: bytes) -> None:
        if self._held is not None:
            # Some loops (uvloop) deliver data read before pause_reading() took effect.
            self._held.append(data)
            return
        self._wrote_early = False  # a new loop turn: the next request may go out at once
        peer = self._peer
        events = peer.receive_data(data)
        if self._deferred:
            self._deferred.extend(events)  # read before pause_reading() took effect
        else:
            self._process(events)
        if peer.failed:
            bad = events[-1]
            assert isinstance(bad, BadMessage)
            error = ClosedError(
                f"jitpc connection closed: the peer broke the protocol: {bad.reason}"
            )
            error.__cause__ = ProtocolError(bad.reason)
            self._close_now(error, abort=False)  # our error reply still goes out
        elif self._ending:
            self._maybe_finish_end()

    def _process(self, events: list[Event]) -> None:
        self._flush_pending = True  # replies made below go out together (see WRITE_BATCH)
        pending = self._pending
        for index, event in enumerate(events):
            kind = type(event)
            if kind is Request or kind is Notification:
                if len(self._tasks) >= MAX_IN_FLIGHT:
                    # At the cap: the rest waits (see _update_reading) until handlers finish.
                    self._deferred = events[index:]
                    break
                self._dispatch(event)  # type: ignore[arg-type]
                if len(self._peer.outgoing) >= WRITE_BATCH:
                    self._write_batch()
            elif kind is Response:
                future = pending.pop(event.id, None) if type(event.id) is int else None  # type: ignore[union-attr]
                if future is not None and not future.done():
                    future.set_result(event.result)  # type: ignore[union-attr]
            elif kind is ErrorResponse:
                self._error_response(event)  # type: ignore[arg-type]
            else:
                assert isinstance(event, BadMessage)
                logger.warning("jitpc peer %r sent a bad message: %s", self, event.reason)
        if self._peer.outgoing:
            self._flush()
        else:
            self._flush_pending = False

    def _error_response(self, event: ErrorResponse) -> None:
        id_ = event.id
        future = self._pending.pop(id_, None) if type(id_) is int else None
        if future is None:
            logger.warning("jitpc peer %r reported an error: %s", self, event.error)
        elif not future.done():
            future.set_exception(event.error)

    def _eof_received(self) -> bool:
        # The peer will send nothing more, so nothing pending can be answered: fail it now.
        self._peer_eof = True
        for event in self._peer.receive_eof():
            assert isinstance(event, BadMessage)
            logger.warning("jitpc peer %r: %s", self, event.reason)
        closed = ClosedError("jitpc peer closed the connection")
        self._fail_pending(closed)
        if self._transport is not None and peer_gone(self._transport):
            # Not a half-close: nothing can be sent back. Release the connection (and its
            # server-side id) now, rather than when a running responder's answer finds a
            # broken pipe; the responders themselves still run to their end.
            self._mark_closed(closed)
            return False
        if self._eof_sent:
            assert self._transport is not None
            self._transport.close()  # both halves are closed now
            return True
        self._ending = True
        self._maybe_finish_end()
        return True  # keep our half open to send the answers still owed

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._mark_closed(exc)

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        if self._unsent_replies:
            self._unsent_replies = 0
            self._update_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drained(self) -> None:
        waiter = self._loop.create_future()  # type: ignore[union-attr]
        self._drain_waiters.append(waiter)
        await waiter

    # -- answering the peer ----------------------------------------------------------------

    def _dispatch(self, event: Request | Notification) -> None:
        method = event.method
        id_ = event.id if type(event) is Request else None
        fn = self._responders.get(method)
        try:
            if fn is not None:
                result = fn(event.params)
            else:
                cache = self._typed_cache
                typed = cache.get(method) if cache.version == _typed.version else None
                if typed is None:
                    typed = self._typed_responder(method)
                if typed is None:
                    if id_ is not None:
                        self._peer.send_error(id_, MethodNotFound(f"Unknown method: {method}"))
                    else:
                        logger.debug("jitpc: no responder for notification %r", method)
                    return
                result = typed(event.params, self)
        except Exception as exc:
            self._send_exception(id_, method, exc)
            return
        if is_awaitable(result):
            task = self._loop.create_task(self._finish(id_, method, result))  # type: ignore[union-attr]
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            if len(self._tasks) >= MAX_IN_FLIGHT:
                self._update_reading()
        elif id_ is not None:
            self._send_result(id_, result)

    def _typed_responder(self, method: str) -> TypedResponder | None:
        """The typed responder for ``method``, which the cache does not hold (``_dispatch``
        reads a valid cache itself, a call less): reset a stale cache, search the routers."""
        cache = self._typed_cache
        if cache.version != _typed.version:
            cache.clear()
            cache.version = _typed.version
        routers = self._routers
        if self._server is not None:
            routers = routers + self._server._routers
        for router in routers:
            typed = router.lookup(method)
            if typed is not None:
                cache[method] = typed  # unknown names are not cached: no unbounded growth
                return typed
        return None

    async def _finish(self, id_: Any, method: str, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            self._send_exception(id_, method, exc)
        else:
            if id_ is not None:
                self._send_result(id_, result)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._closed:
            self._schedule_flush()
            if self._deferred and len(self._tasks) < MAX_IN_FLIGHT:
                deferred, self._deferred = self._deferred, []
                self._process(deferred)
            if self._reading_paused:
                self._update_reading()
            if self._ending:
                self._maybe_finish_end()

    def _send_result(self, id_: Any, result: Any) -> None:
        try:
            self._peer.send_result(id_, result)
        except TypeError as exc:
            logger.error("jitpc: result of request %r cannot be sent: %s", id_, exc)
            self._peer.send_error(id_, InternalError(f"result cannot be encoded: {exc}"))

    def _send_exception(self, id_: Any, method: str, exc: Exception) -> None:
        if isinstance(exc, RemoteError):
            error = exc
        else:
            logger.error("jitpc: responder for %r raised", method, exc_info=exc)
            error = InternalError(str(exc) or type(exc).__name__)
        if id_ is not None:
            self._peer.send_error(id_, error)

    # -- writing and closing -----------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Write what is queued at the end of this loop turn, or now if a batch is full."""
        if not self._flush_pending:
            if self._loop is not None:
                self._flush_pending = True
                self._loop.call_soon(self._flush_soon)
        elif len(self._peer.outgoing) >= WRITE_BATCH:
            self._write_batch()

    def _write_batch(self) -> None:
        """Write a full batch now, mid-turn; the flush due at the end of the turn still comes."""
        self._flush()
        self._flush_pending = True

    def _flush_soon(self) -> None:
        self._wrote_early = False
        self._flush()

    def _flush(self) -> None:
        self._flush_pending = False
        data = self._peer.data_to_send()
        if data and self._transport is not None and not self._eof_sent and not self._closed:
            was_paused = self._write_paused
            self._transport.write(data)
            if was_paused:
                # The peer is not reading what we send: count it (mostly answers; see
                # _update_reading) and stop reading once too much is waiting.
                self._unsent_replies += len(data)
                if self._unsent_replies > MAX_UNSENT_REPLY_BYTES:
                    self._update_reading()

    def _maybe_finish_end(self) -> None:
        if not self._ending or self._eof_sent or self._pending or self._tasks or self._deferred:
            return
        transport = self._transport
        if transport is None or self._closed:
            return
        self._flush()
        self._eof_sent = True
        if self._peer_eof or not transport.can_write_eof():
            transport.close()
        else:
            transport.write_eof()

    def _close_now(self, cause: BaseException | None, *, abort: bool) -> None:
        """Close without waiting: cancel running responders, fail what is pending, and abort
        the transport, or (``abort=False``) close it once queued bytes are written."""
        if self._closed:
            return
        for task in list(self._tasks):
            task.cancel()
        transport = self._transport
        self._mark_closed(cause)
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()

    def _fail_pending(self, error: ClosedError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _mark_closed(self, cause: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        if isinstance(cause, ClosedError):
            error = cause
        else:
            error = ClosedError(f"jitpc connection to {self.server_id!r} closed")
            if cause is not None:
                error.__cause__ = cause
                if isinstance(cause, ConnectError):
                    self._close_error = cause
        self._fail_pending(error)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._drain_waiters = []
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        if self._server is not None:
            self._server._client_closed(self)

    def _abort_at_shutdown(self) -> None:
        self.destroy()


def _foreign_peer(transport: asyncio.BaseTransport) -> PermissionError | None:
    """Why the peer of this (accepted) connection must be refused, if it must."""
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "family", None) != getattr(socket, "AF_UNIX", None):
        return None
    try:
        check_peer(sock)
    except PermissionError as exc:
        return exc
    return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def connect(
    server_id: str,
    *,
    spinup: Spinup | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Client:
    """A client for the jitpc server ``server_id``; it connects at first use.

    No I/O happens here: the first :meth:`Client.request`, :meth:`Client.notify` or
    :meth:`Client.open` connects, running ``spinup`` (sync or async) once if no server answers
    the first try, then retrying with back-off. Use it as ``async with connect(id) as client:``
    to end the connection on exit.

    Args:
        server_id: the id the server listens on; it names ``<tmpdir>/<id>.sock``.
        spinup: called at most once, after the first failed try; typically starts the server
            process (detached) and may or may not wait for it.
        max_message_bytes: the longest message accepted from the server.
    """
    return Client(server_id, spinup=spinup, max_message_bytes=max_message_bytes)
