"""A daemon for the spawn tests: ``spawn_daemon.py ID STARTS [--crash CODE] [--gate FIFO]``.

Appends ``PID`` to the file STARTS (one line per daemon started, so a test counts them), says
hello on stdout and stderr (which go to its log), then, with ``--crash``, exits with CODE
before listening, or, with ``--gate``, reads the FIFO to its end first. Then it listens with
spindown off (``busy`` on stdout if another process serves the id) and answers ``pid``,
``ready_env`` (its JITPC_READY_FD, which listen() must have removed) and ``fds`` (what its
descriptors name); a ``quit`` notification closes the server, and the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import jitpc


def fds(params: object) -> dict[str, str]:
    names = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            names[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the directory's own descriptor
    return names


def start(args: argparse.Namespace) -> int | None:
    """What the daemon does before it listens; an exit code if it goes no further."""
    with open(args.starts, "a") as out:
        out.write(f"{os.getpid()}\n")
    print(f"daemon {os.getpid()} on stdout", flush=True)
    print(f"daemon {os.getpid()} on stderr", file=sys.stderr, flush=True)
    if args.crash is not None:
        print("crashing on purpose", file=sys.stderr, flush=True)
        return int(args.crash)
    if args.gate:
        with open(args.gate) as gate:
            gate.read()
    return None


async def serve(server_id: str) -> int:
    server = await jitpc.listen(server_id, spindown=False)
    if server is None:
        print("busy", flush=True)
        return 0
    closing: list[asyncio.Task[None]] = []

    def quit(params: object) -> None:
        closing.append(asyncio.ensure_future(server.close()))

    def on_client(client: jitpc.Client) -> None:
        client.respond("pid", lambda params: os.getpid())
        client.respond("ready_env", lambda params: os.environ.get("JITPC_READY_FD"))
        client.respond("fds", fds)
        client.respond("quit", quit)

    server.on_client(on_client)
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("id")
    parser.add_argument("starts")
    parser.add_argument("--crash", type=int)
    parser.add_argument("--gate")
    args = parser.parse_args()
    code = start(args)
    sys.exit(code if code is not None else asyncio.run(serve(args.id)))
