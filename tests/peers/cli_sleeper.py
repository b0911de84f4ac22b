"""A jitpc server for the CLI tests: ``cli_sleeper.py ID``.

Prints ``listening``, then serves without spinning down. ``sleep`` prints ``started``, then
waits until it is cancelled and prints ``cancelled``: a test sees that a request given up by
``--timeout`` is cancelled on the server too.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import jitpc


def serve(client: jitpc.Client) -> None:
    async def sleep(params: Any) -> None:
        print("started", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise

    client.respond("sleep", sleep)


async def main(server_id: str) -> None:
    server = await jitpc.listen(server_id, on_client=serve, spindown=False)
    assert server is not None
    print("listening", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
