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

The sequencing is :mod:`._steps`' (shared with the blocking layer, :mod:`jitpc.sync`); this
module runs it on the event loop (:mod:`._aiosteps`) for :class:`jitpc.Client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._aiosteps import run, run_hook
from ._connection import Connection
from ._steps import (
    BACKOFF,
    CONNECT_TIMEOUT,
    JITTER,
    RESTART_GRACE,
    Expected,
    Plan,
    expect,
)

__all__ = [
    "BACKOFF",
    "CONNECT_TIMEOUT",
    "JITTER",
    "RESTART_GRACE",
    "Connector",
    "Expected",
    "Spinup",
    "expect",
    "run_hook",
]

#: A spinup hook: a sync or async callable that (typically) starts a server process.
Spinup = Callable[[], Awaitable[object] | object]


class Connector(Plan):
    """Connects to the server of ``server_id``; each :meth:`open` call is one connect phase.

    The arguments, and the errors they raise, are :class:`._steps.Plan`'s.
    """

    async def open(self, conn: Connection, new: Callable[[], Connection]) -> Connection:
        """Connect ``conn`` and, with :attr:`expected`, check its server first; the
        connection returned is open and, if checked, passed. ``new`` makes the connection of
        a restarted server's. A connection that fails is destroyed. See
        :meth:`._steps.Plan.phase` for the check, the restart, and what it raises.

        Cancelling it is safe: the connections it made are destroyed (a server asked to stop
        goes on stopping), a running async hook is cancelled (a synchronous one runs on in its
        thread).
        """
        loop = asyncio.get_running_loop()
        opened: Connection = await run(self.phase(conn, loop.time), new)
        return opened
