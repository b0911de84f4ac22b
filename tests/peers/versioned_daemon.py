"""A daemon of some version, for the version tests:
``versioned_daemon.py VERSION ID [--variant A|B] [--starts FILE]``.

Listens on ID with ``version=VERSION`` and spindown off, and serves the typed method ``inc``
(a count per key), whose params model is :class:`IncA` (``key: str``) or, with ``--variant B``,
:class:`IncB` (``key: int``): the same method name with another schema; and the typed
notification ``note`` (:class:`Note`), which it prints as ``note TEXT``. Appends its pid to
FILE (one line per daemon, so a test counts the daemons started), then prints ``listening
VERSION PID`` (or ``busy`` if another process serves ID) and serves until it is shut down
(``rpc.shutdown``) or closed. The tests import the two models from here.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import jitpc


class IncA(jitpc.Method[int], method="inc"):
    key: str


class IncB(jitpc.Method[int], method="inc"):
    key: int


class Note(jitpc.Method[None], method="note"):
    text: str


async def serve(version: str, server_id: str, variant: str) -> None:
    server = await jitpc.listen(server_id, spindown=False, version=version)
    if server is None:
        print("busy", flush=True)
        return
    counts: dict[object, int] = {}

    def count(key: object) -> int:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]

    if variant == "B":

        @server.method
        def inc_b(params: IncB) -> int:
            return count(params.key)

    else:

        @server.method
        def inc_a(params: IncA) -> int:
            return count(params.key)

    @server.method
    def note(params: Note) -> None:
        print(f"note {params.text}", flush=True)

    print(f"listening {version} {os.getpid()}", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("version")
    parser.add_argument("id")
    parser.add_argument("--variant", choices=("A", "B"), default="A")
    parser.add_argument("--starts")
    args = parser.parse_args()
    if args.starts:
        with open(args.starts, "a") as out:
            out.write(f"{os.getpid()}\n")
    asyncio.run(serve(args.version, args.id, args.variant))
