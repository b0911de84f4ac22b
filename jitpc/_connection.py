"""One transport's lifetime, on either side: an :class:`asyncio.Protocol` around the core.

A :class:`Connection` feeds received bytes to the I/O-free :class:`~jitpc._protocol.Peer` and
acts on the events: it answers the peer's requests with the responders its :class:`Owner` (the
:class:`jitpc.Client` handle) resolves, and settles the futures of our own requests. It knows
neither servers nor routers.

* No reader task, no ``StreamReader`` line limit: the transport calls this protocol directly.
* Outgoing messages queued during one loop turn go out together, up to ``WRITE_BATCH`` per
  write, so that the peer can start on the first ones while the rest are made.
* A synchronous responder answers in the same callback that read the request: no task per
  request. An async responder runs as a task, known by its request id, so that the peer's
  cancel notification (``$/cancelRequest``) cancels it, or drops it while it still waits.
* Every request ends exactly once: a result, a :class:`RemoteError`, or :class:`ClosedError`
  when the connection ends first. Nothing is ever resent.
* When the connection ends, the request handlers still running for it are cancelled (their
  answers could not be sent); notification handlers run to their end.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from types import CoroutineType, GeneratorType
from typing import Any, Protocol, cast

from . import _fork, _shutdown
from ._answers import cancelled, complain, error_for, no_responder, unencodable, unknown_method
from ._answers import log_fields as log_fields  # (where the layers above import it from)
from ._errors import ClosedError, ProtocolError
from ._peercred import check_peer
from ._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BadMessage,
    CancelRequest,
    ErrorResponse,
    Event,
    Notification,
    Peer,
    Request,
    Response,
    Whole,
    head_id,
)
from ._protocol import State as PeerState
from ._transport import peer_gone

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_UNSENT_REPLY_BYTES",
    "PLAIN_TYPES",
    "SYSTEM_METHODS",
    "WRITE_BATCH",
    "Connection",
    "FastRoute",
    "Owner",
    "Responder",
    "CLOSED",
    "CONNECTING",
    "ENDING",
    "OPEN",
    "State",
    "is_awaitable",
]

logger = logging.getLogger("jitpc")


#: A responder takes the request's params and returns the result, or an awaitable of it.
Responder = Callable[[Any], Any]
#: A typed method whose requests can be read whole (see Connection._serve_whole): its name, a
#: validator of its params as written (raises ValueError for anything else), and the responder
#: of those params.
FastRoute = tuple[str, Callable[[bytes], Any], Responder]

#: Requests from the peer handled at once on one connection (async responders); at the cap,
#: the rest wait, and reading from that peer stops until some finish.
MAX_IN_FLIGHT = 1024
#: Bytes of answers written while the peer is not reading them; past it, reading stops.
MAX_UNSENT_REPLY_BYTES = 4 * 1024 * 1024
#: Messages queued in one loop turn go out together, but at most this many per write: the peer
#: starts on the first ones while this end makes the rest, so both processes work at once.
#: (One write per turn made them take turns: with 64 requests in flight, 16 per write gave
#: 1.5-1.9x the throughput, for the same CPU per request.)
WRITE_BATCH = 16
#: Methods answered even at the in-flight cap, ahead of the requests waiting there: health
#: probes must work on a busy connection. (Their responders are synchronous.)
SYSTEM_METHODS = frozenset({"rpc.ping", "rpc.status", "rpc.discover", "rpc.shutdown"})

#: Types whose values are known not to be awaitable: results are checked once per type.
PLAIN_TYPES: set[type] = {dict, list, str, int, float, bool, type(None)}


def is_awaitable(value: Any) -> bool:
    """:func:`inspect.isawaitable`, without its ABC check for the usual plain results."""
    tp = type(value)
    if tp in PLAIN_TYPES:
        return False
    if tp is CoroutineType:
        return True
    if inspect.isawaitable(value):
        return True
    # A generator's awaitability depends on its code, not its type. The cap bounds the set in a
    # program that makes result types at run time (past it, such types take the full check).
    if tp is not GeneratorType and len(PLAIN_TYPES) < 4096:
        PLAIN_TYPES.add(tp)
    return False


class State(enum.IntEnum):
    """Where a :class:`Connection` stands."""

    #: Made by the connector or the listener; no transport yet. Notifications queue.
    CONNECTING = 0
    OPEN = 1
    #: No new requests of ours; the connection closes once nothing is in flight.
    ENDING = 2
    CLOSED = 3


# The members as module constants: ``State.OPEN`` is a lookup on the enum class, ~85 ns on
# CPython 3.11 against ~5 ns for a global, and the hot paths test the state several times per
# message.
CONNECTING, OPEN, ENDING, CLOSED = State
FAILED = PeerState.FAILED


class Owner(Protocol):
    """What a connection needs of its handle (:class:`jitpc.Client`)."""

    #: Resolved responders by method name; the connection reads it, the owner fills it.
    _table: dict[str, Responder]
    #: Typed methods of ``_table`` whose requests may be read whole, by the name as written;
    #: filled and cleared with ``_table``, never replaced.
    _fast: dict[bytes, FastRoute]
    #: The server's number for this client (on the serving side), for log records.
    id: int

    def _lookup(self, method: str) -> Responder | None:
        """The responder for a method not in ``_table`` (``None``: no such method)."""

    def _connection_made(self, connection: Connection) -> None: ...

    def _connection_lost(self, connection: Connection, error: ClosedError) -> None: ...


class Connection(asyncio.Protocol):
    """One connection's state, from ``connection_made`` to ``connection_lost``.

    Args:
        owner: the handle that resolves responders and hears of the connection's end.
        label: names the connection in errors and logs (the server id).
        accepted: the serving side; it checks the peer's user before anything else.
    """

    def __init__(
        self,
        owner: Owner,
        label: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        accepted: bool = False,
    ) -> None:
        self.state = CONNECTING
        self.label = label
        self._owner = owner
        self._table = owner._table
        self._fast = owner._fast
        self._accepted = accepted
        self._peer = Peer(max_message_bytes=max_message_bytes)
        self._peer.whole = self._fast  # (the same dict: filled and cleared with the table)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        # Running handler tasks -> the request id they answer (None: a notification), and the
        # request tasks by id, for the peer's cancel notifications.
        self._tasks: dict[asyncio.Task[None], Any] = {}
        self._running: dict[Any, asyncio.Task[None]] = {}
        self._peer_cancelled: set[Any] = set()
        self._deferred: list[Event] = []
        self._closed_waiter: asyncio.Future[None] | None = None
        self._flush_pending = False
        self._unflushed = 0  # messages queued since the flush was scheduled (see WRITE_BATCH)
        self._wrote_early = False  # a request was written at once since the last flush/read
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._held: list[bytes] | None = None
        self._holds = 0
        self._reading_paused = False
        self._unsent_replies = 0
        self._deferred_bytes = 0  # read while requests waited for unsent answers to drain
        self._complaints = 0
        self._log = log_fields(label, owner.id if accepted else None)

    def __repr__(self) -> str:
        return f"<jitpc connection {self.label!r} {self.state.name.lower()}>"

    # -- what the handle uses ------------------------------------------------------------------

    @property
    def queued(self) -> bool:
        """Whether messages wait to be written (notifications sent before connecting)."""
        return self._peer.pending_messages > 0

    @property
    def in_flight(self) -> int:
        """The peer's requests and notifications being handled or waiting at the cap."""
        return len(self._tasks) + len(self._deferred)

    def send_request(
        self, method: str, params: Any, reader: Callable[[bytes], Any] | None = None
    ) -> tuple[int, asyncio.Future[Any]]:
        """Queue a request; return its id and the future of its outcome.

        With ``reader``, a result line as jitpc or Node writes one is validated from its bytes
        by it (see :meth:`Peer.take_result`): the future then has the validated result.

        Raises:
            ClosedError: the connection is ending or closed.
            TypeError: ``params`` cannot be written as JSON.
        """
        if self.state is not OPEN:
            raise self.closed_error()
        future = self._loop.create_future()
        if self._flush_pending or self._wrote_early:
            # More requests in the same turn: they share writes (see WRITE_BATCH).
            id_, _ = self._peer.send_request(method, params, future, False, reader)
            self._schedule_flush()
        else:
            # The first request since the last read or flush goes out at once: a sequential
            # caller waits for nothing more, and costs no callback. Written as it is made (no
            # queue, no flush: 2,300 instructions a request, callgrind) unless paused, when
            # _flush counts what waits unsent, or unless something is queued before it.
            id_, line = self._peer.send_request(
                method, params, future, not self.write_paused, reader
            )
            self._wrote_early = True
            if not line:
                self._flush()
            elif self._transport is not None:  # (always, while open)
                self._transport.write(line)
        return id_, future

    def cancel(self, id_: int) -> None:
        """Give our request ``id_`` up: tell the peer, and drop its answer if it comes."""
        if self._peer.cancel(id_) and self.state is not CLOSED:
            # At once, not at the end of the turn: a destroy() that follows (leaving an
            # 'async with' by the TimeoutError) would otherwise drop it.
            self._flush()
            if self.state is ENDING:
                self._maybe_finish_end()

    def notify(self, method: str, params: Any) -> None:
        """Queue a notification (sent once connected, if not yet).

        Raises:
            ClosedError: the connection is ending or closed.
            TypeError: ``params`` cannot be written as JSON.
        """
        if self.state is not OPEN and self.state is not CONNECTING:
            raise self.closed_error()
        self._peer.send_notification(method, params)
        self._schedule_flush()

    def closed_error(self) -> ClosedError:
        what = "ending" if self.state is ENDING else "closed"
        return ClosedError(f"jitpc connection to {self.label!r} is {what}")

    async def drained(self) -> None:
        """Wait until the peer reads again (after ``pause_writing``).

        Raises:
            ClosedError: the connection closed meanwhile.
        """
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def end(self) -> None:
        """Send no new requests; close once our requests are answered and our handlers have
        answered the peer. (What the peer still owes to requests given up is not waited for.)
        """
        if self.state is OPEN:
            self.state = ENDING
            self._maybe_finish_end()
        elif self.state is CONNECTING:
            self.destroy()

    def destroy(self, err: BaseException | None = None) -> None:
        """Close at once: fail our pending requests with :class:`ClosedError` (caused by
        ``err``), cancel every running handler, abort the transport. Idempotent."""
        if isinstance(err, ClosedError):
            error = err
        else:
            error = ClosedError(f"jitpc connection to {self.label!r} closed")
            error.__cause__ = err
        self._close(error, abort=True, cancel_all=True)

    async def wait_closed(self) -> None:
        """Wait until the connection has closed. Cancelling the wait is safe."""
        if self.state is CLOSED:
            return
        if self._closed_waiter is None:
            self._closed_waiter = self._loop.create_future()
        await asyncio.shield(self._closed_waiter)

    def hold(self) -> None:
        """Read nothing into the core until as many :meth:`release` calls (async on_client)."""
        self._holds += 1
        if self._held is None:
            self._held = []
            self._update_reading()

    def release(self) -> None:
        self._holds -= 1
        if self._holds:
            return
        held, self._held = self._held, None
        if self.state is CLOSED or self._transport is None:
            return
        self._update_reading()
        for data in held or ():
            if self._transport.is_closing():
                break
            self.data_received(data)

    def _abort_at_shutdown(self) -> None:
        self.destroy()

    # -- transport callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence no isinstance).
        transport = cast(asyncio.Transport, transport)
        _fork.track_transport(self, transport)
        if self.state is CLOSED:
            transport.abort()
            return
        if self._accepted:
            # (The connecting side checks its server before the connection is set up.)
            refusal = _foreign_peer(transport)
            if refusal is not None:
                transport.abort()
                logger.warning(
                    "jitpc server %r refused a connection: %s", self.label, refusal, extra=self._log
                )
                error = ClosedError(f"jitpc server {self.label!r} refused the peer: {refusal}")
                error.__cause__ = refusal
                self._close(error, abort=False, cancel_all=True)
                return
        self._transport = transport
        self.state = OPEN
        _shutdown.track(self._loop, self)
        self._owner._connection_made(self)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            # Some loops (uvloop) deliver data read before pause_reading() took effect.
            self._held.append(data)
            return
        self._wrote_early = False  # a new loop turn: the next request may go out at once
        peer = self._peer
        if self._fast:
            found = peer.request_of(data)
            if (
                found is not None
                and not self._deferred
                and (not self._tasks or len(self._tasks) < MAX_IN_FLIGHT)
                and self._unsent_replies <= MAX_UNSENT_REPLY_BYTES
            ):
                # _serve_whole written out for the usual read of a typed server, one request,
                # its answer written as it is made (no queue, no flush): 2,000 instructions a
                # request fewer (callgrind). Failures take the same steps as there.
                head, (name, read, serve), params = found
                if name in self._table:
                    try:
                        value = read(params)
                    except Exception:
                        pass  # for the general path below, as in _serve_whole
                    else:
                        self._flush_pending = True  # as in _process
                        line = b""
                        try:
                            result = serve(value)
                        except Exception as exc:
                            self._send_exception(head_id(head), name, exc)
                        else:
                            if type(result) not in PLAIN_TYPES and is_awaitable(result):
                                self._start(head_id(head), name, result)
                            else:
                                # (Paused, it is queued: _flush counts what waits unsent.)
                                try:
                                    line = peer.send_answer(head, result, not self.write_paused)
                                except TypeError as exc:
                                    self._unencodable(head, exc)
                        if line:
                            self._flush_pending = False
                            transport = self._transport
                            if transport is not None and self.state is not CLOSED:
                                transport.write(line)
                        else:
                            self._flush()
                        if self.state is ENDING:
                            self._maybe_finish_end()
                        return
        if peer.result_readers:
            # Our typed request's result, validated at once from its bytes. What this does not
            # take (another request's answer, a result that fails, ...) is the general path's
            # below, which reads it as it always has.
            taken = peer.take_result(data)
            if taken is not None:
                waiter, value = taken
                if not waiter.done():
                    waiter.set_result(value)
                if self.state is ENDING:
                    self._maybe_finish_end()
                return
        events = peer.receive_data(data)
        if len(events) == 1:
            event = events[0]
            if (
                type(event) is Request
                and not self._deferred
                and (not self._tasks or len(self._tasks) < MAX_IN_FLIGHT)
                and self._unsent_replies <= MAX_UNSENT_REPLY_BYTES
            ):
                # _process's steps for a read of one request, the usual read of a server, its
                # answer written as it is made (no queue, no flush), as for a typed request
                # above: 3,500 instructions a request fewer (callgrind).
                self._flush_pending = True
                line = self._dispatch(event, not self.write_paused)
                if line:
                    self._flush_pending = False
                    transport = self._transport
                    if transport is not None and self.state is not CLOSED:
                        transport.write(line)
                else:
                    self._flush()
                if self.state is ENDING:
                    self._maybe_finish_end()
                return
            elif type(event) is Response and event.waiter is not None:
                # The usual read of a client: _process's steps for it, 1,000 instructions a
                # request fewer (callgrind).
                if not event.waiter.done():
                    event.waiter.set_result(event.result)
                if self.state is ENDING:
                    self._maybe_finish_end()
                return
        self._process(events)
        if self._deferred:
            self._deferred_bytes += len(data)
        if peer.state is FAILED:
            bad = events[-1]  # the fatal one ends the events
            reason = bad.reason if type(bad) is BadMessage else "bad framing"
            error = ClosedError(f"jitpc connection closed: the peer broke the protocol: {reason}")
            error.__cause__ = ProtocolError(reason)
            self._close(error, abort=False, cancel_all=True)  # our error reply still goes out
        elif self.state is ENDING:
            self._maybe_finish_end()

    def eof_received(self) -> bool:
        # The peer will send nothing more, so nothing pending can be answered: fail it now.
        for event in self._peer.receive_eof():
            assert isinstance(event, BadMessage)
            self._complain("%s", event.reason)
        closed = ClosedError("jitpc peer closed the connection")
        self._fail_pending(closed)
        if self._transport is not None and peer_gone(self._transport):
            # Not a half-close: nothing can be sent back, so the request handlers still
            # running are cancelled and the connection (and its server-side id) released now.
            self._close(closed, abort=False, cancel_all=False)
            return False
        if self.state is OPEN:
            self.state = ENDING
        self._maybe_finish_end()
        return True  # keep our half open to send the answers still owed

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not CLOSED:
            error = ClosedError(f"jitpc connection to {self.label!r} closed")
            error.__cause__ = exc
            self._close(error, abort=False, cancel_all=False)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._unsent_replies:
            self._unsent_replies = 0
            self._run_deferred()
            self._update_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- events --------------------------------------------------------------------------------

    def _process(self, events: list[Event]) -> None:
        self._flush_pending = True  # replies made below go out together (see WRITE_BATCH)
        deferred = self._deferred
        dispatched = 0
        # Whether anything may have queued a reply: only answers came, as a sequential
        # client reads, and there is nothing to write (counting spares a call per read).
        replies = False
        for event in events:
            kind = type(event)
            if kind is Whole:
                # A typed request line of a read that held several (see Peer.whole).
                if (
                    not deferred
                    and len(self._tasks) < MAX_IN_FLIGHT
                    and self._unsent_replies <= MAX_UNSENT_REPLY_BYTES
                    and self._serve_whole(event.head, event.route, event.params)  # type: ignore[union-attr]
                ):
                    replies = True
                    dispatched += 1
                    if dispatched == WRITE_BATCH:
                        dispatched = 0
                        self._write_batch()
                    continue
                parsed = self._peer.read_line(event.line)  # type: ignore[union-attr]
                if parsed is None:
                    continue
                event, kind = parsed, type(parsed)
            if kind is Request or kind is Notification:
                if (
                    deferred
                    or len(self._tasks) >= MAX_IN_FLIGHT
                    or self._unsent_replies > MAX_UNSENT_REPLY_BYTES
                ) and (
                    event.method not in SYSTEM_METHODS  # type: ignore[union-attr]
                ):
                    # At the cap: the rest waits (see _update_reading) until handlers finish.
                    deferred.append(event)
                    continue
                self._dispatch(event)  # type: ignore[arg-type]
                replies = True
                dispatched += 1
                if dispatched == WRITE_BATCH:  # (a counter: the queue's length is a call)
                    dispatched = 0
                    self._write_batch()
            elif kind is Response:
                waiter = event.waiter  # type: ignore[union-attr]
                if waiter is None:
                    self._complain("answered an unknown id: %r", event)
                elif not waiter.done():
                    waiter.set_result(event.result)  # type: ignore[union-attr]
            elif kind is ErrorResponse:
                waiter = event.waiter  # type: ignore[union-attr]
                if waiter is None:
                    self._complain("reported an error: %s", event.error)  # type: ignore[union-attr]
                elif not waiter.done():
                    waiter.set_exception(event.error)  # type: ignore[union-attr]
            elif kind is CancelRequest:
                self._peer_cancel(event.id)  # type: ignore[union-attr]
                replies = True
            else:
                replies = True  # the core answers some bad messages itself
                self._complain("sent a bad message: %s", event.reason)  # type: ignore[union-attr]
        if deferred:
            self._update_reading()
        if replies:
            self._flush()
        else:
            self._flush_pending = False

    def _serve_whole(self, head: bytes, route: FastRoute, params: bytes) -> bool:
        """Answer a typed request read whole (see :meth:`Peer.request_of`), its params
        validated at once from their bytes, as :meth:`_dispatch` would answer it parsed.
        ``False``: not taken, nothing done (a line for the general path, which answers it as it
        always has; errors included). The caller has checked the in-flight cap."""
        name, read, serve = route
        if name not in self._table:  # (looked up there first: the server's idle check sees it)
            return False
        try:
            value = read(params)
        except Exception:  # (a ValidationError; or a validator's own error, which the general
            return False  # path answers as a failed handler, as it always has)
        # _run's work, written out for the id kept as written (read only if the answer is not
        # a result at once): ~2,500 instructions a request fewer.
        try:
            result = serve(value)
        except Exception as exc:
            self._send_exception(head_id(head), name, exc)
            return True
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            self._start(head_id(head), name, result)
            return True
        try:
            self._peer.send_answer(head, result)
        except TypeError as exc:
            self._unencodable(head, exc)
        return True

    def _unencodable(self, head: bytes, exc: TypeError) -> None:
        """Answer a split request whose result cannot be written as JSON with -32603."""
        id_ = head_id(head)
        self._peer.send_error(id_, unencodable(id_, exc, self._log))

    def _dispatch(self, event: Request | Notification, now: bool = False) -> bytes:
        """Answer the peer's request (or take its notification) with its responder. Returns
        ``b""``; or, with ``now``, a result to write at once (see Peer.send_result)."""
        method = event.method
        id_ = event.id if type(event) is Request else None
        fn = self._table.get(method)
        if fn is None:
            fn = self._owner._lookup(method)
            if fn is None:
                if id_ is not None:
                    self._peer.send_error(id_, unknown_method(method))
                else:
                    no_responder(method, self._log)
                return b""
        # (Run here, not in a method of its own: a call less per request of a read of several.)
        try:
            result = fn(event.params)
        except Exception as exc:
            self._send_exception(id_, method, exc)
            return b""
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            self._start(id_, method, result)
        elif id_ is not None:
            try:  # (_send_result written out: a call less per request, ~800 instructions)
                return self._peer.send_result(id_, result, now)
            except TypeError as exc:
                self._peer.send_error(id_, unencodable(id_, exc, self._log))
        return b""

    def _start(self, id_: Any, method: str, awaitable: Awaitable[Any]) -> None:
        """Answer the peer's request ``id_`` (``None``: a notification) with what ``awaitable``
        gives, in a task known by the id."""
        task = self._loop.create_task(self._finish(id_, method, awaitable))
        self._tasks[task] = id_
        if id_ is not None:
            self._running.setdefault(id_, task)
        task.add_done_callback(self._task_done)
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._update_reading()

    async def _finish(self, id_: Any, method: str, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            self._send_exception(id_, method, exc)
        else:
            if id_ is not None:
                self._send_result(id_, result)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        id_ = self._tasks.pop(task, None)
        if id_ is not None:
            if self._running.get(id_) is task:
                del self._running[id_]
            if id_ in self._peer_cancelled:
                self._peer_cancelled.discard(id_)
                if task.cancelled() and self.state is not CLOSED:
                    self._peer.send_error(id_, cancelled(id_))
        if self.state is CLOSED:
            return
        self._schedule_flush()
        self._run_deferred()
        if self._reading_paused:
            self._update_reading()
        if self.state is ENDING:
            self._maybe_finish_end()

    def _run_deferred(self) -> None:
        """Handle the requests that waited, once neither the in-flight cap nor unsent answers
        hold them any more (those past the cap wait again)."""
        if (
            self._deferred
            and len(self._tasks) < MAX_IN_FLIGHT
            and self._unsent_replies <= MAX_UNSENT_REPLY_BYTES
        ):
            deferred, self._deferred = self._deferred, []
            self._deferred_bytes = 0
            self._process(deferred)

    def _peer_cancel(self, id_: Any) -> None:
        """The peer gave its request ``id_`` up: cancel its handler, or drop it if it waits."""
        if type(id_) not in (int, str, float):
            return
        task = self._running.get(id_)
        if task is not None:
            self._peer_cancelled.add(id_)
            _cancel(task)  # _task_done answers it
            return
        for index, event in enumerate(self._deferred):
            if type(event) is Request and event.id == id_:
                del self._deferred[index]
                self._peer.send_error(id_, cancelled(id_))
                return

    def _complain(self, message: str, *args: Any) -> None:
        """Log what the peer did wrong, the first ``COMPLAINTS_LOGGED`` times in full, then
        only a count at each power of two: a peer that floods garbage cannot flood the log."""
        self._complaints = n = self._complaints + 1
        complain(n, self.label, message, args, self._log)

    def _send_result(self, id_: Any, result: Any) -> None:
        try:
            self._peer.send_result(id_, result)
        except TypeError as exc:  # the core turns every encoding failure into one
            self._peer.send_error(id_, unencodable(id_, exc, self._log))

    def _send_exception(self, id_: Any, method: str, exc: Exception) -> None:
        error = error_for(method, exc, self._log)
        if id_ is not None:
            self._peer.send_error(id_, error)

    # -- flow control --------------------------------------------------------------------------

    def _update_reading(self) -> None:
        """Pause or resume reading from the peer: backpressure (research T13, section 2).

        Reading stops while an async on_client runs, and while ``MAX_IN_FLIGHT`` requests from
        the peer are being handled (the rest of that read waits). What a peer can make us hold
        is then bounded, and the kernel's socket buffer pushes back on the peer.

        Unsent answers are different: more than ``MAX_UNSENT_REPLY_BYTES`` of them behind a
        peer that does not read stop the *handling* of its new requests (they wait), not the
        reading, so its answers to our requests still come in. Two peers that answer each
        other with large results at once would otherwise both stop reading, each waiting for
        the other to drain, for good. Reading stops for unsent answers only once
        ``MAX_UNSENT_REPLY_BYTES`` of waiting requests have been read too, and never while we
        await an answer on this connection: then the peer, which awaits ours (they are what
        is unsent), keeps reading, so our answers drain and both make progress. Our own
        requests wait for the drain in ``request()``.
        """
        transport = self._transport
        if transport is None or self.state is CLOSED:
            return
        pressed = self._unsent_replies > MAX_UNSENT_REPLY_BYTES
        pause = (
            self._held is not None
            or len(self._tasks) >= MAX_IN_FLIGHT
            or (bool(self._deferred) and not pressed)
            or (
                pressed
                and self._deferred_bytes > MAX_UNSENT_REPLY_BYTES
                and not self._peer.outstanding
            )
        )
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # -- writing and closing -------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Write what is queued at the end of this loop turn, or now if a batch is full."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_soon)
        else:
            # One call per message queued: a count, not the queue's length (a call each).
            self._unflushed += 1
            if self._unflushed >= WRITE_BATCH:
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
        self._unflushed = 0
        transport = self._transport
        if transport is None or self.state is CLOSED:
            return
        data = self._peer.data_to_send()
        if data:
            was_paused = self.write_paused
            transport.write(data)
            if was_paused:
                # The peer is not reading what we send: count it (mostly answers; see
                # _update_reading) and stop reading once too much is waiting.
                self._unsent_replies += len(data)
                if self._unsent_replies > MAX_UNSENT_REPLY_BYTES:
                    self._update_reading()

    def _maybe_finish_end(self) -> None:
        if self._peer.outstanding or self._tasks or self._deferred:
            return
        transport = self._transport
        if transport is None or self.state is not ENDING or transport.is_closing():
            return
        # Nothing more is wanted from the peer: close both halves (close() writes what is
        # buffered first). Waiting for the peer's own end would wait on its work for
        # requests we gave up.
        self._flush()
        transport.close()

    def _fail_pending(self, error: ClosedError) -> None:
        for waiter in self._peer.abandon():
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def _close(self, error: ClosedError, *, abort: bool, cancel_all: bool) -> None:
        """Mark closed and tell the owner; cancel the request handlers (all handlers with
        ``cancel_all``); fail what is pending; abort the transport, or close it once queued
        bytes are written."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        for task, id_ in list(self._tasks.items()):
            if cancel_all or id_ is not None:
                _cancel(task)
        self._deferred = []
        self._fail_pending(error)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        transport = self._transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        self._owner._connection_lost(self, error)


def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a handler's task once it has started: a task cancelled before its first step
    never awaits the responder's coroutine, which Python then reports as never awaited. The
    first step was scheduled when the task was made, so it runs before this callback."""
    task.get_loop().call_soon(task.cancel)


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
