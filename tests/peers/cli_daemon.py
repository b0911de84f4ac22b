"""A jitpc server for the CLI's ls, stop and logs tests: ``cli_daemon.py ID VERSION [--say N]
[--ignore-term]``.

Prints ``line 1`` ... ``line N`` (odd ones on stdout, even ones on stderr: under jitpc.spawn
both go to its log), then listens with ``version=VERSION`` and spindown off and prints
``listening`` (``busy`` if the id is served). It prints ``closed`` once the server has closed,
and exits. Methods, for a server that does not stop gracefully in a controlled way: ``hang``
prints ``hanging`` and never returns (it is cancelled past the shutdown grace); ``wedge``
prints ``wedged`` and blocks the event loop for good, so nothing is answered any more. With
``--ignore-term``, SIGTERM is ignored: only SIGKILL ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from typing import Any

import jitpc


def serve(client: jitpc.Client) -> None:
    async def hang(params: Any) -> None:
        print("hanging", flush=True)
        await asyncio.Event().wait()

    def wedge(params: Any) -> None:
        print("wedged", flush=True)
        threading.Event().wait()  # on the loop's thread: the loop never runs again

    client.respond("hang", hang)
    client.respond("wedge", wedge)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("id")
    parser.add_argument("version")
    parser.add_argument("--say", type=int, default=0)
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for n in range(1, args.say + 1):
        print(f"line {n}", file=sys.stdout if n % 2 else sys.stderr, flush=True)
    server = await jitpc.listen(args.id, on_client=serve, spindown=False, version=args.version)
    if server is None:
        print("busy", flush=True)
        return 0
    print("listening", flush=True)
    await server.wait_closed()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
