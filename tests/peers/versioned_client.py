"""A client that wants a version, for the version tests' herd:
``versioned_client.py ID VERSION STARTS``.

Connects to ID asking for VERSION with ``on_mismatch="restart"``, its spinup hook
``jitpc.spawn`` of ``versioned_daemon.py VERSION ID --starts STARTS``; prints ``VERSION PID``
from the ``rpc.status`` of the server it ends up with, and exits (1, with the error on stderr,
if the connect failed).
"""

from __future__ import annotations

import asyncio
import os
import sys

import jitpc

HERE = os.path.dirname(os.path.abspath(__file__))


async def main(server_id: str, version: str, starts: str) -> int:
    daemon = [sys.executable, os.path.join(HERE, "versioned_daemon.py"), version, server_id]
    hook = jitpc.spawn([*daemon, "--starts", starts])
    try:
        async with jitpc.connect(
            server_id, version=version, on_mismatch="restart", spinup=hook, connect_timeout=60
        ) as client:
            status = await client.request("rpc.status")
    except jitpc.ConnectError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(status["version"], status["pid"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
