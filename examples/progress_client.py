"""Start a build on the build server and print its progress as it reports it.

    python examples/progress_client.py TARGET [--steps N] [--timeout S] [--id ID]

The server (``progress_server.py``, started on demand) calls back into this client while it
builds: each ``progress`` notification is answered by the ``Router`` mounted on the client.
Ctrl-C, or ``--timeout``, cancels the request, and so the build on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import jitpc
from progress_api import Build, Progress

SERVER = Path(__file__).with_name("progress_server.py")

callbacks = jitpc.Router()  # what this client answers when the server calls it


@callbacks.method
def progress(params: Progress) -> None:
    print(f"[{params.done}/{params.total}] {params.what}", flush=True)


async def main(args: argparse.Namespace) -> None:
    spawn = jitpc.spawn([sys.executable, str(SERVER), args.id])
    async with jitpc.connect(args.id, spinup=spawn) as client:
        client.mount(callbacks)
        built = await client.call(Build(target=args.target, steps=args.steps), timeout=args.timeout)
        print(f"built {built.artifact} in {built.steps} steps")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Build TARGET, printing its progress.")
    parser.add_argument("target")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--timeout", type=float, help="give up (and cancel) after S seconds")
    parser.add_argument("--id", default="jitpc-progress-demo", help="the build server's id")
    args = parser.parse_args()
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:  # Ctrl-C: asyncio.run cancelled the call, and the build with it
        print("cancelled", file=sys.stderr)
        sys.exit(130)
    except TimeoutError:
        sys.exit(f"no result within {args.timeout:g} s: cancelled")
