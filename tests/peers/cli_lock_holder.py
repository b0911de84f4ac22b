"""Holds a jitpc id's lock without listening, as a server does between its lock and its
socket: ``cli_lock_holder.py ID``. Prints ``locked`` (or ``busy``), then holds the lock until
stdin ends."""

from __future__ import annotations

import sys

from jitpc._lock import try_acquire
from jitpc._paths import address

if __name__ == "__main__":
    lock = try_acquire(address(sys.argv[1]).lock)
    print("busy" if lock is None else "locked", flush=True)
    sys.stdin.read()
