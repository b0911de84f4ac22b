"""Call the typed counter server, starting it first if it is not running.

    python examples/counter_client.py [ID]

``jitpc.spawn`` starts ``counter_server.py ID`` as a detached daemon (its own session, no shared
stdio, output to ``<tmpdir>/<id>.log``) and waits until it listens, so the server outlives this
client and serves the next one; it spins itself down once it has been idle for five seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import jitpc
from counter_api import Get, Inc

SERVER = Path(__file__).with_name("counter_server.py")
Spinup = Callable[[], Awaitable[None]]


def spawn(server_id: str) -> Spinup:
    """A spinup hook that starts the server detached (its own session, stdin from the null
    device, output to ``<tmpdir>/<id>.log``) and returns once it says it listens."""
    env = dict(os.environ)  # with the same TMPDIR
    # The server must import the same jitpc as this client.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(jitpc.__file__).parent.parent), env.get("PYTHONPATH")])
    )
    return jitpc.spawn([sys.executable, str(SERVER), server_id], env=env)


async def main(server_id: str) -> None:
    async with jitpc.connect(server_id, spinup=spawn(server_id)) as client:
        for _ in range(3):
            counter = await client.call(Inc(key="demo"))  # a Counter, to mypy and at run time
            print(f"inc -> {counter!r}")
        print(f"get -> {await client.call(Get(key='demo'))!r}")
        try:
            await client.request("inc", {"key": "demo", "by": 0})
        except jitpc.InvalidParams as exc:
            print(f"inc by 0 -> {type(exc).__name__} {exc.code}: {exc.data}")
        try:
            await client.request("nope")
        except jitpc.MethodNotFound as exc:
            print(f"nope -> {exc!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "jitpc-counter-demo"))
