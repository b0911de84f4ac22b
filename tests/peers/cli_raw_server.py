"""A hand-written server for the CLI tests: ``cli_raw_server.py ID REPLY``.

Listens on the id's socket without jitpc's server (no lock file), prints ``listening``, then
for each message it reads prints its ``method`` as JSON on stdout, and answers each request
with the line ``{"id":<its id>,REPLY}``: ``REPLY`` is raw JSON text such as ``"result":{}`` or
``"error":{"message":"Unknown method: rpc.status"}`` (what Node jitpc 2.2.7 answers), so a
test can send what neither jitpc would write, and see which methods the CLI sent.
"""

from __future__ import annotations

import asyncio
import json
import sys

from jitpc._paths import address


async def main(server_id: str, reply: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            print(json.dumps(message.get("method")), flush=True)
            if message.get("id") is not None:
                writer.write(f'{{"id":{json.dumps(message["id"])},{reply}}}\n'.encode())
        writer.close()

    server = await asyncio.start_unix_server(serve, address(server_id).socket)
    async with server:
        print("listening", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
