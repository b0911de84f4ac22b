"""Backpressure: what one peer can make the other hold is bounded, and others are served."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

import jitpc
from jitpc._connection import MAX_IN_FLIGHT

pytestmark = pytest.mark.anyio


async def test_in_flight_cap_stops_reading_until_handlers_finish(jitpc_id: str) -> None:
    entered = 0
    at_cap = asyncio.Event()
    release = asyncio.Event()

    def on_client(client: jitpc.Client) -> None:
        async def hold(params: Any) -> Any:
            nonlocal entered
            entered += 1
            if entered == MAX_IN_FLIGHT:
                at_cap.set()
            await release.wait()
            return params

        client.respond("hold", hold)
        client.respond("echo", lambda params: params)

    total = MAX_IN_FLIGHT + 500
    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server, jitpc.connect(jitpc_id) as flooder, jitpc.connect(jitpc_id) as other:
        calls = [asyncio.ensure_future(flooder.request("hold", i)) for i in range(total)]
        await at_cap.wait()
        # A full round trip for another client: by then the server has handled all it had
        # read from the flooder, and it reads no more from it.
        assert await other.request("echo", "served") == "served"
        assert entered == MAX_IN_FLIGHT
        release.set()
        assert await asyncio.gather(*calls) == list(range(total))
        assert entered == total


async def test_peer_that_never_reads_is_not_read_either(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    handled = 0

    def on_client(client: jitpc.Client) -> None:
        def echo(params: Any) -> Any:
            nonlocal handled
            handled += 1
            return params

        client.respond("echo", echo)
        client.respond("ping", lambda params: params)

    line = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":"' + b"x" * 1000 + b'"}\n'
    count = 50_000  # 50 MB of requests, about 50 MB of answers
    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        loop = asyncio.get_running_loop()
        flooder = socket.socket(socket.AF_UNIX)
        flooder.setblocking(False)
        await loop.sock_connect(flooder, str(jitpc_tmpdir / f"{jitpc_id}.sock"))
        writing = asyncio.ensure_future(loop.sock_sendall(flooder, line * count))
        try:
            async with jitpc.connect(jitpc_id) as other:
                # One event loop runs the flooder's writes, the server and this client: while
                # the server reads the flooder, every loop turn makes progress. Round trips
                # with no progress in between mean the server stopped reading it.
                before = -1
                while handled != before:
                    before = handled
                    for i in range(3):
                        assert await other.request("ping", i) == i
            stalled_at = handled
            assert 0 < stalled_at < count
            assert not writing.done()
            # Once the flooder reads its answers, everything is answered.
            received = 0
            while received < count:
                chunk = await loop.sock_recv(flooder, 1 << 20)
                assert chunk
                received += chunk.count(b"\n")
            await writing
        finally:
            writing.cancel()
            flooder.close()
    assert handled == count
