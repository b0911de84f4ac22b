"""A build server that reports progress to its caller: ``python examples/progress_server.py ID``.

Started on demand by ``progress_client.py``. The ``build`` handler takes, besides its params,
the calling ``jitpc.Client`` (found by its annotation): the server's end of that caller's
connection, on which it notifies ``progress`` while it works. (``await caller.call(...)`` would
ask the client something and wait for its answer, the same way.) When the caller gives up, by
Ctrl-C, a timeout or by going away, the handler is cancelled: the work stops.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import jitpc
from progress_api import Build, Built, Progress

log = logging.getLogger("progress")


async def main(server_id: str) -> None:
    server = await jitpc.listen(server_id, spindown_timeout=5)
    if server is None:
        return  # another process serves this id

    @server.method
    async def build(params: Build, caller: jitpc.Client) -> Built:
        log.info("client %d: building %s in %d steps", caller.id, params.target, params.steps)
        done = 0
        try:
            while done < params.steps:
                await asyncio.sleep(0.1)  # stands for a step of real work
                done += 1
                caller.notify(Progress(done=done, total=params.steps, what=f"step {done}"))
        except asyncio.CancelledError:  # the caller cancelled the request, or went away
            log.info("client %d: build cancelled after %d steps", caller.id, done)
            raise
        log.info("client %d: built %s", caller.id, params.target)
        return Built(steps=done, artifact=f"{params.target}.tar")

    await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "jitpc-progress-demo"))
