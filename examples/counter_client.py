"""Call the typed counter server, starting it first if it is not running.

    python examples/counter_client.py [ID]

The spinup hook starts ``counter_server.py`` as a detached process (its own session, no shared
stdio), so the server outlives this client and serves the next one; it spins itself down once
it has been idle for five seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import jitpc
from counter_api import Get, Inc

SERVER = Path(__file__).with_name("counter_server.py")


def spawn_server(server_id: str) -> None:
    """Start the server detached from this process, with the same environment (and TMPDIR)."""
    env = dict(os.environ)
    # The server must import the same jitpc as this client.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(jitpc.__file__).parent.parent), env.get("PYTHONPATH")])
    )
    options: dict[str, object] = {}
    if sys.platform == "win32":
        options["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        options["start_new_session"] = True
    subprocess.Popen(
        [sys.executable, str(SERVER), server_id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        **options,  # type: ignore[call-overload]
    )


async def main(server_id: str) -> None:
    async with jitpc.connect(server_id, spinup=lambda: spawn_server(server_id)) as client:
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
