"""A server that shuts down gracefully on SIGTERM and SIGINT: ``graceful_server.py ID --log PATH``.

The idiom a real daemon uses: ``asyncio.run(main())``, where ``main`` listens, installs signal
handlers that call ``server.close()``, and awaits ``server.wait_closed()``. The methods and the
stdout lines are those of ``ledger_server.py``; it also prints ``signal NAME`` when one arrives.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from ledger_server import Log, State, parse, say, start


async def main() -> int:
    args = parse(sys.argv[1:])
    state = State(Log(args.log))
    server = await start(args, state)
    if server is None:
        return 0
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []

    def on_signal(signum: signal.Signals) -> None:
        say("signal", signum.name)
        closing.append(loop.create_task(server.close()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await server.wait_closed()
    state.log.write("closed")
    say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
