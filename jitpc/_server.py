"""``listen()`` and the :class:`Server`: one per id, spinning itself down when idle.

Shutdown order matters (research T4, T7): stop the timer, stop accepting, close the clients,
remove the socket file if it is still ours, and only then release the lock, so that a server
starting as this one closes never loses its socket to us.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from . import _shutdown
from ._client import Client, TypedResponder
from ._connect import run_hook
from ._errors import JitpcError
from ._lock import Lock, try_acquire
from ._openrpc import document
from ._paths import address
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES
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

C = TypeVar("C", bound=OnClient)
H = TypeVar("H", bound=Callable[..., object])


class Server:
    """A jitpc server: the single holder of its id until it closes.

    Made by :func:`listen`. Use it as ``async with server:`` to close it on exit, or await
    :meth:`wait_closed` to serve until it spins down.

    Every server answers three built-in methods, on any connection, even one at its in-flight
    cap: ``rpc.ping`` (``{}``: cheap liveness), ``rpc.status`` (``id``, ``pid``, ``jitpc``
    version, ``uptime`` in seconds, ``clients``, ``in_flight`` requests, ``methods``) and
    ``rpc.discover`` (the OpenRPC document of its typed methods).
    """

    def __init__(
        self,
        server_id: str,
        *,
        spindown: SpindownHook | Literal[False] | None,
        spindown_timeout: float,
        on_error: OnError | None,
        max_message_bytes: int,
        _lock: Lock,
    ) -> None:
        self.id = server_id
        self._spindown_hook = spindown if spindown is not False else None
        self._spindown_enabled = spindown is not False
        self._spindown_timeout = spindown_timeout
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
        self._closed = self._loop.create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._router = Router()
        self._routers: list[Router] = []
        self._builtins: dict[str, TypedResponder] = {
            "rpc.ping": _ping,
            "rpc.status": self._status,
            "rpc.discover": self._discover,
        }
        #: Every typed method of this server, resolved: built-ins, then its routers in order.
        self._table: dict[str, TypedResponder] = {}
        self._discovered: dict[str, Any] | None = None
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

    def openrpc(self, *, version: str = "0.0.0") -> dict[str, Any]:
        """The OpenRPC document of this server's typed methods, as ``rpc.discover`` answers."""
        specs = {}
        for router in reversed(self._routers):
            specs.update({name: spec for name, _, spec in router._items()})
        return document(specs.values(), title=self.id, version=version)

    def _routes_changed(self) -> None:
        table = dict(self._builtins)
        for router in self._routers:
            for name, respond, _ in router._items():
                table.setdefault(name, respond)
        self._table = table
        self._discovered = None
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
            "uptime": round(time.monotonic() - self._started, 3),
            "clients": len(self._clients),
            "in_flight": sum(
                c._connection.in_flight for c in self._clients.values() if c._connection
            ),
            "methods": sorted(names),
        }

    async def close(self) -> None:
        """Stop serving: close every client (their pending requests fail, their running
        handlers are cancelled), remove the socket, release the id. Idempotent; concurrent calls
        wait for the same close. Raises nothing.

        Cancelling the call stops the wait, not the close: it completes anyway.
        """
        if self._closing is None:
            self._closing = self._loop.create_task(self._close())
        await asyncio.shield(self._closing)

    async def wait_closed(self) -> None:
        """Wait until the server has closed (after :meth:`close` or spindown). Raises nothing;
        cancelling the wait is safe (the server goes on)."""
        await asyncio.shield(self._closed)

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
            del self._clients[client.id]
            heapq.heappush(self._free_ids, client.id)
        if not self._clients and self._closing is None:
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
            logger.warning("jitpc server %r: its socket file was removed; re-created", self.id)
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
        if not self._clients:
            self._start_timer()

    # -- spindown --------------------------------------------------------------------------

    def _start_timer(self) -> None:
        self._cancel_timer()
        if self._spindown_enabled and self._spindown_task is None:
            self._timer = self._loop.call_later(self._spindown_timeout, self._timer_fired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self) -> None:
        self._timer = None
        if not self._clients and self._closing is None and self._spindown_task is None:
            self._spindown_task = self._loop.create_task(self._spin_down())

    async def _spin_down(self) -> None:
        try:
            hook = self._spindown_hook
            if hook is not None:
                try:
                    # A synchronous hook runs in a worker thread, so that the loop goes on
                    # accepting meanwhile: a client that arrives while it runs keeps the
                    # server up, as with an async hook.
                    await run_hook(hook)
                except Exception as exc:
                    self._report(exc, "spindown hook raised; the server stays open")
                    return
            if self._clients:
                return  # a client arrived while the hook ran: keep serving it
            await self.close()
        finally:
            self._spindown_task = None

    def _report(self, exc: BaseException, what: str) -> None:
        logger.error("jitpc server %r: %s", self.id, what, exc_info=exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                logger.exception("jitpc server %r: on_error callback raised", self.id)

    # -- closing ---------------------------------------------------------------------------

    async def _close(self) -> None:
        try:
            listener = self._stop()
            if listener is not None:
                await listener.wait_closed()
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


async def listen(
    server_id: str,
    *,
    on_client: OnClient | None = None,
    spindown: SpindownHook | Literal[False] | None = None,
    spindown_timeout: float = 5.0,
    on_error: OnError | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Server | None:
    """Serve ``server_id``, unless another process (Node or Python) already does.

    Takes the id's lock file, removes a stale socket left by a crashed server, and listens.

    Args:
        server_id: the id clients connect to; it names ``<tmpdir>/<id>.sock`` and ``.lock``.
        on_client: called with each new :class:`Client` (see :meth:`Server.on_client`).
        spindown: called (sync or async) when the server has had no client for
            ``spindown_timeout`` seconds, before it closes; if it raises, the error is logged and
            passed to ``on_error`` and the server stays open. A client that arrives while it
            runs keeps the server up. A synchronous hook runs in a worker thread (so the loop
            accepts meanwhile). ``False`` disables spindown.
        spindown_timeout: idle seconds before spindown, counted from start and from each time
            the last client leaves.
        on_error: called with errors that have no caller to go to (spindown hook, on_client).
        max_message_bytes: the longest message accepted from a client.

    Returns:
        The server, or ``None`` if the id is already served (a second ``listen`` for a held id
        in the same process also gets ``None``).

    Raises:
        OSError: the lock or socket file cannot be used (a symlink, another user's file).
        ValueError: the id gives an unusable socket path.

    Cancelling it is safe: a lock taken is released, a socket bound is closed.
    """
    addr = address(server_id)
    os.makedirs(os.path.dirname(addr.lock) or ".", exist_ok=True)
    lock = try_acquire(addr.lock)
    if lock is None:
        return None
    try:
        server = Server(
            server_id,
            spindown=spindown,
            spindown_timeout=spindown_timeout,
            on_error=on_error,
            max_message_bytes=max_message_bytes,
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
    return server
