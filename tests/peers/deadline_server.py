"""A server for the deadline tests: ``deadline_server.py ID [--gate]``.

Prints ``listening PID`` (or ``busy``) once it serves the id. With ``--gate`` it first prints
``ready`` and calls ``listen`` only after a line on stdin: the test decides when the server
becomes reachable. Methods (params are objects with a ``token``):

* ``forever``, and the typed ``forever-typed``: print ``waiting TOKEN`` and never answer; when
  the handler is cancelled it prints ``cancelled TOKEN`` and records it.
* ``deaf``: prints ``waiting TOKEN`` and never answers, even when cancelled: it swallows every
  cancellation (printing ``ignored TOKEN``), as a handler that ignores ``$/cancelRequest``.
* ``late``: prints ``waiting TOKEN``; when cancelled it answers anyway, with
  ``{"late": TOKEN}``, and prints ``answered TOKEN``: a late answer for the caller to discard.
* ``record``: ``{"started": [...], "cancelled": [...]}``, the tokens so far, in order.
* ``echo``: returns its params.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import jitpc

started: list[str] = []
cancelled: list[str] = []


class Forever(jitpc.Method[str], method="forever-typed"):
    token: str


def say(*words: object) -> None:
    print(*words, flush=True)


async def wait_forever(token: str) -> None:
    started.append(token)
    say("waiting", token)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(token)
        say("cancelled", token)
        raise


async def deaf(params: Any) -> Any:
    token = params["token"]
    say("waiting", token)
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            say("ignored", token)


async def late(params: Any) -> Any:
    token = params["token"]
    say("waiting", token)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        say("answered", token)
    return {"late": token}


def serve_client(client: jitpc.Client) -> None:
    client.respond("forever", lambda params: wait_forever(params["token"]))
    client.respond("deaf", deaf)
    client.respond("late", late)
    client.respond("record", lambda params: {"started": started, "cancelled": cancelled})
    client.respond("echo", lambda params: params)


async def main(args: argparse.Namespace) -> int:
    if args.gate:
        say("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    server = await jitpc.listen(args.server_id, on_client=serve_client, spindown=False)
    if server is None:
        say("busy")
        return 3

    @server.method
    async def forever_typed(params: Forever) -> str:
        await wait_forever(params.token)
        return params.token

    say("listening", os.getpid())
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("server_id")
    parser.add_argument("--gate", action="store_true", help="print 'ready', listen on a stdin line")
    sys.exit(asyncio.run(main(parser.parse_args())))
