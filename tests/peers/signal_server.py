"""A server that serves forever: ``signal_server.py ID [--own-handler] [--uvloop]``.

Prints ``listening`` once it listens and ``handling`` when a ``hang`` request starts (it waits
for good). With ``--own-handler`` it first sets a SIGTERM handler of its own, which prints
``own handler SIGTERM closed=BOOL`` and exits with status 7. It prints ``returned`` if
``serve_forever()`` returns. SIGINT and SIGTERM start with Python's default handlers, even if
the test run inherited them ignored.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType
from typing import Any

import jitpc


async def main(server_id: str, own_handler: bool) -> int:
    server = await jitpc.listen(server_id, spindown=False)
    assert server is not None

    if own_handler:

        def own(signum: int, _frame: FrameType | None) -> None:
            print(f"own handler {signal.Signals(signum).name} closed={server.closed}", flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, own)

    @server.on_client
    def serve(client: jitpc.Client) -> None:
        async def hang(_params: Any) -> None:
            print("handling", flush=True)
            await asyncio.Event().wait()

        client.respond("hang", hang)

    print("listening", flush=True)
    await server.serve_forever()
    print("returned", flush=True)
    return 0


if __name__ == "__main__":
    # The dispositions of a program started from a terminal, whatever this one inherited: a
    # test run started in the background of a non-interactive shell (``pytest ... &``) hands
    # SIGINT down ignored, and then neither Python nor asyncio.run sets a SIGINT handler, so
    # serve_forever() would close on SIGINT and deliver it again only to SIG_IGN (exit 0).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    coro = main(sys.argv[1], "--own-handler" in sys.argv[2:])
    if "--uvloop" in sys.argv[2:]:
        import uvloop

        sys.exit(uvloop.run(coro))
    sys.exit(asyncio.run(coro))
