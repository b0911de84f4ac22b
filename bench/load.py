"""Load run (fault F6 at scale): many connections x many requests in flight against one server.

Run from the repository root (not part of CI)::

    .venv/bin/python bench/load.py                              # 1,000 connections x 64 in flight
    .venv/bin/python bench/load.py --connections 200 --inflight 16 --rounds 2
    .venv/bin/python bench/load.py --json load.json             # also write the figures

The driver starts one server process and ``--processes`` client processes in a private TMPDIR.
Each client process opens its share of the connections all at once (an accept burst over the
listen backlog) and reports; the driver then samples the server's memory with every connection
open and idle. On "go", each connection keeps ``--inflight`` echo requests in flight for
``--rounds`` rounds; every request carries (process, connection, round, slot) and the answer
must echo exactly that. Printed: connections opened and connect retries (from jitpc's debug log),
the server's RSS with the connections idle, requests issued / answered / mismatched, requests
per second over the run, and the server's peak RSS (VmHWM).

The same file is the children: ``load.py _server ID LOOP`` and ``load.py _client ID N M R LOOP``.
A child exits when its stdin closes, so none outlives the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jitpc

ROOT = Path(__file__).resolve().parent.parent


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_loop(main: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# -- children -------------------------------------------------------------------------------------


async def serve(server_id: str) -> None:
    server = await jitpc.listen(
        server_id, on_client=lambda c: c.respond("echo", lambda p: p), spindown=False
    )
    if server is None:
        print("busy", flush=True)
        return
    print(json.dumps({"listening": os.getpid()}), flush=True)
    await read_line()  # until the driver closes our stdin
    await server.close()


class RetryCounter(logging.Handler):
    """Counts jitpc's debug records of a connect attempt that will be tried again."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("jitpc: no server at"):
            self.retries += 1


async def drive(server_id: str, connections: int, inflight: int, rounds: int) -> None:
    counter = RetryCounter()
    logger = logging.getLogger("jitpc")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    me = os.getpid()
    clients = [jitpc.connect(server_id) for _ in range(connections)]
    started = time.monotonic()
    opened = await asyncio.gather(*(c.open() for c in clients), return_exceptions=True)
    failed = [repr(e) for e in opened if e is not None]
    report = {"opened": connections - len(failed), "connect_failed": failed[:3]}
    report |= {"retries": counter.retries, "seconds": time.monotonic() - started}
    print(json.dumps(report), flush=True)
    await read_line()  # "go"

    async def one(number: int, client: jitpc.Client) -> tuple[int, int, int]:
        answered = mismatched = errors = 0
        for round_ in range(rounds):
            params = [[me, number, round_, k] for k in range(inflight)]
            results = await asyncio.gather(
                *(client.request("echo", p) for p in params), return_exceptions=True
            )
            for p, result in zip(params, results, strict=True):
                if isinstance(result, BaseException):
                    errors += 1
                elif result == p:
                    answered += 1
                else:
                    mismatched += 1
        return answered, mismatched, errors

    started = time.monotonic()
    live = [(n, c) for n, c in enumerate(clients) if not c.closed]
    tallies = await asyncio.gather(*(one(n, c) for n, c in live))
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "issued": len(live) * inflight * rounds,
                "answered": sum(t[0] for t in tallies),
                "mismatched": sum(t[1] for t in tallies),
                "errors": sum(t[2] for t in tallies),
                "seconds": seconds,
            }
        ),
        flush=True,
    )
    await asyncio.gather(*(c.end() for c in clients))
    await read_line()


# -- driver ---------------------------------------------------------------------------------------


def rss_kib(pid: int, key: str) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(key + ":"):
            return int(row.split()[1])
    return -1


async def child(*args: object, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


async def report_line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 600)
    if not line:
        raise RuntimeError(f"child {proc.pid} exited without reporting")
    result: dict[str, Any] = json.loads(line)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    where = tempfile.mkdtemp(prefix="jl", dir="/tmp")
    env = dict(os.environ, TMPDIR=where, PYTHONPATH=str(ROOT))
    server_id = "load"
    procs: list[asyncio.subprocess.Process] = []
    try:
        server = await child("_server", server_id, args.loop, env=env)
        procs.append(server)
        await report_line(server)
        rss_start = rss_kib(server.pid, "VmRSS")
        shares = [args.connections // args.processes] * args.processes
        for i in range(args.connections % args.processes):
            shares[i] += 1
        clients = [
            await child("_client", server_id, n, args.inflight, args.rounds, args.loop, env=env)
            for n in shares
        ]
        procs += clients
        opened = [await report_line(c) for c in clients]
        rss_idle = rss_kib(server.pid, "VmRSS")
        started = time.monotonic()
        for c in clients:
            assert c.stdin is not None
            c.stdin.write(b"go\n")
        results = [await report_line(c) for c in clients]
        seconds = time.monotonic() - started
        issued = sum(r["issued"] for r in results)
        answered = sum(r["answered"] for r in results)
        figures = {
            "connections": args.connections,
            "inflight": args.inflight,
            "rounds": args.rounds,
            "client_processes": args.processes,
            "loop": args.loop,
            "opened": sum(o["opened"] for o in opened),
            "connect_retries": sum(o["retries"] for o in opened),
            "connect_failures": [f for o in opened for f in o["connect_failed"]],
            "seconds_to_open_all": round(max(o["seconds"] for o in opened), 3),
            "server_rss_kib_at_start": rss_start,
            "server_rss_kib_idle_connections": rss_idle,
            "issued": issued,
            "answered": answered,
            "ids_matched": answered == issued,
            "mismatched": sum(r["mismatched"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "seconds": round(seconds, 3),
            "requests_per_second": round(answered / seconds),
            "server_peak_rss_kib": rss_kib(server.pid, "VmHWM"),
        }
        return figures
    finally:
        for proc in reversed(procs):
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in reversed(procs):
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(where, ignore_errors=True)


#: Issue 13's memory goal: the server's RSS with this many connections open and idle.
GOAL_CONNECTIONS = 1000
GOAL_IDLE_MIB = 50


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        raise_fd_limit()
        run_loop(serve(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        raise_fd_limit()
        _, _, server_id, n, m, r, loop = sys.argv
        run_loop(drive(server_id, int(n), int(m), int(r)), loop)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    raise_fd_limit()
    figures = asyncio.run(run(args))
    idle_mib = figures["server_rss_kib_idle_connections"] / 1024
    met = idle_mib < GOAL_IDLE_MIB if args.connections >= GOAL_CONNECTIONS else None
    figures["goal_idle_rss_met"] = met
    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    verdict = "-" if met is None else "yes" if met else "NO"
    print(
        f"issue 13's goal: {GOAL_CONNECTIONS:,} idle connections < {GOAL_IDLE_MIB} MiB of server "
        f"RSS: {idle_mib:.1f} MiB with {args.connections:,}, met: {verdict}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
