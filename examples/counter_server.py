"""A counter server: ``python examples/counter_server.py [ID]``.

Started on demand by ``counter_client.py``; holds the id alone and spins itself down after five
seconds without clients. Methods: ``inc`` (params ``{"key": str}``) and ``get``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import jitpc

counts: dict[str, int] = {}


def serve(client: jitpc.Client) -> None:
    @client.respond("inc")
    def inc(params: Any) -> dict[str, Any]:
        key = params["key"]
        counts[key] = counts.get(key, 0) + 1
        return {"key": key, "count": counts[key]}

    @client.respond("get")
    def get(params: Any) -> dict[str, Any]:
        key = params["key"]
        return {"key": key, "count": counts.get(key, 0)}


async def main(server_id: str) -> None:
    server = await jitpc.listen(server_id, on_client=serve, spindown_timeout=5.0)
    if server is None:
        return  # another process already serves this id: nothing to do
    await server.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "jitpc-counter-demo"))
