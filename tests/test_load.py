"""F6: many concurrent clients against a server process (the larger run: bench/load.py)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

import jitpc
from ledger import Ledger, children, figure

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        sys.platform != "linux", reason="reads the server's memory from Linux's /proc"
    ),
]


CONNECTIONS = 100
IN_FLIGHT = 64
ROUNDS = 2


async def test_f6_many_concurrent_clients(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    """100 connections opened at once, each keeping 64 requests in flight for two rounds: every
    request answered once, each with its own token and params echoed back (no cross-talk)."""
    ledger = Ledger(jitpc_tmpdir / "executions.log")
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log)
        clients = [jitpc.connect(jitpc_id) for _ in range(CONNECTIONS)]
        started = time.monotonic()
        await asyncio.gather(*(client.open() for client in clients))  # an accept burst
        connected = time.monotonic()

        async def drive(number: int, client: jitpc.Client) -> int:
            mismatched = 0
            for round_ in range(ROUNDS):
                params = [{"echo": [number, round_, k]} for k in range(IN_FLIGHT)]
                endings = await asyncio.gather(
                    *(ledger.request(client, "run", p, group=f"conn{number}") for p in params)
                )
                for p, (kind, result) in zip(params, endings, strict=True):
                    mismatched += kind != "result" or result["echo"] != p["echo"]
            return mismatched

        mismatched = await asyncio.gather(*(drive(n, c) for n, c in enumerate(clients)))
        finished = time.monotonic()
        peak = server.rss_kib("VmHWM")
        for client in clients:
            await client.end()
        assert server.proc.returncode is None
    counts = ledger.assert_exactly_once(unaffected={f"conn{n}" for n in range(CONNECTIONS)})
    requests = CONNECTIONS * IN_FLIGHT * ROUNDS
    figure(
        "F6",
        connections=CONNECTIONS,
        in_flight=IN_FLIGHT,
        requests=requests,
        answered=counts["result"],
        echo_mismatches=sum(mismatched),
        seconds_to_connect_all=round(connected - started, 3),
        requests_per_second=round(requests / (finished - connected)),
        server_peak_rss_kib=peak,
        **counts,
    )
    assert sum(mismatched) == 0 and counts["result"] == requests
