"""The blocking I/O layer under :mod:`jitpc.sync`: threads and a blocking stream over the core.

As websockets' ``sync`` package does over its protocol, a :class:`Connection` is a blocking
stream (:func:`._transport.open_blocking`), the sans-I/O :class:`~._protocol.Peer`, and:

* a reader thread (a daemon, ``jitpc.sync reader``) that feeds the peer what it reads and acts
  on the events: an answer wakes the thread waiting for it; a request or notification from the
  server goes to the client's responder, run in the reader thread, or (``thread=True``) in a
  jitpc worker thread; an unknown method is answered -32601, as by the asyncio layer.
* one lock over the peer and the connection's state; what is written goes out at once when the
  stream takes it without blocking, and otherwise through a writer thread, started on demand,
  so that no caller ever blocks on a peer that does not read (a caller's deadline still holds
  while it waits for room, past :data:`HIGH_WATER` bytes unsent).
* every wait bounded by the caller's deadline; a request given up is cancelled (``Peer.cancel``:
  the cancel notification goes out, a late answer is dropped).

The connect phase runs :mod:`._steps`, the sequencing the asyncio layer runs too, with the
blocking driver :func:`run`. No asyncio here, on POSIX; on Windows the named pipe module
imports it (see :func:`._transport.open_blocking`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._answers import (
    cancelled,
    complain,
    error_for,
    log_fields,
    no_responder,
    unencodable,
    unknown_method,
)
from ._errors import ClosedError, ProtocolError
from ._protocol import (
    BadMessage,
    CancelRequest,
    ErrorResponse,
    Notification,
    Peer,
    Request,
    Response,
)
from ._steps import (
    Ask,
    Dial,
    Hook,
    IsOpen,
    New,
    Queue,
    Race,
    Raced,
    Ready,
    Reaper,
    Scope,
    Sleep,
    WaitFree,
    read_line,
)
from ._threads import submit
from ._transport import open_blocking

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    from typing import Any

    from ._steps import Steps
    from ._transport import Stream

__all__ = ["HIGH_WATER", "READER", "Connection", "in_reader", "run"]

#: The name of every connection's reader thread.
READER = "jitpc.sync reader"
#: Unsent bytes past which a new request waits for the peer to read (asyncio's default).
HIGH_WATER = 64 * 1024

CONNECTING, OPEN, ENDING, CLOSED = range(4)

_local = threading.local()


def in_reader() -> bool:
    """Whether this thread is a connection's reader (running a responder)."""
    return getattr(_local, "reader", False)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _wait(event: threading.Event, deadline: float | None) -> None:
    """Wait for ``event`` until ``deadline``; ``TimeoutError`` if it passes first."""
    if not event.wait(_remaining(deadline)):
        raise TimeoutError


class _Waiter:
    """The outcome of one request: settled once, under the connection's lock."""

    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()  # released when settled
        self.ok: bool | None = None
        self.value: Any = None

    def settle(self, ok: bool, value: Any) -> None:
        if self.ok is None:
            self.ok, self.value = ok, value
            self.done.release()


class Connection:
    """One blocking connection, from :meth:`start` to its close.

    Args:
        label: names the connection in errors and logs (the server id).
        lookup: the responder of a method and whether it runs in a worker thread (``None``: no
            such method).
    """

    def __init__(
        self,
        label: str,
        lookup: Callable[[str], tuple[Callable[[Any], Any], bool] | None],
        *,
        max_message_bytes: int,
    ) -> None:
        self.label = label
        self.state = CONNECTING
        self._lookup = lookup
        self._peer = Peer(max_message_bytes=max_message_bytes)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # unsent bytes, handlers, state
        self._stream: Stream | None = None
        self._unsent: list[bytes] = []
        self._unsent_bytes = 0
        self._writer: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._handlers: dict[Any, bool] = {}  # the server's requests our workers answer
        self._complaints = 0
        self._log = log_fields(label)

    def __repr__(self) -> str:
        return f"<jitpc.sync connection {self.label!r} {self.state}>"

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    def closed_error(self) -> ClosedError:
        what = "ending" if self.state == ENDING else "closed"
        return ClosedError(f"jitpc connection to {self.label!r} is {what}")

    # -- setting up ----------------------------------------------------------------------------

    def start(self, stream: Stream) -> bool:
        """Use the connected ``stream`` (this connection closes it); ``False`` (and it is
        closed) if this connection was destroyed meanwhile."""
        with self._lock:
            if self.state != CONNECTING:
                stream.close()
                return False
            self._stream = stream
            self.state = OPEN
        self._reader = threading.Thread(target=self._read, name=READER, daemon=True)
        self._reader.start()
        return True

    # -- what the client uses ------------------------------------------------------------------

    def request(
        self,
        method: str,
        params: Any,
        deadline: float | None,
        reader: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """Send a request and wait for its outcome until ``deadline``. With ``reader``, a
        result line as jitpc or Node writes one is validated from its bytes by it, as in the
        async layer (see :meth:`Peer.take_result`): the outcome is what it returned.

        Raises:
            RemoteError: the peer's error answer.
            ClosedError: the connection is ending or closed, or closed before the answer.
            TimeoutError: the deadline passed first (the request is cancelled).
            TypeError: ``params`` cannot be written as JSON.
        """
        waiter = _Waiter()
        with self._lock:
            if self._unsent_bytes > HIGH_WATER:
                self._wait_for_room(deadline)
            if self.state != OPEN:
                raise self.closed_error()
            id_, _ = self._peer.send_request(method, params, waiter, False, reader)
            self._flush()
        try:
            remaining = _remaining(deadline)
            got = waiter.done.acquire(timeout=-1 if remaining is None else remaining)
        except BaseException:  # ^C in the caller: give the request up too
            self.cancel(id_, waiter)
            raise
        if not got and self.cancel(id_, waiter):
            raise TimeoutError
        if waiter.ok:
            return waiter.value
        raise waiter.value

    def cancel(self, id_: int, waiter: _Waiter) -> bool:
        """Give request ``id_`` up unless it was answered; whether it was given up."""
        with self._lock:
            if waiter.ok is not None:
                return False
            waiter.ok = False  # (settled: a late settle is ignored)
            if self._peer.cancel(id_) and self.state != CLOSED:
                self._flush()
            self._changed.notify_all()
            return True

    def notify(self, method: str, params: Any) -> None:
        """Send a notification.

        Raises:
            ClosedError: the connection is ending or closed.
            TypeError: ``params`` cannot be written as JSON.
        """
        with self._lock:
            if self.state != OPEN:
                raise self.closed_error()
            self._peer.send_notification(method, params)
            self._flush()

    def end(self, deadline: float | None) -> None:
        """Close gracefully: no new requests; once our requests still awaited are answered and
        our workers have answered the server, write what is unsent and close. Past
        ``deadline``, destroy instead."""
        with self._lock:
            if self.state == CONNECTING:
                self._close_locked(ClosedError(f"jitpc connection to {self.label!r} closed"))
                return
            if self.state == OPEN:
                self.state = ENDING
            while self.state != CLOSED and (
                self._peer.outstanding or self._handlers or self._unsent
            ):
                remaining = _remaining(deadline)
                if remaining == 0.0:
                    break
                self._changed.wait(remaining)
            done = self.state == CLOSED or not (
                self._peer.outstanding or self._handlers or self._unsent
            )
            if done:
                self._close_locked(ClosedError(f"jitpc connection to {self.label!r} closed"))
        if not done:
            self.destroy()
        self._join(deadline)

    def destroy(self, err: BaseException | None = None) -> None:
        """Close at once: fail what waits with :class:`ClosedError` (caused by ``err``).
        Idempotent."""
        if isinstance(err, ClosedError):
            error = err
        else:
            error = ClosedError(f"jitpc connection to {self.label!r} closed")
            error.__cause__ = err
        with self._lock:
            self._close_locked(error)

    def abort(self) -> None:
        """Shut the stream down and nothing else: from a finalizer, which may run in a thread
        that holds the lock. The reader then closes the connection."""
        stream = self._stream
        if stream is not None:
            stream.shutdown()

    def _join(self, deadline: float | None) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(_remaining(deadline))

    # -- reading -------------------------------------------------------------------------------

    def _read(self) -> None:
        _local.reader = True
        stream = self._stream
        assert stream is not None
        try:
            self._read_from(stream)
        except BaseException as exc:  # (a responder's SystemExit, say): the connection ends
            with self._lock:
                self._close_locked(self._lost_error(exc))
            raise
        finally:
            # The last to use the stream closes it (shut down already): the writer first ends.
            writer = self._writer
            if writer is not None:
                writer.join()
            stream.close()

    def _read_from(self, stream: Stream) -> None:
        peer = self._peer
        error: BaseException | None = None
        while True:
            try:
                data = stream.recv(65536)
            except OSError as exc:
                data, error = b"", exc
            if not data:
                break
            with self._lock:
                if self.state == CLOSED:
                    return
                taken = peer.take_result(data) if peer.result_readers else None
                if taken is not None:
                    # A typed call's answer, read whole (the general path reads the rest).
                    self._settle_locked(taken[0], True, taken[1])
                    continue
                events = peer.receive_data(data)
            self._process(events)
            if peer.failed:
                bad = events[-1]
                reason = bad.reason if type(bad) is BadMessage else "bad framing"
                closed = ClosedError(
                    f"jitpc connection closed: the peer broke the protocol: {reason}"
                )
                closed.__cause__ = ProtocolError(reason)
                with self._lock:
                    self._close_locked(closed, flush=True)
                return
        with self._lock:
            if self.state == CLOSED:
                return
            for event in peer.receive_eof():
                self._complain("%s", getattr(event, "reason", event))
            if error is not None:
                closed = ClosedError(f"jitpc connection to {self.label!r} closed")
                closed.__cause__ = error
            else:
                closed = ClosedError("jitpc peer closed the connection")
            self._close_locked(closed)

    def _process(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is Response or kind is ErrorResponse:
                waiter = event.waiter
                if waiter is None:
                    if kind is Response:
                        self._complain("answered an unknown id: %r", event)
                    else:
                        self._complain("reported an error: %s", event.error)
                    continue
                with self._lock:
                    if kind is Response:
                        self._settle_locked(waiter, True, event.result)
                    else:
                        self._settle_locked(waiter, False, event.error)
            elif kind is Request or kind is Notification:
                self._dispatch(event)
            elif kind is CancelRequest:
                with self._lock:
                    id_ = event.id
                    if self._handlers.pop(id_, None) is not None:
                        # A worker's answer cannot be stopped: the server is told, and the
                        # answer dropped when it comes.
                        self._peer.send_error(id_, cancelled(id_))
                        self._flush()
                        self._changed.notify_all()
            else:
                self._complain("sent a bad message: %s", event.reason)
                with self._lock:
                    self._flush()  # the core answers some bad messages itself

    def _settle_locked(self, waiter: _Waiter, ok: bool, value: Any) -> None:
        """Settle our request's waiter; an ending connection may now close (lock held)."""
        waiter.settle(ok, value)
        if self.state == ENDING:
            self._changed.notify_all()

    def _dispatch(self, event: Request | Notification) -> None:
        method = event.method
        id_ = event.id if type(event) is Request else None
        found = self._lookup(method)
        if found is None:
            if id_ is not None:
                with self._lock:
                    self._peer.send_error(id_, unknown_method(method))
                    self._flush()
            else:
                no_responder(method, self._log)
            return
        fn, in_thread = found
        params = event.params
        if in_thread:
            if id_ is not None:
                with self._lock:
                    self._handlers[id_] = True
            submit(lambda: fn(params), lambda ok, value: self._answer(id_, method, ok, value))
            return
        try:
            result, ok = fn(params), True
        except Exception as exc:
            result, ok = exc, False
        self._answer(id_, method, ok, result, inline=True)

    def _answer(self, id_: Any, method: str, ok: bool, value: Any, inline: bool = False) -> None:
        if not ok and not isinstance(value, Exception):
            # A worker's KeyboardInterrupt or SystemExit: the request still gets its answer.
            value = Exception(type(value).__name__)
        with self._lock:
            if not inline and id_ is not None and self._handlers.pop(id_, None) is None:
                return  # cancelled by the server meanwhile
            if self.state == CLOSED:
                return
            if id_ is not None:
                if ok:
                    try:
                        self._peer.send_result(id_, value)
                    except TypeError as exc:  # the core turns every encoding failure into one
                        self._peer.send_error(id_, unencodable(id_, exc, self._log))
                else:
                    self._peer.send_error(id_, error_for(method, value, self._log))
                self._flush()
            elif not ok:
                error_for(method, value, self._log)  # (logged)
            self._changed.notify_all()

    def _complain(self, message: str, *args: Any) -> None:
        self._complaints = n = self._complaints + 1
        complain(n, self.label, message, args, self._log)

    # -- writing and closing (with the lock held) ----------------------------------------------

    def _flush(self) -> None:
        data = self._peer.data_to_send()
        stream = self._stream
        if not data or stream is None or self.state == CLOSED:
            return
        if not self._unsent:
            try:
                sent = stream.send_nowait(data)
            except OSError as exc:
                self._close_locked(self._lost_error(exc))
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._unsent.append(data)
        self._unsent_bytes += len(data)
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write, name="jitpc.sync writer", daemon=True
            )
            self._writer.start()
        else:
            self._changed.notify_all()

    def _write(self) -> None:
        stream = self._stream
        assert stream is not None
        while True:
            with self._lock:
                while not self._unsent and self.state != CLOSED:
                    self._changed.wait()
                if self.state == CLOSED:
                    return
                data = b"".join(self._unsent)
                self._unsent = []
            try:
                stream.sendall(data)
            except OSError as exc:
                with self._lock:
                    self._unsent_bytes = 0
                    self._close_locked(self._lost_error(exc))
                return
            with self._lock:
                self._unsent_bytes -= len(data)
                self._changed.notify_all()

    def _wait_for_room(self, deadline: float | None) -> None:
        while self._unsent_bytes > HIGH_WATER and self.state != CLOSED:
            remaining = _remaining(deadline)
            if remaining == 0.0:
                raise TimeoutError
            self._changed.wait(remaining)

    def _lost_error(self, exc: BaseException) -> ClosedError:
        error = ClosedError(f"jitpc connection to {self.label!r} closed")
        error.__cause__ = exc
        return error

    def _close_locked(self, error: ClosedError, *, flush: bool = False) -> None:
        if self.state == CLOSED:
            return
        if flush:
            # (our error reply to a peer that broke the framing still goes out, if it can)
            data = self._peer.data_to_send()
            if data and self._stream is not None and not self._unsent:
                try:
                    self._stream.send_nowait(data)
                except OSError:
                    pass
        self.state = CLOSED
        for waiter in self._peer.abandon():
            if waiter is not None:
                waiter.settle(False, error)
        self._handlers.clear()
        self._changed.notify_all()
        stream = self._stream
        if stream is not None:
            stream.shutdown()  # wakes the reader (which closes it) and the writer


# -- the driver of the connect phase ---------------------------------------------------------

#: The key of the blocking layer's in-process spawn queues (see _steps.Scope).
_SCOPE = "jitpc.sync"
_turn_guard = threading.Lock()


def run(steps: Steps, new: Callable[[], Any] | None = None) -> Any:
    """Run ``steps`` to their end in this thread; ``new`` makes connections (:class:`New`).

    Returns what the steps return; raises what they raise.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            value = error = None
        try:
            value = perform(op, new)
        except BaseException as exc:  # (^C too: the steps clean up, and re-raise)
            error = exc


def perform(op: Any, new: Callable[[], Any] | None, free: threading.Event | None = None) -> Any:
    """Perform one operation (see :mod:`._steps`), blocking. In a race, ``free`` ends sleeps."""
    kind = type(op)
    if kind is Dial:
        if op.deadline is not None and time.monotonic() >= op.deadline:
            raise TimeoutError
        stream = open_blocking(op.path, _remaining(op.deadline))
        return op.conn.start(stream)
    if kind is Sleep:
        if free is not None:
            free.wait(op.delay)
        else:
            time.sleep(op.delay)
        return None
    if kind is Hook:
        return _run_hook(op.hook, op.deadline)
    if kind is Ask:
        return op.conn.request(op.method, op.params, op.deadline)
    if kind is New:
        assert new is not None
        return new()
    if kind is IsOpen:
        return op.conn.is_open
    if kind is WaitFree:
        from ._lock import wait_free_at  # (here: a one-shot never waits for a lock)

        path, what = op.path, op.what
        _wait_outcome(_in_own_thread(lambda: wait_free_at(path, what), op.thread), op.deadline)
        return None
    if kind is Scope:
        return _SCOPE
    if kind is Queue:
        turn = op.turn
        with _turn_guard:
            if turn.lock is None:
                turn.lock = threading.Lock()
        remaining = _remaining(op.deadline)
        if not turn.lock.acquire(timeout=-1 if remaining is None else remaining):
            raise TimeoutError
        return None
    if kind is Ready:
        return _ready(op.fd, op.proc, op.grace, op.deadline)
    if kind is Race:
        return _race(op, new)
    raise TypeError(f"not a step: {op!r}")


class _Outcome:
    __slots__ = ("event", "ok", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.value: Any = None

    def __call__(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value
        self.event.set()


def _wait_outcome(outcome: _Outcome, deadline: float | None) -> Any:
    _wait(outcome.event, deadline)
    if outcome.ok:
        return outcome.value
    raise outcome.value


def _in_own_thread(fn: Callable[[], Any], name: str) -> _Outcome:
    outcome = _Outcome()

    def main() -> None:
        try:
            result = fn()
        except BaseException as exc:
            outcome(False, exc)
        else:
            outcome(True, result)

    threading.Thread(target=main, name=name, daemon=True).start()
    return outcome


def _run_hook(hook: Callable[[], object], deadline: float | None) -> None:
    """A user's hook in a jitpc worker thread; a coroutine function (or an awaitable it
    returns) is run there with ``asyncio.run`` (which then imports asyncio)."""

    def call() -> None:
        import inspect  # (here: a one-shot that finds its server never needs it)

        result = hook()
        if inspect.isawaitable(result):
            import asyncio

            async def wait() -> None:
                await result

            asyncio.run(wait())

    outcome = _Outcome()
    submit(call, outcome)
    _wait_outcome(outcome, deadline)


def _ready(fd: int, proc: Any, grace: float, deadline: float | None) -> tuple[Any, Any]:
    changed = threading.Event()
    exited = _Outcome()

    def on_exit(code: int) -> None:
        exited(True, code)
        changed.set()

    reaper = Reaper(proc, on_exit)
    line = _Outcome()

    def read() -> None:
        line(True, read_line(fd))  # (it closes fd)
        changed.set()

    threading.Thread(target=read, name="jitpc readiness", daemon=True).start()
    try:
        _wait(changed, deadline)
        said = line.value if line.event.is_set() else None
        if said == b"":
            exited.event.wait(grace)
        return said, exited.value if exited.event.is_set() else None
    finally:
        reaper.detach()
        # (A readiness thread given up on goes on blocking on the pipe until the daemon
        # writes or exits; it then closes it.)


def _race(op: Race, new: Callable[[], Any] | None) -> Raced:
    from ._lock import wait_free_at

    lock = op.lock
    free = _in_own_thread(lambda: wait_free_at(lock), op.thread)
    steps = op.dial
    value: Any = None
    error: BaseException | None = None
    raced = Raced(False, None, False, None)
    try:
        while True:
            try:
                op_ = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                raced.dialed, raced.usable = True, bool(stop.value)
                break
            except BaseException as exc:
                raced.dialed, raced.dial_error = True, exc
                break
            value = error = None
            if free.event.is_set():
                break  # (before the next operation: a try that connected is taken first)
            try:
                value = perform(op_, new, free.event)
            except BaseException as exc:
                error = exc
    finally:
        steps.close()
    if free.event.is_set():
        raced.free = True
        if not free.ok:
            if not isinstance(free.value, OSError):
                raise free.value
            raced.free_error = free.value
    return raced
