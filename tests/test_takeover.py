"""Temp cleaners: a server whose lock or socket file disappears gives the id up (research T5)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import jitpc

pytestmark = pytest.mark.anyio


def whoami(name: str) -> Any:
    def on_client(client: jitpc.Client) -> None:
        client.respond("who", lambda params: name)

    return on_client


@pytest.mark.parametrize("removed", ["lock", "both"])
async def test_server_that_lost_its_files_stops_and_a_new_one_serves(
    jitpc_id: str, jitpc_tmpdir: Path, removed: str
) -> None:
    lost = asyncio.Event()
    errors: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        lost.set()

    lock = jitpc_tmpdir / f"{jitpc_id}.lock"
    sock = jitpc_tmpdir / f"{jitpc_id}.sock"
    first = await jitpc.listen(jitpc_id, on_client=whoami("first"), on_error=on_error)
    assert first is not None
    # A client that stays connected through it all.
    loyal = jitpc.connect(jitpc_id)
    assert await loyal.request("who") == "first"
    if removed in ("lock", "both"):
        lock.unlink()
    if removed in ("sock", "both"):
        sock.unlink()
    await lost.wait()  # the first server noticed (its periodic check)
    assert "removed or replaced" in str(errors[0])
    second = await jitpc.listen(jitpc_id, on_client=whoami("second"), spindown=False)
    assert second is not None
    async with second:
        async with jitpc.connect(jitpc_id) as newcomer:
            assert await newcomer.request("who") == "second"
        # The first server still finishes with its client, then closes...
        assert await loyal.request("who") == "first"
        await loyal.end()
        await first.wait_closed()
        # ...without touching the second server's socket.
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        async with jitpc.connect(jitpc_id) as later:
            assert await later.request("who") == "second"


async def test_server_whose_socket_was_removed_makes_a_new_one(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    sock = jitpc_tmpdir / f"{jitpc_id}.sock"
    server = await jitpc.listen(jitpc_id, on_client=whoami("first"), spindown=False)
    assert server is not None
    async with server:
        async with jitpc.connect(jitpc_id) as before:
            assert await before.request("who") == "first"
        sock.unlink()
        # It still holds the lock, so the id stays its own...
        assert await jitpc.listen(jitpc_id) is None
        # ...and a client that finds no socket retries (back-off) until the server has
        # noticed and bound a new one: its periodic check comes well before the back-off
        # runs out, on the same event loop.
        async with jitpc.connect(jitpc_id) as after:
            assert await after.request("who") == "first"
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
