"""The :class:`Connector`: find the server of an id, starting it if need be, within a deadline.

It tries the id's socket; if nothing answers it runs the spinup hook once and tries again, with
Node jitpc's Fibonacci back-off (each sleep jittered, so a herd does not retry in step), until
``connect_timeout`` has passed. The hook runs inside the same deadline: an async hook is
cancelled at the deadline, a synchronous one runs in a worker thread, so that even a hook that
never returns cannot hold :meth:`Connector.connect` past it.

A :func:`jitpc.spawn` hook is run differently: it is told the id and the deadline, tries the
socket again once it holds the spawn lock (so that a herd starts one daemon), and returns when
the daemon says it serves; the next try follows at once, not after a back-off step.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterator

from ._errors import ConnectError
from ._paths import address
from ._spawn import Spawn
from ._threads import run_in_thread
from ._transport import is_retryable, open_stream

__all__ = ["BACKOFF", "CONNECT_TIMEOUT", "JITTER", "Connector", "Spinup", "run_hook"]

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


class Connector:
    """Connects to the server of ``server_id``; each :meth:`connect` call is one connect phase.

    Args:
        server_id: the id; it names ``<tmpdir>/<id>.sock``.
        spinup: run at most once per :meth:`connect`, after the first failed try. A
            :class:`ConnectError` it raises is passed on as is; a :func:`jitpc.spawn` hook is
            run with the id and the deadline (see the module docstring).
        connect_timeout: seconds the whole phase may take, the hook included; ``0`` makes one
            try and runs no hook; ``None`` retries without end.
    """

    def __init__(
        self,
        server_id: str,
        *,
        spinup: Spinup | None = None,
        connect_timeout: float | None = CONNECT_TIMEOUT,
    ) -> None:
        if connect_timeout is not None and connect_timeout < 0:
            raise ValueError("connect_timeout must not be negative")
        self.server_id = server_id
        self.spinup = spinup
        self.connect_timeout = connect_timeout

    async def connect(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.BaseTransport:
        """Connect, with ``factory`` making the protocol of the connection that succeeds.

        Cancelling it is safe: a socket being connected is closed, a running async hook is
        cancelled (a synchronous one runs on in its thread).

        Raises:
            ConnectError: no server answered by the deadline (``__cause__``: the last error),
                the server runs as another user, or the hook raised or outlived the deadline.
            ValueError: the id gives an unusable socket path.
        """
        path = address(self.server_id).socket
        loop = asyncio.get_running_loop()
        timeout = self.connect_timeout
        deadline = None if timeout is None else loop.time() + timeout
        spinup = self.spinup
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
            logger.debug("jitpc: no server at %s yet (%s); trying again", path, last_error)
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
