"""A server that answers ``big`` with ``size`` bytes and, asked ``ask_many``, asks its client
for ``count`` such answers at once: with a client doing the same, both ends have far more
answers unsent to the other than the backpressure bound, at the same time.

    python mutual_server.py ID SIZE COUNT    prints "listening", serves until killed
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import jitpc


async def main() -> None:
    server_id, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def on_client(client: jitpc.Client) -> None:
        client.respond("big", lambda n: "x" * n)

        async def ask_many(params: Any) -> int:
            answers = await asyncio.gather(*(client.request("big", size) for _ in range(count)))
            return sum(map(len, answers))

        client.respond("ask_many", ask_many)

    server = await jitpc.listen(server_id, on_client=on_client, spindown=False)
    assert server is not None
    print("listening", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
