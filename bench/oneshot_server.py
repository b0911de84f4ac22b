"""The warm daemon of bench/oneshot.py: one jitpc for Python server, serving until stdin closes.

Not meant to be run by hand; bench/oneshot.py starts it with ``TMPDIR`` at its private
directory::

    python oneshot_server.py ID    prints {"ready": true}, then serves ID until stdin ends

It answers ``echo`` (untyped: a responder returning its params, registered on every client) and
``echo_typed`` (typed: ``EchoTyped`` params, an ``Echoed`` result, validated here as in any
typed handler). The models are the ones bench/oneshot_typed_sync.py defines, as a user's
client would define its own copy of the server's API.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import BaseModel

import jitpc


class Echoed(BaseModel):
    a: int


class EchoTyped(jitpc.Method[Echoed], method="echo_typed"):
    a: int


def emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(server_id: str) -> int:
    def on_client(client: jitpc.Client) -> None:
        client.respond("echo", lambda params: params)

    server = await jitpc.listen(server_id, on_client=on_client, spindown=False)
    if server is None:
        emit({"error": f"id {server_id} is already served"})
        return 3

    @server.method
    def echo_typed(params: EchoTyped) -> Echoed:
        return Echoed(a=params.a)

    emit({"ready": True})
    # The driver holds our stdin open; when it goes away (even killed), so do we.
    await until_stdin_closes()
    await server.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: oneshot_server.py ID\n")
        return 2
    return asyncio.run(serve(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
