"""A blocking facade over the asyncio client, for programs that do not use asyncio.

    import jitpc.sync

    with jitpc.sync.connect("counters", spinup=spawn) as client:
        counter = client.call(Inc(key="a"))  # a Counter, as with the async client
        print(client.request("inc", {"key": "a"}, timeout=5))

Every method is a thin call into :class:`jitpc.Client` through a *portal*: one daemon thread
running one asyncio event loop, shared by all the sync clients of the process. A blocking method
submits its coroutine to that loop (``asyncio.run_coroutine_threadsafe``) and waits for the
result; exceptions are the same ``jitpc`` exceptions, re-raised in the calling thread.

Timeouts, in seconds, have one meaning throughout:

* A call's ``timeout`` (:meth:`Client.request`, :meth:`Client.call`, :meth:`Client.open`) is
  its whole deadline: connecting (the spinup hook included), waiting for the server to read,
  and waiting for the answer. When it passes the call raises the builtin ``TimeoutError`` and
  the request is cancelled: the server is told (a jitpc server cancels its handler) and a late
  answer is dropped. The client's own ``timeout=`` is the default of every call's.
* ``connect_timeout`` bounds connecting alone, however many calls wait for it; when it passes
  first, they raise :class:`jitpc.ConnectError`. Whichever deadline comes first wins.
* :meth:`Client.close`'s ``timeout`` is how long the graceful close may wait for work in
  flight; past it, the connection is destroyed.

The portal starts at the first use of a client and stops (its loop shut down, as
``asyncio.run`` does) when the last client using it closes; a client that is garbage collected
without being closed is destroyed, and whatever is still open at interpreter exit is closed
then, quietly. A call still waiting then (in a daemon thread: a non-daemon thread keeps the
interpreter alive until its call returns, as any blocking call would) raises
:class:`jitpc.ClosedError`. One shared thread, rather than one per client, because a loop is
cheap to share and a CLI that opens several clients should not pay a thread and a loop for each.

The ``spinup`` hook runs in a jitpc worker thread, so it may block: the deadlines above still
hold (the thread runs on). The functions given to :meth:`Client.respond` run *in the portal
thread*, on its event loop, and block it while they run (every sync client of the process waits
meanwhile); keep them short, and do not call the sync API from them (that would wait for the
loop they are blocking, so it raises ``RuntimeError`` instead). With ``thread=True`` a
responder runs in a worker thread instead, where it may block and use the sync API.

The sync API cannot be used from a thread that runs an event loop (it would block that loop):
it raises ``RuntimeError`` there. Use :func:`jitpc.connect` in async code.

In a child forked without exec (``os.fork()``, multiprocessing's 'fork' start method) the sync
API works as in a new process: the first use starts a portal of the child's own, and deadlines
hold as anywhere. The parent's portal thread does not exist there, and the child has closed its
copies of the parent's connections (see ``jitpc._fork``), so a client the parent had used is
closed in the child: its calls raise :class:`jitpc.ClosedError`, and closing it does nothing
(the parent's connection is untouched). A client the parent made but never used connects anew.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from . import _claim
from ._client import Client as _AsyncClient
from ._client import Responder
from ._connect import CONNECT_TIMEOUT, OnMismatch
from ._errors import ClosedError
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from ._method import Method

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
        # The calls waiting on this portal, so that none outlives its loop (see _main).
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._calls_lock = threading.Lock()
        self._finished = False
        # A copy in a forked child: its thread and loop exist only in the parent.
        self.inherited = False
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
            # A call submitted as the loop shut down was dropped with it: end its wait too.
            with self._calls_lock:
                self._finished = True
                calls = list(self._calls)
            for future in calls:
                future.cancel()
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
        if self.inherited:
            return  # (the parent's loop: waking it would write to the parent's self-pipe)
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed
            pass

    def stop(self) -> None:
        """Shut the loop down and, unless called from the portal thread, wait for it."""
        self.soon(self._set_stop)
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def run(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop and wait for its result, or its exception.

        Raises:
            ClosedError: the loop shut down (the interpreter exits) before the call ended, or
                the call was cancelled under it.
        """
        assert self._loop is not None
        coro = fn(*args, **kwargs)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise _cut_off() from None
        except BaseException:
            coro.close()
            raise
        with self._calls_lock:
            if self._finished:
                future.cancel()
            self._calls.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # Not by us: the loop shut down under the call (at exit), or the async client
            # cancelled its work (destroyed while connecting). Either way, closed.
            raise _cut_off() from None
        except BaseException:
            future.cancel()  # KeyboardInterrupt in the caller: cancel the request too
            raise
        finally:
            with self._calls_lock:
                self._calls.discard(future)


def _cut_off() -> ClosedError:
    why = "the interpreter is exiting" if _exiting else "its client was closed"
    return ClosedError(f"jitpc.sync call cut off: {why}")


def _forked() -> ClosedError:
    return ClosedError(
        "jitpc.sync client used before this process forked: its connection is the parent's; "
        "connect a new client in the child"
    )


async def _bounded(limit: float | None, fn: Callable[[], Awaitable[T]]) -> T:
    async with asyncio.timeout(limit):  # raises the builtin TimeoutError
        return await fn()


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
            raise _cut_off()
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


def _after_fork_in_child() -> None:
    """The portal thread is the parent's: the child's first use starts a new portal."""
    global _lock, _portal, _users, _live
    for portal in _live:
        portal.inherited = True
    _lock = threading.Lock()
    _portal = None
    _users = 0
    _live = set()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        self._client = _AsyncClient(
            server_id,
            spinup=spinup,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            max_message_bytes=max_message_bytes,
            version=version,
            methods=methods,
            on_mismatch=on_mismatch,
        )
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
        """True once the client was closed; without ``reconnect``, also once its connection has
        ended or failed to open (it never reopens then); in a forked child, if it was used
        before the fork."""
        return self._client.closed or self._inherited()

    def _inherited(self) -> bool:
        holder = self._holder
        return bool(holder) and holder[0].inherited

    def _limit(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    def _run(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        _check_thread()
        if self._inherited():  # (before the lock: another thread may have held it at the fork)
            raise _forked()
        with self._lock:
            if not self._holder and not self._client.closed:
                self._holder.append(_acquire())
                self._finalizer = weakref.finalize(self, _abandon, self._holder, self._client)
                self._finalizer.atexit = False  # _close_at_exit handles exit
        portal = _acquire()  # for this call: a closed client still gets its error
        try:
            return portal.run(fn, *args, **kwargs)
        finally:
            _release(portal)

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
        self._run(_bounded, self._limit(timeout), self._client.open)

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
        return self._run(self._client.request, method, params, timeout=self._limit(timeout))

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
        return self._run(self._client.call, params, timeout=self._limit(timeout))

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
        self._run(_notify, self._client, method, params)

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

        ``fn`` is a plain function. By default it runs **in the portal thread**, blocking every
        sync client of the process while it runs, and must not call the sync API (that raises
        ``RuntimeError``). With ``thread=True`` it runs in a jitpc worker thread (a small pool
        shared by the process): it may block, and may call the sync API, but not close its own
        client (the close would wait for its answer). A server's cancel stops waiting for such a
        responder, not its thread.
        """
        if fn is None:
            return self._client.respond(method, thread=thread)
        return self._client.respond(method, fn, thread=thread)

    def close(self, *, timeout: float | None = None) -> None:
        """Close gracefully, and block until closed. Idempotent.

        New requests fail with :class:`jitpc.ClosedError` from now on; requests still awaited
        (in other threads) get their responses, and our responders finish their answers
        (requests given up by a timeout are not waited for). If ``timeout`` (default: the
        client's ``timeout``) passes first, the connection is destroyed instead: requests still
        waiting fail with :class:`jitpc.ClosedError`. Releases the portal: the last client to
        close stops its thread.

        Raises:
            RuntimeError: called from a thread running an event loop.
        """
        self._close(graceful=True, timeout=timeout)

    def _close(self, *, graceful: bool, timeout: float | None) -> None:
        _check_thread()
        if self._inherited():  # the parent's connection and portal: nothing to close here
            if self._finalizer is not None:
                self._finalizer.detach()
            return
        with self._lock:
            if not self._holder:  # never used: no connection, no loop
                self._client.destroy()
                return
        try:
            if graceful:
                # end() itself destroys, on the loop, when its timeout passes.
                self._run(self._client.end, timeout=self._limit(timeout))
            else:
                self._run(_destroy, self._client)
        except ClosedError:
            pass  # the interpreter is exiting: the portal's shutdown closes the connection
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
            hold); a coroutine function runs on the portal's loop. It must not use this client
            (that would wait for the connect it is part of).
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
        version, methods, on_mismatch: the server's version check, as for
            :func:`jitpc.connect`: a server that fails it makes the first call raise
            :class:`jitpc.VersionMismatch`, or is restarted once (``"restart"``), within
            ``connect_timeout``.

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
