"""A blocking facade over the asyncio client, for programs that do not use asyncio.

    import jitpc.sync

    with jitpc.sync.connect("counters", spinup=spawn) as client:
        counter = client.call(Inc(key="a"))  # a Counter, as with the async client
        print(client.request("inc", {"key": "a"}, timeout=5))

Every method is a thin call into :class:`jitpc.Client` through a *portal*: one daemon thread
running one asyncio event loop, shared by all the sync clients of the process. A blocking method
submits its coroutine to that loop (``asyncio.run_coroutine_threadsafe``) and waits for the
result; exceptions are the same ``jitpc`` exceptions, re-raised in the calling thread.

The portal starts at the first use of a client and stops (its loop shut down, as
``asyncio.run`` does) when the last client using it closes; a client that is garbage collected
without being closed is destroyed, and whatever is still open at interpreter exit is closed
then, quietly. One shared thread, rather than one per client, because a loop is cheap to share
and a CLI that opens several clients should not pay a thread and a loop for each.

Two things run *in the portal thread*, on its event loop, and block it while they run (every
sync client of the process waits meanwhile): the ``spinup`` hook, and the functions given to
:meth:`Client.respond`. Keep them short; they must not call the sync API (that would wait for
the loop they are blocking, so it raises ``RuntimeError`` instead).

The sync API cannot be used from a thread that runs an event loop (it would block that loop):
it raises ``RuntimeError`` there. Use :func:`jitpc.connect` in async code.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from ._client import Client as _AsyncClient
from ._client import Responder
from ._method import Method
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["Client", "connect"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Responder)


class _Portal:
    """One daemon thread running one event loop until :meth:`stop`."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self.thread = threading.Thread(target=self._main, name="jitpc.sync portal", daemon=True)
        self.thread.start()
        self._started.wait()

    def _main(self) -> None:
        try:
            # asyncio.Runner closes the loop as asyncio.run does: remaining tasks cancelled,
            # async generators shut down (which closes jitpc's still-open connections), the
            # default executor joined.
            with asyncio.Runner() as runner:
                runner.run(self._serve())
        finally:
            _stopped(self)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._started.set()
        await self._stop

    def _set_stop(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Have the loop call ``fn(*args)``, from any thread; nothing if it has stopped."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed
            pass

    def stop(self) -> None:
        """Shut the loop down and, unless called from the portal thread, wait for it."""
        self.soon(self._set_stop)
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def run(
        self,
        timeout: float | None,
        fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop and wait for its result, or its exception."""
        assert self._loop is not None
        coro = _bounded(timeout, fn, *args, **kwargs)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except BaseException:
            coro.close()
            raise
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt in the caller: cancel the request too
            raise


async def _bounded(
    limit: float | None, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    async with asyncio.timeout(limit):  # raises the builtin TimeoutError
        return await fn(*args, **kwargs)


# The shared portal, and how many users (clients, and calls in progress) hold it.
_lock = threading.Lock()
_portal: _Portal | None = None
_users = 0
_live: set[_Portal] = set()  # started and not yet finished
_exiting = False
_atexit_registered = False


def _acquire() -> _Portal:
    global _portal, _users, _atexit_registered
    with _lock:
        if _exiting:
            raise RuntimeError("jitpc.sync cannot be used while the interpreter exits")
        if _portal is None:
            _portal = _Portal()
            _live.add(_portal)
            if not _atexit_registered:
                atexit.register(_close_at_exit)
                _atexit_registered = True
        _users += 1
        return _portal


def _release(portal: _Portal) -> None:
    global _portal, _users
    with _lock:
        if portal is not _portal:
            return  # already stopped at exit
        _users -= 1
        if _users:
            return
        _portal = None
    portal.stop()


def _stopped(portal: _Portal) -> None:
    with _lock:
        _live.discard(portal)


def _close_at_exit() -> None:
    global _portal, _exiting
    with _lock:
        _exiting = True
        _portal = None
        live = list(_live)
    for portal in live:
        portal.stop()


def _check_thread() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "jitpc.sync cannot be called from a running event loop (it would block it); "
        "use jitpc.connect() and await its methods instead"
    )


def _abandon(holder: list[_Portal], client: _AsyncClient) -> None:
    """A sync client was garbage collected unclosed: destroy its connection, release the portal.

    Runs from a finalizer, in whatever thread the collector ran: it takes no lock, and leaves
    the work to the portal thread.
    """
    if holder:
        portal = holder[0]
        portal.soon(client.destroy)
        portal.soon(_release, portal)


class Client:
    """A blocking jitpc client: each method waits for the async :class:`jitpc.Client`'s result.

    Made by :func:`connect`. Safe to use from several threads at once: their requests share the
    one connection, as concurrent tasks would. Close it with :meth:`close`, or use it as
    ``with jitpc.sync.connect(id) as client:``.
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Callable[[], object] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout: float | None = None,
    ) -> None:
        self._client = _AsyncClient(server_id, spinup=spinup, max_message_bytes=max_message_bytes)
        self._timeout = timeout
        self._lock = threading.Lock()
        # The portal this client holds from its first use until it is closed (empty before,
        # and after). A list, so that the finalizer can see it without keeping self alive.
        self._holder: list[_Portal] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"<jitpc.sync.Client server_id={self._client.server_id!r} " + (
            "closed>" if self.closed else "open>"
        )

    @property
    def server_id(self) -> str:
        """The id of the server this client talks to."""
        return self._client.server_id

    @property
    def closed(self) -> bool:
        """True once the connection has closed (or failed to open); it never reopens."""
        return self._client.closed

    def _run(
        self,
        timeout: float | None,
        fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        _check_thread()
        with self._lock:
            if not self._holder and not self._client.closed:
                self._holder.append(_acquire())
                self._finalizer = weakref.finalize(self, _abandon, self._holder, self._client)
                self._finalizer.atexit = False  # _close_at_exit handles exit
        portal = _acquire()  # for this call: a closed client still gets its error
        try:
            return portal.run(self._timeout if timeout is None else timeout, fn, *args, **kwargs)
        finally:
            _release(portal)

    def open(self, *, timeout: float | None = None) -> None:
        """Connect now, rather than at the first request. Blocks until connected.

        Tries the server's socket; if nothing answers, runs the spinup hook once (in the portal
        thread) and retries with back-off for about 7 s in all.

        Args:
            timeout: seconds to wait at most (default: the client's ``timeout``).

        Raises:
            ConnectError: no server answered, or the spinup hook raised.
            ClosedError: the client was closed.
            TimeoutError: ``timeout`` passed first (the attempt goes on in the background).
            RuntimeError: called from a thread running an event loop.
        """
        self._run(timeout, self._client.open)

    def request(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and block until its result comes. Connects first if needed.

        Args:
            method: the method name.
            params: anything JSON can write (or a pydantic model).
            timeout: seconds to wait at most, connecting included (default: the client's
                ``timeout``). On expiry the request is cancelled: its id is forgotten and a late
                response is discarded; the peer may still run it.

        Raises:
            RemoteError: the peer answered with an error; a subclass such as
                :class:`jitpc.MethodNotFound` for the standard JSON-RPC codes.
            ClosedError: the connection closed (or was closed) before the response came.
            ConnectError: the connection could not be opened.
            TimeoutError: ``timeout`` passed first.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: called from a thread running an event loop.
        """
        return self._run(timeout, self._client.request, method, params)

    def call(self, params: Method[R], *, timeout: float | None = None) -> R:
        """Call a typed method and block until its validated result comes.

        ``counter = client.call(Inc(key="a"))``: the result has ``Inc``'s result type.
        ``timeout`` is as for :meth:`request`.

        Raises:
            InvalidParams: the peer rejected the params (its reasons in ``data``).
            MethodNotFound: the peer has no such method.
            InternalError: the peer's handler failed.
            RemoteError: any other error answer.
            ResultValidationError: the result does not fit the result type.
            ClosedError: the connection closed before the response came.
            ConnectError: the connection could not be opened.
            TimeoutError: ``timeout`` passed first.
            RuntimeError: called from a thread running an event loop.
        """
        return self._run(timeout, self._client.call, params)

    @overload
    def notify(self, method: str, params: Any = None) -> None: ...
    @overload
    def notify(self, method: Method[None]) -> None: ...
    def notify(self, method: str | Method[None], params: Any = None) -> None:
        """Send a notification: ``notify("log", {"line": "hi"})`` or ``notify(Log(line="hi"))``.

        Blocks only until the message is queued on the portal's loop; connects in the
        background if needed (if that fails, the notification is lost).

        Raises:
            ClosedError: the client is closed or ending.
            TypeError: ``params`` cannot be written as JSON.
            RuntimeError: called from a thread running an event loop.
        """
        self._run(None, _notify, self._client, method, params)

    @overload
    def respond(self, method: str) -> Callable[[F], F]: ...
    @overload
    def respond(self, method: str, fn: F) -> F: ...
    def respond(self, method: str, fn: F | None = None) -> F | Callable[[F], F]:
        """Answer the server's requests for ``method`` with ``fn(params)``. Does not block.

        ``fn`` is a plain function; it runs **in the portal thread**, blocking every sync client
        of the process while it runs, and must not call the sync API. What it returns is the
        result; a :class:`jitpc.RemoteError` it raises is sent as is, any other exception as
        an :class:`jitpc.InternalError`. Usable as a decorator: ``@client.respond("m")``.
        """
        if fn is None:
            return self._client.respond(method)
        return self._client.respond(method, fn)

    def close(self, *, timeout: float | None = None) -> None:
        """Close gracefully, and block until closed. Idempotent.

        New requests fail with :class:`jitpc.ClosedError` from now on; requests already sent
        (from other threads) still get their responses. If ``timeout`` (default: the client's
        ``timeout``) passes first, the connection is closed at once instead. Releases the
        portal: the last client to close stops its thread.

        Raises:
            RuntimeError: called from a thread running an event loop.
        """
        self._close(graceful=True, timeout=timeout)

    def _close(self, *, graceful: bool, timeout: float | None) -> None:
        _check_thread()
        with self._lock:
            if not self._holder:  # never used: no connection, no loop
                self._client.destroy()
                return
        try:
            if graceful:
                self._run(timeout, self._client.end)
            else:
                self._run(None, _destroy, self._client)
        except TimeoutError:
            self._run(None, _destroy, self._client)
        finally:
            with self._lock:
                holder, self._holder = self._holder, []
                if self._finalizer is not None:
                    self._finalizer.detach()
            if holder:
                _release(holder[0])

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


async def _notify(client: _AsyncClient, method: Any, params: Any) -> None:
    client.notify(method, params)


async def _destroy(client: _AsyncClient) -> None:
    client.destroy()


def connect(
    server_id: str,
    *,
    spinup: Callable[[], object] | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float | None = None,
) -> Client:
    """A blocking client for the jitpc server ``server_id``; it connects at first use.

    No I/O happens here (and no thread starts): the first :meth:`Client.request`,
    :meth:`Client.call`, :meth:`Client.notify` or :meth:`Client.open` connects, as
    :func:`jitpc.connect` does.

    Args:
        server_id: the id the server listens on; it names ``<tmpdir>/<id>.sock``.
        spinup: a plain function called at most once, after the first failed try, **in the
            portal thread**; typically it starts the server process (detached). It blocks the
            portal's loop while it runs, so it should not wait long.
        max_message_bytes: the longest message accepted from the server.
        timeout: the default of every method's ``timeout``, in seconds (``None``: no bound).
    """
    return Client(server_id, spinup=spinup, max_message_bytes=max_message_bytes, timeout=timeout)
