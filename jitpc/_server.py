"""``listen()`` and the :class:`Server`: one per id, spinning itself down when idle.

Shutdown order matters (research T4, T7): stop the timer, stop accepting, close the clients,
remove the socket file if it is still ours, and only then release the lock, so that a server
starting as this one closes never loses its socket to us.

Spindown rules: with no client, a timer (``first_client_timeout`` before the first client,
``spindown_timeout`` after); with clients and an ``idle_timeout``, a periodic check that samples
what the connections already keep, so that no request pays for it. Either runs the hook, and
after it closes only if nothing arrived meanwhile; deciding and stopping happen in one step.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar, overload

from . import _shutdown
from ._client import Client, TypedFast, TypedResponder
from ._connect import run_hook
from ._connection import CONNECTING, SYSTEM_METHODS, log_fields
from ._errors import InvalidParams, JitpcError, MethodNotFound
from ._lock import Lock, try_acquire
from ._method import fingerprint
from ._openrpc import document
from ._paths import address
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES
from ._spawn import announce
from ._transport import Listener, serve
from ._typed import Registrar, Router
from ._version import __version__

__all__ = ["OnClient", "Server", "listen"]

logger = logging.getLogger("jitpc")

#: Called with each new client; may be async (the client's messages wait until it returns).
OnClient = Callable[[Client], Awaitable[object] | object]
SpindownHook = Callable[[], Awaitable[object] | object]
OnError = Callable[[BaseException], object]

#: Seconds between checks that the lock and socket files are still this server's.
WATCH_INTERVAL = 1.0
#: The idle rule checks every ``idle_timeout / IDLE_CHECKS`` seconds and spins down after that
#: many quiet checks in a row: between 1 and 1.25 ``idle_timeout`` after the last request.
IDLE_CHECKS = 4
#: Seconds ``rpc.shutdown`` lets requests in flight finish, unless it says otherwise.
SHUTDOWN_GRACE = 5.0
#: The signals that close a server while :meth:`Server.serve_forever` waits.
SIGNALS = (signal.SIGTERM, signal.SIGINT)

C = TypeVar("C", bound=OnClient)
H = TypeVar("H", bound=Callable[..., object])


class Server:
    """A jitpc server: the single holder of its id until it closes.

    Made by :func:`listen`. Use it as ``async with server:`` to close it on exit, await
    :meth:`wait_closed` to serve until it spins down, or :meth:`serve_forever` to also close
    it cleanly on SIGTERM and SIGINT.

    Every server answers four built-in methods, on any connection, even one at its in-flight
    cap: ``rpc.ping`` (``{}``: cheap liveness), ``rpc.status`` (``id``, ``pid``, ``jitpc``
    version, the server's ``version`` given to :func:`listen` or ``null``, ``uptime`` in
    seconds, ``clients``, ``in_flight`` requests, ``methods``, and ``schemas``: each typed
    method's fingerprint, which changes when its params or result schema does),
    ``rpc.discover`` (the OpenRPC document of its typed methods; ``info.version`` is the
    server's version, or ``"0.0.0"``) and ``rpc.shutdown`` (params ``{"grace": seconds}``,
    optional: answers ``{"pid": PID}``, then :meth:`shutdown`).
    """

    def __init__(
        self,
        server_id: str,
        *,
        spindown: SpindownHook | Literal[False] | None,
        spindown_timeout: float,
        idle_timeout: float | None,
        first_client_timeout: float | None,
        on_error: OnError | None,
        max_message_bytes: int,
        version: str | None,
        _lock: Lock,
    ) -> None:
        self.id = server_id
        #: What :func:`listen` was given as ``version`` (``None``: no version).
        self.version = version
        self._spindown_hook = spindown if spindown is not False else None
        self._spindown_enabled = spindown is not False
        self._spindown_timeout = spindown_timeout
        self._first_client_timeout = first_client_timeout
        self._had_client = False
        self._idle_timeout = idle_timeout
        self._idle_check: asyncio.TimerHandle | None = None
        #: Quiet idle checks in a row; ``None`` after a raising hook, until the next activity.
        self._quiet: int | None = 0
        self._was_busy = False
        self._on_error = on_error
        self._max_message_bytes = max_message_bytes
        self._lock = _lock
        self._listener: Listener | None = None
        self._on_client: list[OnClient] = []
        self._clients: dict[int, Client] = {}
        self._free_ids: list[int] = []
        self._next_id = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._spindown_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None
        self._closed = self._loop.create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._router = Router()
        self._routers: list[Router] = []
        self._builtins: dict[str, TypedResponder] = {
            "rpc.ping": _ping,
            "rpc.status": self._status,
            "rpc.discover": self._discover,
            "rpc.shutdown": self._shutdown_request,
        }
        #: Every typed method of this server, resolved: built-ins, then its routers in order.
        self._table: dict[str, TypedResponder] = {}
        self._fast_table: dict[str, TypedFast] = {}
        self._discovered: dict[str, Any] | None = None
        self._schemas: dict[str, str] | None = None
        self._started = time.monotonic()
        self._watch: asyncio.TimerHandle | None = None
        self._lost = False
        self._rebinding: asyncio.Task[None] | None = None
        self._socket_path = ""  # set by listen()
        self.mount(self._router)

    def __repr__(self) -> str:
        state = "closed" if self._closing else f"{len(self._clients)} clients"
        return f"<jitpc.Server id={self.id!r} {state}>"

    # -- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun (by a call or by spindown)."""
        return self._closing is not None or self._closed.done()

    @property
    def clients(self) -> list[Client]:
        """The connected clients, by id."""
        return [self._clients[i] for i in sorted(self._clients)]

    def client_by_id(self, client_id: int) -> Client | None:
        """The connected client with this server-side id, if any."""
        return self._clients.get(client_id)

    def on_client(self, fn: C) -> C:
        """Call ``fn(client)`` for each new client; returns ``fn`` (usable as a decorator).

        If ``fn`` is async, the client's messages are not read until it returns, so it can
        register responders first.
        """
        self._on_client.append(fn)
        return fn

    @overload
    def method(self, handler: H, /) -> H: ...
    @overload
    def method(self, handler: None = None, /, *, thread: bool = False) -> Registrar: ...
    def method(
        self, handler: Callable[..., object] | None = None, /, *, thread: bool = False
    ) -> Any:
        """Register a typed handler for every client of this server (a decorator).

        ``handler`` takes its params model (a ``jitpc.Method[R]`` subclass), optionally the
        calling :class:`Client` (by annotation), and returns ``R``, sync or async. See
        :class:`Router`; returns the handler unchanged. ``@server.method(thread=True)`` runs a
        synchronous handler in a worker thread, so that it may block.

        Raises:
            TypeError: the handler's annotations are unusable.
            ValueError: its method name is already registered on this server.
        """
        if handler is None:
            return self._router.method(thread=thread)
        self._router.add_method(handler, thread=thread)
        return handler

    def add_method(
        self, handler: Callable[..., object], *, name: str | None = None, thread: bool = False
    ) -> None:
        """Register a typed handler, optionally under another name (see :meth:`method`)."""
        self._router.add_method(handler, name=name, thread=thread)

    def mount(self, router: Router) -> None:
        """Serve ``router``'s typed methods to every client (after this server's own); methods
        added to it later are served too."""
        self._routers.append(router)
        router._watch(self)
        self._routes_changed()

    def openrpc(self, *, version: str | None = None) -> dict[str, Any]:
        """The OpenRPC document of this server's typed methods, as ``rpc.discover`` answers;
        ``info.version`` is ``version``, by default the server's (``"0.0.0"`` if it has none).
        """
        if version is None:
            version = "0.0.0" if self.version is None else self.version
        return document(self._specs().values(), title=self.id, version=version)

    def _specs(self) -> dict[str, Any]:
        """Each typed method's spec, by name, as the table resolves them (first router wins)."""
        specs = {}
        for router in reversed(self._routers):
            specs.update({name: spec for name, _, spec in router._items()})
        return specs

    def _routes_changed(self) -> None:
        table = dict(self._builtins)
        fast = {}
        for router in self._routers:
            for name, respond, _ in router._items():
                if name not in table:
                    table[name] = respond
                    found = router._lookup_fast(name)
                    if found is not None:
                        fast[name] = found
        self._table, self._fast_table = table, fast
        self._discovered = None
        self._schemas = None
        for client in self._clients.values():
            client._routes_changed()

    def _discover(self, _client: Client, _params: Any) -> dict[str, Any]:
        """``rpc.discover``'s answer, built again only when methods were added or mounted: a
        large document takes milliseconds, during which the server serves no one."""
        if self._discovered is None:
            self._discovered = self.openrpc()
        return self._discovered

    def _status(self, client: Client, _params: Any) -> dict[str, Any]:
        """``rpc.status``: what a health check or ``jitpc status`` shows."""
        names = set(self._table) | set(client._responders)
        return {
            "id": self.id,
            "pid": os.getpid(),
            "jitpc": __version__,
            "version": self.version,
            "uptime": round(time.monotonic() - self._started, 3),
            "clients": len(self._clients),
            "in_flight": sum(
                c._connection.in_flight for c in self._clients.values() if c._connection
            ),
            "methods": sorted(names),
            "schemas": self._fingerprints(),
        }

    def _fingerprints(self) -> dict[str, str]:
        if self._schemas is None:
            specs = self._specs()
            self._schemas = {name: fingerprint(specs[name].params_type) for name in sorted(specs)}
        return self._schemas

    def _shutdown_request(self, _client: Client, params: Any) -> dict[str, Any]:
        """``rpc.shutdown``: the answer goes out first, as from any handler that calls
        :meth:`shutdown`."""
        grace = SHUTDOWN_GRACE
        if params is not None:
            value = params.get("grace", grace) if type(params) is dict else params
            if type(value) not in (int, float) or not value >= 0:
                raise InvalidParams('rpc.shutdown takes {"grace": seconds}, seconds >= 0')
            grace = float(value)
        self.shutdown(grace=grace)
        return {"pid": os.getpid()}

    def shutdown(self, *, grace: float = 5.0) -> None:
        """Stop gracefully: stop accepting clients now, let the requests being handled finish
        and their answers go out, then close as :meth:`close` does (socket file removed, id
        released). Past ``grace`` seconds, what still runs is cancelled and its caller gets
        :class:`ClosedError`. Requests that arrive meanwhile on connected clients are still
        handled (within the same grace). The spindown hook is not called.

        It returns at once, so a handler may call it: its own answer goes out before the
        connection closes. ``await server.wait_closed()`` waits for the end. Idempotent; a
        :meth:`close` meanwhile closes at once.

        Raises:
            ValueError: ``grace`` is negative.
        """
        if not grace >= 0:
            raise ValueError(f"grace must not be negative, not {grace!r}")
        if self._closing is not None or self._draining is not None:
            return
        self._cancel_timer()
        self._cancel_idle_check()
        self._cancel_watch()
        if self._rebinding is not None:
            self._rebinding.cancel()
        if self._listener is not None:
            self._listener.close()  # (and the socket file: new clients find no server)
        logger.info(
            "jitpc server %r shutting down: %d clients, %g s of grace",
            self.id,
            len(self._clients),
            grace,
            extra=log_fields(self.id),
        )
        self._draining = self._loop.create_task(self._drain(grace))

    async def _drain(self, grace: float) -> None:
        try:
            ends = [client.end(timeout=grace) for client in list(self._clients.values())]
            await asyncio.gather(*ends)
        finally:
            self._begin_close()

    async def close(self) -> None:
        """Stop serving: close every client (their pending requests fail, their running
        handlers are cancelled), remove the socket, release the id. Idempotent; concurrent calls
        wait for the same close. Raises nothing.

        Cancelling the call stops the wait, not the close: it completes anyway.
        """
        await asyncio.shield(self._begin_close())

    async def wait_closed(self) -> None:
        """Wait until the server has closed (after :meth:`close` or spindown). Raises nothing;
        cancelling the wait is safe (the server goes on)."""
        await asyncio.shield(self._closed)

    async def serve_forever(self, *, signals: bool = True) -> None:
        """Wait until the server has closed (by :meth:`close`, spindown or a signal).

        With ``signals`` (the default), SIGTERM and SIGINT close the server while this waits,
        as :meth:`close` does: the clients' pending requests fail with :class:`ClosedError`,
        the socket file is removed, the id is released. Then the handlers that were there
        before are put back, and the signal is delivered again, to them: the process ends as
        that signal says, only after a clean close. With the default handlers, SIGTERM kills
        it (exit status -15 for ``subprocess``, 143 in a shell), so nothing after this call
        runs; SIGINT raises :class:`KeyboardInterrupt` (under ``asyncio.run``, it cancels the
        main task and ``asyncio.run`` raises it). A handler the program set with
        ``signal.signal`` is restored and called; a signal the program handles with
        ``loop.add_signal_handler`` on this loop is left to that handler, and one it ignores
        (``SIG_IGN``, as a shell starts a background job's SIGINT) stays ignored: it does not
        close the server. Servers serving forever at once share the handlers: a signal closes
        them all, and is delivered again once the last has closed. Signals are handled only in
        the main thread (Python can set handlers nowhere else); in any other thread, and with
        ``signals=False``, this only waits.

        Cancelling it closes the server, as for :meth:`asyncio.Server.serve_forever`.

        Raises:
            KeyboardInterrupt: after SIGINT, from Python's default handler; generally, what the
                restored handler raises.
        """
        capture = _capture(self) if signals and _main_thread() else None
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            await self.close()
            raise
        finally:
            if capture is not None:
                capture.leave(self)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- clients ---------------------------------------------------------------------------

    def _accept(self) -> asyncio.Protocol:
        if self._free_ids:
            client_id = heapq.heappop(self._free_ids)
        else:
            client_id = self._next_id
            self._next_id += 1
        client = Client._serving(self, client_id, self._max_message_bytes)
        self._clients[client_id] = client
        assert client._connection is not None
        return client._connection

    def _client_connected(self, client: Client) -> None:
        self._cancel_timer()
        if self._closing is not None:
            client.destroy()
            return
        self._had_client = True
        logger.debug("jitpc server %r: client %d came", self.id, client.id, extra=client._log)
        if self._idle_timeout is not None and self._idle_check is None:
            self._quiet, self._was_busy = 0, False
            self._schedule_idle_check()
        if not self._lost:
            self._check_files()
        for fn in self._on_client:
            try:
                result = fn(client)
            except Exception as exc:
                self._report(exc, f"on_client callback {fn!r} raised")
                continue
            if inspect.isawaitable(result):
                self._run_on_client(client, fn, result)

    def _run_on_client(self, client: Client, fn: OnClient, awaitable: Awaitable[object]) -> None:
        connection = client._connection
        assert connection is not None
        connection.hold()

        async def run() -> None:
            try:
                await awaitable
            except Exception as exc:
                self._report(exc, f"on_client callback {fn!r} raised")
            finally:
                connection.release()

        task = self._loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _client_closed(self, client: Client) -> None:
        if self._clients.get(client.id) is client:
            logger.debug("jitpc server %r: client %d left", self.id, client.id, extra=client._log)
            del self._clients[client.id]
            heapq.heappush(self._free_ids, client.id)
        if not self._clients and self._closing is None and self._draining is None:
            self._cancel_idle_check()  # no clients: the no-client rule's turn
            self._start_timer()

    # -- keeping the id (research T5) ------------------------------------------------------

    def _start_watch(self) -> None:
        self._watch = self._loop.call_later(WATCH_INTERVAL, self._watch_fired)

    def _cancel_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _rebind(self, old: Listener) -> None:
        try:
            self._listener = await serve(self._socket_path, self._accept)
        except OSError as exc:
            self._report(exc, "cannot re-create its removed socket")
            self._give_up()
        else:
            logger.warning(
                "jitpc server %r: its socket file was removed; re-created",
                self.id,
                extra=log_fields(self.id),
            )
        finally:
            old.close()  # stops the old listener; the path now names the new socket
            self._rebinding = None

    def _watch_fired(self) -> None:
        self._watch = None
        if self._closing is None and not self._lost:
            self._check_files()
            if not self._lost:
                self._start_watch()

    def _check_files(self) -> None:
        """Re-create our socket if a temp cleaner (or anyone) removed it; give the id up if
        our lock file was removed or replaced.

        Another server may then take the id with a new lock file; two servers must never
        accept for one path, so this one stops accepting at once, lets its clients finish,
        and closes when they have gone.
        """
        listener = self._listener
        if self._lock.still_ours():
            if listener is None or listener.still_ours():
                return
            # Only the socket file is gone: the id is still ours, so serve a new one.
            if self._rebinding is None:
                self._rebinding = self._loop.create_task(self._rebind(listener))
            return
        if listener is not None:
            listener.close()  # removes the socket file only if it is still ours
        self._report(
            JitpcError(
                f"the lock file of jitpc id {self.id!r} was removed or replaced; "
                "this server stops accepting and closes once its clients are gone"
            ),
            "lost its id",
        )
        self._give_up()

    def _give_up(self) -> None:
        """Accept no more: spin down as soon as the last client has gone (the hook still runs)."""
        self._lost = True
        self._cancel_watch()
        self._spindown_enabled = True
        self._spindown_timeout = 0.0
        self._first_client_timeout = None
        if not self._clients:
            self._start_timer()

    # -- spindown --------------------------------------------------------------------------

    def _start_timer(self) -> None:
        """The no-client rule: spin down if no client comes within the timeout."""
        self._cancel_timer()
        if self._spindown_enabled and self._spindown_task is None:
            timeout = self._spindown_timeout
            if not self._had_client and self._first_client_timeout is not None:
                timeout = self._first_client_timeout
            self._timer = self._loop.call_later(timeout, self._timer_fired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self) -> None:
        self._timer = None
        if not self._clients and self._closing is None and self._spindown_task is None:
            self._spindown_task = self._loop.create_task(self._spin_down(idle=False))

    def _schedule_idle_check(self) -> None:
        """The idle rule: a check every quarter of ``idle_timeout``, while clients are
        connected. One timer per server, whatever the traffic: requests pay nothing for it."""
        self._cancel_idle_check()
        assert self._idle_timeout is not None
        self._idle_check = self._loop.call_later(
            self._idle_timeout / IDLE_CHECKS, self._idle_check_fired
        )

    def _cancel_idle_check(self) -> None:
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None

    def _idle_check_fired(self) -> None:
        self._idle_check = None
        if self._closing is not None or not self._clients:
            return
        if self._spindown_task is not None:
            # A hook runs; sampling now would hide from it what arrives meanwhile.
            self._schedule_idle_check()
            return
        if self._active():
            self._quiet = 0
        elif self._quiet is not None:
            self._quiet += 1
            if self._quiet >= IDLE_CHECKS:
                self._spindown_task = self._loop.create_task(self._spin_down(idle=True))
                return
        self._schedule_idle_check()

    def _active(self) -> bool:
        """Whether a client sent a request or notification since the last call, or one is
        still being handled (or was at the last call: it may have ended just after it).

        No connection counts its messages: each client's cache of resolved responders, which
        every request or notification for a known method fills, is emptied here and left
        holding only a mark. Any other entry means a message came; a missing mark means a new
        client or a cache cleared meanwhile (``respond()``, ``mount()``), counted as activity
        too. Health probes (``rpc.ping``, ``rpc.status``, ``rpc.discover``) are not activity:
        a monitor must not keep an idle server up.
        """
        busy = bool(self._tasks)  # async on_client callbacks
        seen = False
        for client in self._clients.values():
            conn = client._connection
            if conn is not None:
                if conn.state is CONNECTING:
                    seen = True  # accepted, not set up yet: it will not stay idle for long
                    continue
                if conn.in_flight or conn._peer.outstanding:
                    busy = True
            table = client._table
            if len(table) == 1 and _MARK in table:
                continue
            seen = seen or _MARK not in table or any(n not in _QUIET_METHODS for n in table)
            table.clear()
            table[_MARK] = _unknown_method
        was_busy, self._was_busy = self._was_busy, busy
        return seen or busy or was_busy

    async def _spin_down(self, *, idle: bool) -> None:
        raised = False
        try:
            hook = self._spindown_hook
            if hook is not None:
                try:
                    # A synchronous hook runs in a worker thread, so that the loop goes on
                    # serving meanwhile: a client (or, for the idle rule, a request) that
                    # arrives while it runs keeps the server up, as with an async hook.
                    await run_hook(hook)
                except Exception as exc:
                    self._report(exc, "spindown hook raised; the server stays open")
                    raised = True
        finally:
            self._spindown_task = None
        if self._closing is not None or self._draining is not None:
            return  # closed or shutting down meanwhile
        if not idle:
            if not raised and not self._clients:
                self._begin_close()
            return  # a client arrived while the hook ran: keep serving it
        if raised:
            self._quiet = None  # not again before the clients are active again
        elif self._active():
            self._quiet = 0  # a request came while the hook ran
        else:
            self._begin_close()
            return
        if self._clients:
            self._schedule_idle_check()
        else:
            self._start_timer()  # the last client left while the hook ran

    def _report(self, exc: BaseException, what: str) -> None:
        logger.error("jitpc server %r: %s", self.id, what, exc_info=exc, extra=log_fields(self.id))
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                logger.exception(
                    "jitpc server %r: on_error callback raised", self.id, extra=log_fields(self.id)
                )

    # -- closing ---------------------------------------------------------------------------

    def _begin_close(self) -> asyncio.Task[None]:
        """Stop now, in this callback, so that nothing arrives between a decision to close
        and the stop; the listener's end and the lock's release follow in a task."""
        if self._closing is None:
            logger.info(
                "jitpc server %r closing (%d clients)",
                self.id,
                len(self._clients),
                extra=log_fields(self.id),
            )
            self._closing = self._loop.create_task(self._close(self._listener))
            self._stop()
        return self._closing

    async def _close(self, listener: Listener | None) -> None:
        try:
            if listener is not None:
                await listener.wait_closed()  # stopped by _stop(), before this task's first step
        finally:
            self._release_id()

    def _abort_at_shutdown(self) -> None:
        try:
            self._stop()
        finally:
            self._release_id()

    def _stop(self) -> Listener | None:
        """Stop the timers and accepting, destroy every client, cancel the on_client tasks;
        return the listener that was stopped."""
        self._cancel_timer()
        self._cancel_idle_check()
        if self._rebinding is not None:
            self._rebinding.cancel()
        self._cancel_watch()
        listener = self._listener
        if listener is not None:
            listener.close()
        for client in list(self._clients.values()):
            client.destroy()
        for task in list(self._tasks):
            task.cancel()
        return listener

    def _release_id(self) -> None:
        """Last step of closing: give the lock up, then wake :meth:`wait_closed`."""
        self._lock.release()
        if not self._closed.done():
            self._closed.set_result(None)


def _ping(_client: Client, _params: Any) -> dict[str, Any]:
    return {}


#: Left in each client's responder cache by the idle check (see ``Server._active``). Any
#: string may come as a method name, so its responder answers as for an unknown method.
_MARK = "\x00jitpc: no request since the last idle check"
_QUIET_METHODS = SYSTEM_METHODS | {_MARK}


def _unknown_method(_params: Any) -> Any:
    raise MethodNotFound(f"Unknown method: {_MARK}")


# -- signals (serve_forever) -----------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _Signals:
    """SIGTERM and SIGINT while servers serve forever: one capture for all of them (signal
    handlers are process-wide), set by the first and restored by the last, which then
    delivers the signals caught again (uvicorn's ``capture_signals``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.servers: list[Server] = []
        self.caught: list[int] = []
        #: Signal -> (the handler before, whether ours was set through the loop).
        self.previous: dict[int, tuple[_Handler, bool]] = {}
        try:
            for sig in SIGNALS:
                before = signal.getsignal(sig)
                if before == signal.SIG_IGN:
                    continue  # ignored (a background job's SIGINT): it stays ignored
                if _set_by_loop(before, loop):
                    continue  # the program's loop.add_signal_handler(): we could not restore it
                try:
                    # The loop's way runs ours as a callback, never in the middle of other code.
                    loop.add_signal_handler(sig, self.signalled, sig)
                    self.previous[sig] = (before, True)
                except NotImplementedError:  # Windows
                    signal.signal(sig, self._interrupt)
                    self.previous[sig] = (before, False)
        except BaseException:
            self.restore()
            raise

    def _interrupt(self, sig: int, _frame: FrameType | None) -> None:
        self.loop.call_soon_threadsafe(self.signalled, sig)

    def signalled(self, sig: int) -> None:
        if sig not in self.caught:
            self.caught.append(sig)
        for server in self.servers:
            server._begin_close()

    def restore(self) -> None:
        for sig, (before, through_loop) in self.previous.items():
            if through_loop:
                self.loop.remove_signal_handler(sig)  # sets SIG_DFL, not what was there
            # (None: not set from Python, so it cannot be put back; the default is closest.)
            signal.signal(sig, signal.SIG_DFL if before is None else before)
        self.previous.clear()

    def leave(self, server: Server) -> None:
        """``server`` has stopped serving forever; the last one out restores the handlers
        and delivers the signals caught again, the last first (as uvicorn)."""
        global _signals
        self.servers.remove(server)
        if self.servers:
            return
        _signals = None
        self.restore()
        for sig in reversed(self.caught):
            signal.raise_signal(sig)


_signals: _Signals | None = None


def _capture(server: Server) -> _Signals:
    global _signals
    if _signals is None or _signals.loop is not server._loop:
        _signals = _Signals(server._loop)
    _signals.servers.append(server)
    if _signals.caught:
        server._begin_close()  # a signal came while the others closed
    return _signals


def _set_by_loop(handler: _Handler, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``handler`` is the dispatcher an event loop installs for its
    ``add_signal_handler``: asyncio's module function, uvloop's bound method."""
    return getattr(handler, "__self__", None) is loop or (
        getattr(handler, "__name__", None) == "_sighandler_noop"
    )


async def listen(
    server_id: str,
    *,
    on_client: OnClient | None = None,
    spindown: SpindownHook | Literal[False] | None = None,
    spindown_timeout: float = 5.0,
    idle_timeout: float | None = None,
    first_client_timeout: float | None = None,
    on_error: OnError | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    version: str | None = None,
) -> Server | None:
    """Serve ``server_id``, unless another process (Node or Python) already does.

    Takes the id's lock file, removes a stale socket left by a crashed server, and listens.

    Args:
        server_id: the id clients connect to; it names ``<tmpdir>/<id>.sock`` and ``.lock``.
        on_client: called with each new :class:`Client` (see :meth:`Server.on_client`).
        spindown: called (sync or async) when the server is idle by one of the rules below,
            before it closes; if it raises, the error is logged and passed to ``on_error`` and
            the server stays open (that rule waits for the next client to come and go, or for
            the next request). A client that arrives while it runs keeps the server up, and so,
            for the idle rule, does a request. A synchronous hook runs in a worker thread (so
            the loop serves meanwhile). ``False`` disables spindown, by every rule.
        spindown_timeout: the no-client rule: seconds without a client before spindown,
            counted from start and from each time the last client leaves.
        idle_timeout: the idle rule, off by default: also spin down after this many seconds
            without a request (none received, none being handled), even while idle clients
            stay connected; they are closed (with ``reconnect=True`` a client connects again,
            spinup included, at its next request). Checked every quarter of it, so spindown
            comes between 1 and 1.25 times it after the last request. Health probes
            (``rpc.ping``, ``rpc.status``, ``rpc.discover``) are not requests here; a new
            client is one.
        first_client_timeout: seconds to wait for the first client after start, instead of
            ``spindown_timeout`` (a server spun up for a client that is slow to come).
        on_error: called with errors that have no caller to go to (spindown hook, on_client).
        max_message_bytes: the longest message accepted from a client.
        version: any string naming what this server runs (its package's version, say),
            reported by ``rpc.status`` and ``rpc.discover``; a client that asks for another
            (``connect(version=...)``) refuses this server or has it restarted.

    Returns:
        The server, or ``None`` if the id is already served (a second ``listen`` for a held id
        in the same process also gets ``None``).

    Raises:
        OSError: the lock or socket file cannot be used (a symlink, another user's file).
        TypeError: ``version`` is not a string.
        ValueError: the id gives an unusable socket path; ``idle_timeout`` is not positive,
            ``first_client_timeout`` negative, or either is given with ``spindown=False``.

    Cancelling it is safe: a lock taken is released, a socket bound is closed.
    """
    if version is not None and not isinstance(version, str):
        raise TypeError(f"version must be a string or None, not {version!r}")
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be positive, not {idle_timeout!r}")
    if first_client_timeout is not None and not first_client_timeout >= 0:
        raise ValueError(f"first_client_timeout must not be negative: {first_client_timeout!r}")
    if spindown is False and (idle_timeout is not None or first_client_timeout is not None):
        raise ValueError(
            "spindown=False never spins down: idle_timeout and "
            "first_client_timeout need spindown enabled"
        )
    addr = address(server_id)
    os.makedirs(os.path.dirname(addr.lock) or ".", exist_ok=True)
    lock = try_acquire(addr.lock)
    if lock is None:
        announce("busy", addr.socket)  # to a jitpc.spawn() waiting for us, if any
        return None
    try:
        server = Server(
            server_id,
            spindown=spindown,
            spindown_timeout=spindown_timeout,
            idle_timeout=idle_timeout,
            first_client_timeout=first_client_timeout,
            on_error=on_error,
            max_message_bytes=max_message_bytes,
            version=version,
            _lock=lock,
        )
        if on_client is not None:
            server.on_client(on_client)
        server._socket_path = addr.socket
        server._listener = await serve(addr.socket, server._accept)
    except BaseException:
        lock.release()
        raise
    _shutdown.track(server._loop, server)
    server._start_timer()
    server._start_watch()
    announce("listening", addr.socket)
    logger.info(
        "jitpc server %r listening at %s (pid %d)",
        server_id,
        addr.socket,
        os.getpid(),
        extra=log_fields(server_id),
    )
    return server
