"""Race for an id: ``race_listen.py ID``. Prints ``ready``, waits for a line on stdin, calls
``listen``, prints ``won`` or ``lost``; the winner serves ``echo`` until stdin closes."""

from __future__ import annotations

import asyncio
import sys

import jitpc


async def main(server_id: str) -> None:
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    server = await jitpc.listen(
        server_id, on_client=lambda c: c.respond("echo", lambda p: p), spindown=False
    )
    print("won" if server else "lost", flush=True)
    if server is not None:
        await loop.run_in_executor(None, sys.stdin.read)
        await server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
