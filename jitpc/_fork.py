"""Fork without exec: a forked child lets go of every descriptor jitpc holds.

A process that forks (``os.fork()``, multiprocessing's 'fork' start method) gives the child a
copy of each of its descriptors. Python's are close-on-exec, not close-on-fork, so a child that
does not exec would hold, for as long as it lives:

* the id's lock. It is an open file description lock (``flock`` on macOS and the BSDs), owned
  by the description, which the child's copy keeps open: the id would stay locked after its
  server exits.
* the listening socket and each connection, on either side: the peer would not see a
  connection end when its server (or client) dies, and a pending request would hang.

So right after a fork the child closes its copies, here, with ``os.close``: the loop that owns
them does not run in the child and is never called. Only the child's copies go: closing a copy
neither unlocks the lock (the parent's descriptor keeps the description, and its lock, alive)
nor unlinks anything, and the parent's connections are untouched. The lock, the listener and
the connecting socket are tracked from their creation, a connection from ``connection_made``;
a connection accepted in a loop turn before the fork but not made yet is found by its local
address, the path of one of our listeners (listing /proc/self/fd, or /dev/fd).

The child does this as its first act (the hook runs before ``os.fork()`` returns there), but
it may run some time after its parent has gone on: if the parent closes (or dies) right after
forking, the id may stay locked, and its connections open, until the child has been
scheduled. Nothing waits for that; a client's back-off covers it.

Something in the child may close such a number again later (an object of the parent's being
finalised), when the number may name a new file of the child's. A Python socket object is
detached before its descriptor is closed, and the lock forgets its own; a number that has
another owner we cannot reach (a libuv handle of uvloop's closes its fd if it is ever
deallocated) gets /dev/null dup'ed over it instead, so that it stays taken.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import weakref

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Protocol

    class Holder(Protocol):
        """Holds a descriptor: ``fileno()`` is -1 once closed. A Python socket, or a Lock."""

        def fileno(self) -> int: ...


__all__ = ["sole_owner", "track", "track_listener", "track_transport"]


# Each holder, and whether it alone may close its number (so detaching it is enough).
_holders: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
# A transport's socket, for as long as its owner (the connection) lives: the sockets asyncio
# and uvloop hand out are not weakly referenceable.
_transports: weakref.WeakKeyDictionary[Any, tuple[Any, bool]] = weakref.WeakKeyDictionary()
# Listening sockets, and their paths: a socket bound to one is ours even before it is tracked.
_listening: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


def sole_owner(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s transports use the socket objects they are given, and nothing else
    closes their descriptors (asyncio's loops; uvloop's libuv handles also hold theirs)."""
    import asyncio  # (here: the blocking layer, which never calls this, never imports it)

    return isinstance(loop, asyncio.BaseEventLoop)


def track(holder: Holder, *, sole: bool = True) -> None:
    """Close ``holder``'s descriptor in a forked child, as long as ``holder`` lives."""
    _holders[holder] = sole


def track_listener(sock: socket.socket, path: str, *, sole: bool) -> None:
    """:func:`track` for a listening socket bound to ``path``."""
    _holders[sock] = sole
    _listening[sock] = path


def track_transport(owner: object, transport: asyncio.BaseTransport) -> None:
    """Close ``transport``'s socket in a forked child, as long as ``owner`` lives."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    # asyncio hands out a TransportSocket wrapping the transport's own socket, the only thing
    # that closes it; uvloop a PseudoSocket over a libuv handle's fd.
    inner = getattr(sock, "_sock", None)
    _transports[owner] = (inner, True) if isinstance(inner, socket.socket) else (sock, False)


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:
        pass


if sys.platform != "win32":  # (Windows has no fork)

    def _after_fork_in_child() -> None:
        close: set[int] = set()
        cover: set[int] = set()
        paths = {path for sock, path in _listening.items() if sock.fileno() >= 0}
        holders = list(_holders.items()) + list(_transports.values())
        for holder, sole in holders:
            fd = holder.fileno()
            if fd < 0:
                continue
            if sole or isinstance(holder, socket.socket):
                holder.detach()  # (uvloop's PseudoSocket cannot be detached: it is never sole)
            (close if sole else cover).add(fd)
        close -= cover
        if paths:
            cover |= _stray_accepted(paths, close | cover)
        for fd in close:
            _quietly(os.close, fd)
        if cover:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            for fd in cover:
                _quietly(os.dup2, null, fd, False)
            os.close(null)

    def _stray_accepted(paths: set[str], known: set[int]) -> set[int]:
        """The descriptors, other than ``known``, of sockets bound to our listeners' ``paths``:
        connections accepted but not made yet, so not tracked (a loop accepts in one turn and
        calls ``connection_made`` in a later one)."""
        try:
            names = os.listdir("/proc/self/fd" if sys.platform == "linux" else "/dev/fd")
        except OSError:
            return set()
        stray = set()
        for name in names:
            fd = int(name)
            if fd in known:
                continue
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
                sock = socket.socket(fileno=fd)
            except OSError:
                continue  # not a socket, or the listing's own descriptor, closed since
            try:
                if sock.family == socket.AF_UNIX and sock.getsockname() in paths:
                    stray.add(fd)
            except OSError:
                pass
            finally:
                sock.detach()
        return stray

    os.register_at_fork(after_in_child=_after_fork_in_child)
