"""The worker threads that run ``thread=True`` handlers and synchronous spinup hooks.

One small pool per process, of daemon threads: a handler that never returns occupies a worker
but never holds the interpreter at exit (``concurrent.futures`` joins its workers at exit, so a
hung handler would keep a spun-down daemon's process alive). Workers start on demand, up to
:data:`MAX_WORKERS`; past that, work waits in the queue. A forked child starts with an empty
pool of its own (the parent's threads do not exist there).

Both I/O layers use the one pool: :func:`run_in_thread` for asyncio (a future of the running
loop gets the outcome), :func:`submit` for the blocking layer (a callback gets it, in the
worker). asyncio is imported only by the asyncio layer's functions, when they run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

try:
    from _queue import SimpleQueue  # what queue.SimpleQueue is, without queue's own imports
except ImportError:  # pragma: no cover (another Python)
    from queue import SimpleQueue


TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    import asyncio
    from typing import Any, TypeVar

    T = TypeVar("T")
    #: A job: the function, and what is told its outcome (``ok``, the result or the exception).
    _Job = tuple[Callable[[], Any], Callable[[bool, Any], object]]

__all__ = ["MAX_WORKERS", "run_in_own_thread", "run_in_thread", "settle_threadsafe", "submit"]

#: Worker threads at most, for the whole process.
MAX_WORKERS = 16

_lock = threading.Lock()
_jobs: SimpleQueue[_Job] = SimpleQueue()
_workers = 0
_idle = 0


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # cancelled meanwhile: the result is dropped
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def settle_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], ok: bool, value: Any
) -> None:
    """From another thread: give ``future`` (of ``loop``) its result (``ok``) or exception,
    unless it is done by then; nothing if the loop has closed (nobody waits any more)."""
    try:
        loop.call_soon_threadsafe(_settle, future, ok, value)
    except RuntimeError:
        pass


def run_in_own_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run ``fn()`` in a daemon thread of its own, for a wait that may be long and must not
    hold one of the pool's workers; a future of the running loop gets its outcome.

    Cancelling the future stops the wait for it, not the thread."""
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result: Any = fn()
        except BaseException as exc:
            settle_threadsafe(loop, future, False, exc)
        else:
            settle_threadsafe(loop, future, True, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _work() -> None:
    global _idle
    while True:
        fn, done = _jobs.get()
        try:
            result, ok = fn(), True
        except BaseException as exc:
            result, ok = exc, False
        try:
            done(ok, result)
        except BaseException:  # (a callback's bug must not kill the worker)
            pass
        del fn, done, result
        with _lock:
            _idle += 1


def run_in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run ``fn(*args)`` in a worker thread; a future of the running loop gets its outcome.

    Cancelling the future does not stop the thread: its result is dropped when it comes.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    submit(lambda: fn(*args), lambda ok, value: settle_threadsafe(loop, future, ok, value))
    return future


def submit(fn: Callable[[], Any], done: Callable[[bool, Any], object]) -> None:
    """Run ``fn()`` in a worker thread, then ``done(ok, value)`` there: ``ok`` and the result,
    or not ``ok`` and the exception (any ``BaseException``)."""
    global _workers, _idle
    with _lock:
        # Each job takes an idle worker, or a new one while there are fewer than the cap.
        start = False
        if _idle:
            _idle -= 1
        elif _workers < MAX_WORKERS:
            _workers += 1
            start = True
    _jobs.put((fn, done))
    if start:
        threading.Thread(target=_work, name="jitpc worker", daemon=True).start()


def _after_fork() -> None:
    global _jobs, _workers, _idle, _lock
    _lock = threading.Lock()
    _jobs = SimpleQueue()
    _workers = _idle = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
