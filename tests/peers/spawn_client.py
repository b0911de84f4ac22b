"""A client for the spawn tests: ``spawn_client.py ID STARTS [--gate] [--quit]``.

Connects to ID with ``jitpc.spawn`` starting ``spawn_daemon.py ID STARTS`` and prints the
daemon's pid as ``pid PID``. With ``--gate`` it first prints ``ready`` and waits for a line on
stdin, so that a herd of clients tries at once. With ``--quit`` it then tells the daemon to
quit, waits for the thread that reaps it and prints ``reaped PID`` if no zombie is left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading

import jitpc

DAEMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn_daemon.py")


async def main(args: argparse.Namespace) -> int:
    if args.gate:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    hook = jitpc.spawn([sys.executable, DAEMON, args.id, args.starts])
    async with jitpc.connect(args.id, spinup=hook, connect_timeout=60) as client:
        pid: int = await client.request("pid")
        print(f"pid {pid}", flush=True)
        if args.quit:
            client.notify("quit")
            await client.wait_closed()
    return pid


def reaped(pid: int) -> bool:
    """Whether the thread that waits for the daemon has reaped it (no zombie is left)."""
    for thread in threading.enumerate():
        if thread.name == f"jitpc reaper {pid}":
            thread.join(60)
    return not os.path.exists(f"/proc/{pid}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("id")
    parser.add_argument("starts")
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--quit", action="store_true")
    args = parser.parse_args()
    pid = asyncio.run(main(args))
    if args.quit and reaped(pid):
        print(f"reaped {pid}", flush=True)
