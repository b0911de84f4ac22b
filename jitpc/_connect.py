"""The :class:`Connector`: find the server of an id, starting it if need be, within a deadline.

It tries the id's socket; if nothing answers it runs the spinup hook once and tries again, with
Node jitpc's Fibonacci back-off (each sleep jittered, so a herd does not retry in step), until
``connect_timeout`` has passed. The hook runs inside the same deadline: an async hook is
cancelled at the deadline, a synchronous one runs in a worker thread, so that even a hook that
never returns cannot hold :meth:`Connector.connect` past it.

A :func:`jitpc.spawn` hook is run differently: it is told the id and the deadline, tries the
socket again once it holds the spawn lock (so that a herd starts one daemon), and returns when
the daemon says it serves; the next try follows at once, not after a back-off step.

With an :class:`Expected` (``connect(version=..., methods=...)``), :meth:`Connector.open` checks
each connection it makes before the client may use it: it asks ``rpc.status`` and compares the
server's ``version`` and method fingerprints with the client's. On a mismatch it either fails
(:class:`VersionMismatch`) or restarts the server once: ``rpc.shutdown``, then a wait until the id
is free, then the normal path (the spinup hook) and the check again. A second mismatch fails:
never a loop. All of it counts in the one ``connect_timeout``.

The restart only ever stops a server that failed the check on the connection that asked it, so
clients that restart the same old server together (in one process or many) each stop that one
server, never its successor: one of them spins the new server up (the spawn hook's herd rule),
and the others find it, and are satisfied by it. Waiting for the id to be free is a blocking
lock wait in a thread, raced against tries of the socket, so that a client that comes late to
the wait, when the successor already holds the id, finds the successor instead of waiting for
it to exit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ._connection import OPEN, Connection, log_fields
from ._errors import ClosedError, ConnectError, MethodNotFound, RemoteError, VersionMismatch
from ._lock import wait_free_at
from ._paths import address
from ._spawn import Spawn
from ._threads import run_in_own_thread, run_in_thread
from ._transport import is_retryable, open_stream

if TYPE_CHECKING:
    from ._method import Method

__all__ = [
    "BACKOFF",
    "CONNECT_TIMEOUT",
    "JITTER",
    "RESTART_GRACE",
    "Connector",
    "Expected",
    "OnMismatch",
    "Spinup",
    "expect",
    "run_hook",
]

logger = logging.getLogger("jitpc")

#: A spinup hook: a sync or async callable that (typically) starts a server process.
Spinup = Callable[[], Awaitable[object] | object]

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

#: What a client does with a server that fails its version check.
OnMismatch = Literal["error", "restart"]


async def run_hook(hook: Callable[[], Awaitable[object] | object]) -> None:
    """Run a user's hook: a coroutine function on the loop, any other callable in a worker
    thread (so that it may block without stopping the loop); await what it returns if that is
    awaitable. Cancelling stops the wait (a thread runs on)."""
    if inspect.iscoroutinefunction(hook):
        await hook()
    else:
        result = await run_in_thread(hook)
        if inspect.isawaitable(result):
            await result


def _delays() -> Iterator[float]:
    yield from BACKOFF
    while True:
        yield BACKOFF[-1]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a client asks of the servers it connects to (see :func:`expect`)."""

    #: The version the server must report (``None``: any).
    version: str | None
    #: (method name, fingerprint) of each typed method whose schemas must match.
    fingerprints: tuple[tuple[str, str], ...]
    on_mismatch: OnMismatch

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
        given = list(cast(Iterable[object], methods))
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
    return Expected(version, tuple(fingerprints.items()), cast(OnMismatch, on_mismatch))


async def _ask(conn: Connection, method: str, params: Any, deadline: float | None) -> Any:
    """One request on ``conn``, by ``deadline``.

    Raises:
        RemoteError: the server's error answer.
        ClosedError: the connection closed first.
        TimeoutError: the deadline passed first (the request is cancelled).
    """
    id_, future = conn.send_request(method, params)
    try:
        async with asyncio.timeout_at(deadline):
            return await future
    except (TimeoutError, asyncio.CancelledError):
        conn.cancel(id_)
        raise


class Connector:
    """Connects to the server of ``server_id``; each :meth:`connect` call is one connect phase.

    Args:
        server_id: the id; it names ``<tmpdir>/<id>.sock``.
        spinup: run at most once per :meth:`connect`, after the first failed try. A
            :class:`ConnectError` it raises is passed on as is; a :func:`jitpc.spawn` hook is
            run with the id and the deadline (see the module docstring).
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
        spinup: Spinup | None = None,
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

    def _deadline(self) -> float | None:
        timeout = self.connect_timeout
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    async def connect(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.BaseTransport:
        """Connect, with ``factory`` making the protocol of the connection that succeeds.

        Cancelling it is safe: a socket being connected is closed, a running async hook is
        cancelled (a synchronous one runs on in its thread).

        Raises:
            ConnectError: no server answered by the deadline (``__cause__``: the last error),
                the server runs as another user, or the hook raised or outlived the deadline.
            ValueError: the id gives an unusable socket path.
        """
        return await self._connect(factory, self._deadline(), self.spinup)

    async def open(self, conn: Connection, new: Callable[[], Connection]) -> Connection:
        """Connect ``conn`` and, with :attr:`expected`, check its server first; the
        connection returned is open and, if checked, passed. ``new`` makes the connection of
        a restarted server's. A connection that fails is destroyed.

        The check asks ``rpc.status`` (a server without it, such as Node jitpc, reports no
        version and no schemas). A server that fails it, with ``on_mismatch="restart"``, is
        asked to stop (``rpc.shutdown``, its grace what is left of ``connect_timeout``, at most
        :data:`RESTART_GRACE`); once the id is free the normal path (the spinup hook) runs
        again, and the new server is checked in turn. All of it by one deadline.

        Cancelling it is safe: the connections it made are destroyed (a server asked to stop
        goes on stopping).

        Raises:
            VersionMismatch: the server (or the one started in its place) fails the check,
                and ``on_mismatch`` is ``"error"``, or it cannot be restarted (no
                ``rpc.shutdown``), or it did not give the id up by the deadline.
            ConnectError: as for :meth:`connect`; or the server did not answer
                ``rpc.status`` (an error, a close, the deadline).
        """
        deadline = self._deadline()
        expected = self.expected
        restarted = reset = False
        try:
            await self._connect_to(conn, deadline, self.spinup)
            while expected is not None:
                try:
                    status = await self._status(conn, deadline)
                except ClosedError as exc:
                    if reset:
                        raise self._failure(
                            f"jitpc server {self.server_id!r} closed the connection before it "
                            "answered rpc.status, twice"
                        ) from exc
                    # A server that stops as we connect (another client restarts it) resets
                    # the connections it had not accepted yet: connect again, once.
                    reset = True
                    conn.destroy()
                    conn = new()
                    await self._connect_to(conn, deadline, self.spinup)
                    continue
                if expected.differences(status) is None:
                    break
                if expected.on_mismatch == "error":
                    raise self._mismatch(status)
                if restarted:
                    raise self._mismatch(status, "; it was restarted once already")
                await self._stop(conn, status, deadline)
                conn.destroy()
                conn = await self._replaced(new, status, deadline)
                restarted = True
            if conn.state is not OPEN:  # ended by the server just after the check
                raise self._failure(
                    f"jitpc server {self.server_id!r} closed the connection as it opened"
                )
        except BaseException as exc:
            conn.destroy(exc)
            raise
        return conn

    async def _connect_to(
        self, conn: Connection, deadline: float | None, spinup: Spinup | None
    ) -> None:
        transport = await self._connect(lambda: conn, deadline, spinup)
        if conn.state is not OPEN:
            transport.close()  # our connection_made failed: never leave a request hanging
            raise self._unusable()

    def _unusable(self) -> ConnectError:
        return self._failure(
            f"connected to the jitpc server {self.server_id!r}, but could not set up the connection"
        )

    def _failure(self, message: str) -> ConnectError:
        return ConnectError(message, server_id=self.server_id, path=address(self.server_id).socket)

    def _mismatch(self, status: Any, why: str = "") -> VersionMismatch:
        assert self.expected is not None
        path = address(self.server_id).socket
        return self.expected.mismatch(self.server_id, path, status, why)

    async def _status(self, conn: Connection, deadline: float | None) -> Any:
        """The server's ``rpc.status``; ``None`` if it has none (Node jitpc).

        Raises:
            ClosedError: the connection closed first.
            ConnectError: an error answer, or none by the deadline.
        """
        try:
            return await _ask(conn, "rpc.status", None, deadline)
        except MethodNotFound:
            return None
        except RemoteError as exc:
            raise self._failure(
                f"jitpc server {self.server_id!r} answered rpc.status with an error, so its "
                f"version is unknown: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise self._failure(
                f"jitpc server {self.server_id!r} did not answer rpc.status within "
                f"connect_timeout ({self.connect_timeout} s)"
            ) from exc

    async def _stop(self, conn: Connection, status: Any, deadline: float | None) -> None:
        """Ask the server of ``conn``, which failed the check, to stop."""
        grace = RESTART_GRACE
        if deadline is not None:
            grace = max(0.0, min(grace, deadline - asyncio.get_running_loop().time()))
        try:
            await _ask(conn, "rpc.shutdown", {"grace": round(grace, 3)}, deadline)
        except MethodNotFound:
            raise self._mismatch(
                status, "; it cannot be restarted: it has no rpc.shutdown"
            ) from None
        except RemoteError as exc:
            raise self._mismatch(status, f"; it refused to stop (rpc.shutdown): {exc}") from exc
        except ClosedError:
            pass  # it was stopping already: another client asked first
        except TimeoutError:
            raise self._mismatch(
                status,
                f"; asked to stop, it did not answer rpc.shutdown within connect_timeout "
                f"({self.connect_timeout} s)",
            ) from None

    async def _replaced(
        self, new: Callable[[], Connection], status: Any, deadline: float | None
    ) -> Connection:
        """Wait until the stopped server has given the id up, then connect the normal way
        (spinup included); or connect to a successor that another client started meanwhile.

        Whoever waits for the lock after the successor took it would wait for the successor
        to exit, so the wait races tries of the socket: once the old server has stopped
        accepting, any server that answers is a new one. (The losing wait's thread stays
        blocked until that new server exits, holding only a descriptor of the lock file.)
        """
        loop = asyncio.get_running_loop()
        lock = address(self.server_id).lock
        conn = new()
        free = run_in_own_thread(lambda: wait_free_at(lock), "jitpc id lock")
        polling = loop.create_task(self._connect(lambda: conn, deadline, None))
        try:
            await asyncio.wait((free, polling), return_when=asyncio.FIRST_COMPLETED)
            if polling.done():
                try:
                    polling.result()
                except ConnectError:
                    if not free.done() and deadline is not None and loop.time() >= deadline:
                        raise self._mismatch(
                            status,
                            "; asked to stop, it still held the id when connect_timeout "
                            f"({self.connect_timeout} s) passed",
                        ) from None
                    if not free.done():
                        raise  # refused, say: not a server that is still starting
                else:
                    if conn.state is OPEN:
                        return conn  # the successor, which another client started
                    polling.result().close()
                    raise self._unusable()
            try:
                free.result()
            except OSError as exc:
                raise self._failure(f"cannot wait for the jitpc lock {lock}: {exc}") from exc
        except BaseException:
            conn.destroy()
            raise
        finally:
            free.cancel()  # the wait, not the thread
            if not polling.done():
                polling.cancel()
                await asyncio.wait((polling,))
        conn.destroy()  # (the polling's: it may have been cut off mid-connect)
        conn = new()
        try:
            await self._connect_to(conn, deadline, self.spinup)
        except BaseException:
            conn.destroy()
            raise
        return conn

    async def _connect(
        self,
        factory: Callable[[], asyncio.Protocol],
        deadline: float | None,
        spinup: Spinup | None,
    ) -> asyncio.BaseTransport:
        path = address(self.server_id).socket
        loop = asyncio.get_running_loop()
        delays = _delays()
        tries = 0
        start = loop.time()

        def failure(message: str) -> ConnectError:
            return ConnectError(message, server_id=self.server_id, path=path)

        last_error: OSError | None = None

        async def attempt() -> asyncio.BaseTransport | None:
            """One try: the transport, or ``None`` if the server may answer later."""
            nonlocal tries, last_error
            tries += 1
            try:
                return await open_stream(path, factory)
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
                return None

        while True:
            transport = await attempt()
            if transport is not None:
                return transport
            if spinup is not None and (deadline is None or loop.time() < deadline):
                hook, spinup = spinup, None
                if isinstance(hook, Spawn):
                    transport = await hook._spinup(self.server_id, attempt, deadline)
                    if transport is not None:
                        return transport
                    continue  # the daemon says it serves (or another does): try now
                await self._run_hook(hook, deadline, failure)
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise failure(
                    f"no jitpc server for {self.server_id!r} at {path} after {tries} "
                    f"{'try' if tries == 1 else 'tries'} over {now - start:.1f} s: {last_error}"
                ) from last_error
            delay = next(delays) * random.uniform(1 - JITTER, 1 + JITTER)
            if deadline is not None:
                delay = min(delay, deadline - now)
            logger.debug(
                "jitpc: no server at %s yet (%s); trying again",
                path,
                last_error,
                extra=log_fields(self.server_id),
            )
            await asyncio.sleep(delay)

    async def _run_hook(
        self,
        hook: Spinup,
        deadline: float | None,
        failure: Callable[[str], ConnectError],
    ) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await run_hook(hook)
        except ConnectError:
            raise  # the hook's own account of why there is no server
        except TimeoutError as exc:
            raise failure(
                f"the spinup hook for jitpc server {self.server_id!r} did not return within "
                f"connect_timeout ({self.connect_timeout} s)"
            ) from exc
        except Exception as exc:
            raise failure(
                f"the spinup hook for jitpc server {self.server_id!r} failed: {exc!r}"
            ) from exc
