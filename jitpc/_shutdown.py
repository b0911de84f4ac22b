"""Close what jitpc left open when the event loop shuts down.

"Auto unref", in asyncio terms: a program whose ``asyncio.run(main())`` returns while a client
or server is still open must end quietly, with no ``ResourceWarning`` for an unclosed socket and
no pending task. asyncio has no hook for "the loop is about to close", but both
``asyncio.run`` and ``asyncio.Runner.close`` (and uvloop's) call ``loop.shutdown_asyncgens()``,
which closes every async generator the loop has seen start. So each loop gets one idle async
generator, started by hand (no task is created), whose ``finally`` closes the loop's open
jitpc objects. A loop closed without ``shutdown_asyncgens()`` simply drops it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import Protocol

__all__ = ["Closable", "track"]


class Closable(Protocol):
    def _abort_at_shutdown(self) -> None: ...


class _Registry:
    __slots__ = ("__weakref__", "guard", "objects")

    def __init__(self) -> None:
        self.objects: weakref.WeakSet[Closable] = weakref.WeakSet()
        self.guard: AsyncGenerator[None, None] | None = None

    def close_all(self) -> None:
        for obj in list(self.objects):
            obj._abort_at_shutdown()
        self.objects.clear()


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = (
    weakref.WeakKeyDictionary()
)


async def _guard(registry: _Registry) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        registry.close_all()


def track(loop: asyncio.AbstractEventLoop, obj: Closable) -> None:
    """Have ``obj._abort_at_shutdown()`` called when ``loop`` shuts down its async generators.

    Must be called from a coroutine or callback running on ``loop``.
    """
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = _Registry()
        # Advancing the generator to its first yield registers it with the running loop's
        # asyncgen hooks; it then waits there until shutdown_asyncgens() closes it.
        guard = registry.guard = _guard(registry)
        try:
            guard.asend(None).send(None)
        except StopIteration:
            pass
    registry.objects.add(obj)
