"""A full accept backlog: connecting clients retry instead of failing (research T15)."""

from __future__ import annotations

import asyncio
import logging

import pytest

import jitpc
from support import HANG, peer_command, python_env, reap

pytestmark = pytest.mark.anyio

CLIENTS = 1000


class _Retries(logging.Handler):
    """Counts the clients' connect retries; sets an event at the first."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "trying again" in record.getMessage():
            self.count += 1
            self.first.set()


async def test_clients_beyond_a_full_backlog_retry_and_are_all_answered(jitpc_id: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *peer_command("blocking_server.py", jitpc_id),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    logger = logging.getLogger("jitpc")
    retries = _Retries()
    level = logger.level
    logger.addHandler(retries)
    logger.setLevel(logging.DEBUG)
    try:
        assert await proc.stdout.readline() == b"listening\n"
        blocker = jitpc.connect(jitpc_id)
        blocking = asyncio.ensure_future(blocker.request("block"))
        assert await proc.stdout.readline() == b"blocked\n"
        # The server accepts nothing now: its backlog (511) fills, and on Linux the
        # connects beyond it fail with EAGAIN, which asyncio reports as a success on an
        # unconnected socket. The clients must see through that and retry.
        clients = [jitpc.connect(jitpc_id) for _ in range(CLIENTS)]
        calls = [asyncio.ensure_future(c.request("echo", i)) for i, c in enumerate(clients)]
        await retries.first.wait()
        proc.stdin.write(b"go\n")  # unblock the server
        assert await asyncio.gather(*calls) == list(range(CLIENTS))
        await blocking
        print(f"figure: {CLIENTS} clients over a full backlog, {retries.count} connects retried")
        await asyncio.gather(*(client.end() for client in clients), blocker.end())
        await asyncio.wait_for(proc.wait(), HANG)  # it spins down
    finally:
        logger.removeHandler(retries)
        logger.setLevel(level)
        await reap(proc)
