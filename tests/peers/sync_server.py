"""A jitpc server for the ``jitpc.sync`` tests: ``sync_server.py ID``.

Prints ``listening`` on stdout, then serves until killed (no spindown). Methods: ``echo``
returns its params; ``pid`` the process id; ``hang`` prints ``hang TAG`` (its params) on stdout
and never returns; ``cancelled`` waits until the ``hang`` of the tag it is given has been
cancelled and returns ``"cancelled"`` (``"never received"`` if no such ``hang`` came first on
this connection); ``ask`` requests ``params["method"]`` from the calling client and returns its
result.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

import jitpc


def serve_client(client: jitpc.Client) -> None:
    received: set[str] = set()
    started: set[str] = set()
    cancelled: dict[str, asyncio.Event] = {}

    def was_cancelled_event(tag: str) -> asyncio.Event:
        return cancelled.setdefault(tag, asyncio.Event())

    def hang(tag: str) -> Coroutine[Any, Any, None]:
        # A plain function, so that the request is recorded the moment it is dispatched, even
        # if it is cancelled before its coroutine gets to run.
        received.add(tag)
        return hanging(tag)

    async def hanging(tag: str) -> None:
        started.add(tag)
        print(f"hang {tag}", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            was_cancelled_event(tag).set()
            raise

    async def was_cancelled(tag: str) -> str:
        if tag not in received:
            return "never received"
        if tag not in started:
            # Its handler task was scheduled before this one, so it has had its first step: it
            # was cancelled before it began (the cancel came in the same read as the request).
            return "cancelled"
        await was_cancelled_event(tag).wait()
        return "cancelled"

    async def ask(params: Any) -> Any:
        return await client.request(params["method"], params.get("params"))

    client.respond("echo", lambda params: params)
    client.respond("pid", lambda params: os.getpid())
    client.respond("hang", hang)
    client.respond("cancelled", was_cancelled)
    client.respond("ask", ask)


async def main(server_id: str) -> int:
    server = await jitpc.listen(server_id, on_client=serve_client, spindown=False)
    if server is None:
        print("busy", flush=True)
        return 3
    print("listening", flush=True)
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
