"""The typed variant of the echo benchmark: pydantic models validated at both ends.

The same two params shapes as the untyped workloads, each a ``jitpc.Method`` whose result model
is the echo: the client builds (validates) the params model, the server validates the params and
builds the result model, the client validates the result.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import jitpc


class Small(BaseModel):
    key: str
    n: int


class Blob(BaseModel):
    key: str
    blob: str


class EchoSmall(jitpc.Method[Small], method="echo"):
    key: str
    n: int


class EchoBlob(jitpc.Method[Blob], method="echo-blob"):
    key: str
    blob: str


def register(server: jitpc.Server) -> None:
    @server.method
    def echo(params: EchoSmall) -> Small:
        return Small(key=params.key, n=params.n)

    @server.method
    def echo_blob(params: EchoBlob) -> Blob:
        return Blob(key=params.key, blob=params.blob)


async def call(client: jitpc.Client, params: dict[str, Any]) -> Small | Blob:
    """One typed echo of ``params`` (either shape)."""
    if "blob" in params:
        return await client.call(EchoBlob(key=params["key"], blob=params["blob"]))
    return await client.call(EchoSmall(key=params["key"], n=params["n"]))
