"""The asyncio driver of the connect phase's steps (see :mod:`._steps`).

:func:`run` performs each operation the steps yield on the running loop, and sends back its
outcome; everything the phase decides is in the steps. Cancelling :func:`run` throws the
``CancelledError`` into the steps, which clean up (the connections they made are destroyed)
and let it through.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._connection import OPEN
from ._lock import wait_free_at
from ._steps import (
    MAX_LINE,
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
from ._threads import run_in_own_thread, run_in_thread, settle_threadsafe
from ._transport import open_stream

if TYPE_CHECKING:
    from ._steps import Steps

__all__ = ["run", "run_hook"]


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


async def run(steps: Steps, new: Callable[[], Any] | None = None) -> Any:
    """Run ``steps`` to their end on the running loop; ``new`` makes connections (:class:`New`).

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
            value = await _perform(op, new)
        except BaseException as exc:  # (CancelledError too: the steps clean up, and re-raise)
            error = exc


async def _perform(op: Any, new: Callable[[], Any] | None) -> Any:
    kind = type(op)
    if kind is Dial:
        conn = op.conn
        async with asyncio.timeout_at(op.deadline):
            transport = await open_stream(op.path, lambda: conn)
        if conn.state is not OPEN:
            transport.close()  # our connection_made failed: never leave a request hanging
            return False
        return True
    if kind is Sleep:
        await asyncio.sleep(op.delay)
        return None
    if kind is Hook:
        async with asyncio.timeout_at(op.deadline):
            await run_hook(op.hook)
        return None
    if kind is Ask:
        conn = op.conn
        id_, future = conn.send_request(op.method, op.params)
        try:
            async with asyncio.timeout_at(op.deadline):
                return await future
        except (TimeoutError, asyncio.CancelledError):
            conn.cancel(id_)
            raise
    if kind is New:
        assert new is not None
        return new()
    if kind is IsOpen:
        return op.conn.state is OPEN
    if kind is WaitFree:
        path, what = op.path, op.what
        async with asyncio.timeout_at(op.deadline):
            await run_in_own_thread(lambda: wait_free_at(path, what), op.thread)
        return None
    if kind is Scope:
        return asyncio.get_running_loop()
    if kind is Queue:
        turn = op.turn
        if turn.lock is None:
            turn.lock = asyncio.Lock()
        async with asyncio.timeout_at(op.deadline):
            await turn.lock.acquire()
        return None
    if kind is Ready:
        async with asyncio.timeout_at(op.deadline):
            return await _ready(op.fd, op.proc, op.grace)
    if kind is Race:
        return await _race(op, new)
    raise TypeError(f"not a step: {op!r}")


async def _ready(fd: int, proc: Any, grace: float) -> tuple[bytes | None, int | None]:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()
    reaper = Reaper(proc, lambda code: settle_threadsafe(loop, exited, True, code))
    ready = _Readiness(fd)
    try:
        await asyncio.wait((ready.line, exited), return_when=asyncio.FIRST_COMPLETED)
        line = ready.line.result() if ready.line.done() else None
        if line == b"":
            await asyncio.wait((exited,), timeout=grace)
        return line, exited.result() if exited.done() else None
    finally:
        ready.close()
        ready.line.cancel()
        reaper.detach()


class _Readiness:
    """The read end of the readiness pipe: its first line, or ``b""`` at end of file."""

    def __init__(self, fd: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = fd
        self._buffer = bytearray()
        if sys.platform == "win32":
            # The Proactor loop cannot watch an anonymous pipe: a thread reads it, and closes
            # it when the daemon speaks or exits.
            self._fd = None
            self.line = run_in_own_thread(lambda: read_line(fd), "jitpc readiness")
        else:
            self.line = self._loop.create_future()
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._buffer += data
        if data and b"\n" not in self._buffer and len(self._buffer) < MAX_LINE:
            return
        line, newline, _ = bytes(self._buffer).partition(b"\n")
        self.close()
        if not self.line.done():
            self.line.set_result(line if newline else b"")

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)


async def _race(op: Race, new: Callable[[], Any] | None) -> Raced:
    lock = op.lock
    loop = asyncio.get_running_loop()
    free = run_in_own_thread(lambda: wait_free_at(lock), op.thread)
    polling = loop.create_task(run(op.dial, new))
    try:
        await asyncio.wait((free, polling), return_when=asyncio.FIRST_COMPLETED)
        raced = Raced(free.done(), None, polling.done(), None)
        if free.done():
            exc = free.exception()
            if exc is not None:
                if not isinstance(exc, OSError):
                    raise exc
                raced.free_error = exc
        if polling.done():
            raced.dial_error = polling.exception()
            raced.usable = raced.dial_error is None and bool(polling.result())
        return raced
    finally:
        free.cancel()  # the wait, not the thread
        if not polling.done():
            polling.cancel()
            await asyncio.wait((polling,))
