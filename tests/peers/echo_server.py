"""A jitpc server in its own process, for tests: ``echo_server.py ID [SPINDOWN_SECONDS|off]``.

Prints ``listening`` (or ``busy`` when another process serves the id) on stdout, then serves
until it spins down. Methods: ``echo`` returns its params; ``pid`` the process id; ``sleep``
waits ``params`` seconds; ``fail`` raises a remote error with code ``params``; ``ask`` requests
``params["method"]`` from the calling client and returns its result; ``tell`` notifies the
calling client with ``params["method"]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import jitpc


def serve_client(client: jitpc.Client) -> None:
    client.respond("echo", lambda params: params)
    client.respond("pid", lambda params: os.getpid())

    async def sleep(params: Any) -> Any:
        await asyncio.sleep(float(params))
        return params

    def fail(params: Any) -> Any:
        raise jitpc.RemoteError("failed on purpose", params)

    async def ask(params: Any) -> Any:
        return await client.request(params["method"], params.get("params"))

    def tell(params: Any) -> None:
        client.notify(params["method"], params.get("params"))

    client.respond("sleep", sleep)
    client.respond("fail", fail)
    client.respond("ask", ask)
    client.respond("tell", tell)


async def main(server_id: str, spindown: str) -> int:
    server = await jitpc.listen(
        server_id,
        on_client=serve_client,
        spindown=False if spindown == "off" else None,
        spindown_timeout=5.0 if spindown == "off" else float(spindown),
    )
    if server is None:
        print("busy", flush=True)
        return 3
    print("listening", flush=True)
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "5")))
