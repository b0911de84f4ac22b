"""A typed counter server: ``python examples/counter_server.py [ID]``.

Started on demand by ``counter_client.py``; holds the id alone and spins itself down after five
seconds without clients. Its methods are declared in ``counter_api.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import jitpc
from counter_api import Counter, Get, Inc, Reset

counts: dict[str, int] = {}


async def main(server_id: str) -> None:
    server = await jitpc.listen(server_id, spindown_timeout=5.0)
    if server is None:
        return  # another process already serves this id: nothing to do

    @server.method
    def inc(params: Inc) -> Counter:
        counts[params.key] = counts.get(params.key, 0) + params.by
        return Counter(key=params.key, count=counts[params.key])

    @server.method
    def get(params: Get) -> Counter:
        return Counter(key=params.key, count=counts.get(params.key, 0))

    @server.method
    def reset(params: Reset) -> None:
        counts.clear()

    await server.wait_closed()


if __name__ == "__main__":
    # Its output goes to <tmpdir>/<id>.log (jitpc.spawn's default; `jitpc logs ID` prints it).
    # jitpc's records name the server id and the server's number for the client.
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s [%(jitpc_id)s client %(jitpc_client)s] %(message)s",
            defaults={"jitpc_id": "-", "jitpc_client": "-"},  # for records not from jitpc
        )
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "jitpc-counter-demo"))
