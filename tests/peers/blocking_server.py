"""A server whose event loop can be blocked on purpose: ``blocking_server.py ID``.

Prints ``listening``; ``block`` prints ``blocked`` and then blocks the whole event loop until a
line arrives on stdin, so nothing is accepted meanwhile and the listen backlog fills up.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import jitpc


def serve(client: jitpc.Client) -> None:
    client.respond("echo", lambda params: params)

    def block(params: Any) -> None:
        print("blocked", flush=True)
        sys.stdin.readline()

    client.respond("block", block)


async def main(server_id: str) -> None:
    server = await jitpc.listen(server_id, on_client=serve, spindown_timeout=0.5)
    assert server is not None
    print("listening", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
