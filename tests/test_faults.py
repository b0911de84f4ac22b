"""Faults F1-F15 (research: reliability-and-security.md §4), with real processes and sockets.

Every scenario is checked against the request ledger (``ledger.py``): each request issued ends
exactly once, none hangs, none executes twice, other clients are unaffected. Each test reports
its figures with :func:`ledger.figure` (F6, the load, is in ``test_load.py``; F16 is Windows).
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import jitpc
from chaos import ChaosProxy, Mode
from ledger import Child, Children, Ledger, LogEvent, children, figure
from support import HANG, peer_command, python_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        sys.platform != "linux", reason="the fault tests use Linux's /proc, OFD locks and signals"
    ),
]


@pytest.fixture
def ledger(jitpc_tmpdir: Path) -> Ledger:
    return Ledger(jitpc_tmpdir / "executions.log")


def socket_path(jitpc_id: str) -> str:
    return os.path.join(os.environ["TMPDIR"], f"{jitpc_id}.sock")


def lock_path(jitpc_id: str) -> str:
    return os.path.join(os.environ["TMPDIR"], f"{jitpc_id}.lock")


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


def verdict(line: str) -> bool:
    """The first thing a ledger server says about the id: it serves it, or another does."""
    return line == "busy" or line.startswith("listening ")


def token_of(line: str) -> str:
    return line.split(" ")[1]


def listening_sockets(path: str) -> int:
    """How many listening Unix sockets are bound to ``path`` (Linux: /proc/net/unix).

    A socket keeps the name it was bound to after its file is unlinked, so this also counts a
    server that still accepts on a socket nobody can reach by path any more.
    """
    count = 0
    for row in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = row.split()
        if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
            count += 1
    return count


async def stopped(pid: int) -> None:
    """Wait until the child ``pid`` is stopped by a signal (or has exited)."""
    flags = os.WSTOPPED | os.WEXITED | os.WNOWAIT
    await asyncio.get_running_loop().run_in_executor(None, os.waitid, os.P_PID, pid, flags)


def no_tracebacks(child: Child) -> None:
    assert not [line for line in child.err if "Traceback" in line], child.err


# -- F1 ------------------------------------------------------------------------------------------


async def test_f1_client_killed_mid_request(jitpc_id: str, ledger: Ledger) -> None:
    """A client killed with half a line written, with a whole request written (and executing),
    and with a large reply it never reads: the server stays up, frees and reuses the client's
    id, and a client connected all along gets every answer, including one in flight."""
    path = socket_path(jitpc_id)
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log)
        bystander = jitpc.connect(jitpc_id)
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        await server.line("joined 0")
        in_flight = asyncio.ensure_future(ledger.request(bystander, "hold", group="bystander"))
        held = token_of(await server.line(starts("holding bystander.")))

        cases = {"half a line": "run", "whole request": "hold", "unread reply": "big"}
        for case, method in cases.items():
            token = ledger.issue("killed")
            params = {"token": token, "size": 8 << 20}
            message = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
            line = json.dumps(message).encode() + b"\n"
            data = line[: len(line) // 2] if case == "half a line" else line
            raw = await kids.spawn(peer_command("raw_client.py", path, data.hex()))
            await raw.line("written")
            await server.line("joined 1")
            if method != "run":
                await server.line(f"{'holding' if method == 'hold' else 'big'} {token}")
            raw.signal(signal.SIGKILL)
            assert await raw.wait() == -signal.SIGKILL
            ledger.end(token, "killed")
            if method == "hold":
                # The server cannot tell a dead client from one that half-closed and waits for
                # its answers (F5), so the connection lives until the handler answers: into a
                # broken pipe, which it must shrug off.
                await bystander.request("release", {"token": token})
            await server.line("gone 1")
            # The dead client's id is free again, and goes to the next client.
            async with jitpc.connect(jitpc_id) as fresh:
                assert await fresh.request("whoami") == 1, case
                assert (await ledger.request(fresh, "run", group="fresh"))[0] == "result"
            await server.line("joined 1")
            await server.line("gone 1")
            kind, result = await ledger.request(bystander, "run", group="bystander")
            assert kind == "result" and result["pid"] == server.pid, case

        await bystander.request("release", {"token": held})
        assert (await in_flight)[0] == "result"
        await bystander.end()
        assert server.proc.returncode is None
        no_tracebacks(server)
    executions = ledger.executions()
    assert [executions[t] for t, e in ledger.entries.items() if e.group == "killed"] == [0, 1, 1]
    counts = ledger.assert_exactly_once(unaffected={"bystander", "fresh"})
    figure("F1", kills=len(cases), server_crashes=0, ids_reused=len(cases), **counts)


# -- F2 ------------------------------------------------------------------------------------------


async def test_f2_server_killed_mid_response(jitpc_id: str, ledger: Ledger) -> None:
    """A server killed with half a reply line on the wire: every pending request fails with
    ClosedError at once (no hang), the half line is dropped, and the next request spins up a new
    server that takes over the stale socket."""
    sock = socket_path(jitpc_id)
    async with children() as kids:
        first = await kids.server(jitpc_id, ledger.log)
        client = jitpc.connect(jitpc_id)
        assert (await ledger.request(client, "run", group="before"))[0] == "result"
        pending = [
            asyncio.ensure_future(ledger.request(client, "hold", group="pending")) for _ in range(3)
        ]
        for _ in pending:
            await first.line(starts("holding "))
        pending.append(asyncio.ensure_future(ledger.request(client, "half", group="pending")))
        await first.line(starts("half "))
        killed_at = time.monotonic()
        first.signal(signal.SIGKILL)
        endings = await asyncio.gather(*pending)
        failed_after = time.monotonic() - killed_at
        assert await first.wait() == -signal.SIGKILL  # its listening socket is closed now too
        assert [kind for kind, _ in endings] == ["closed"] * len(pending), endings
        assert client.closed
        assert (await ledger.request(client, "run", group="closed-client"))[0] == "closed"

        spun: list[Child] = []

        async def spinup() -> None:
            spun.append(await kids.server(jitpc_id, ledger.log))

        async with jitpc.connect(jitpc_id, spinup=spinup) as fresh:
            kind, result = await ledger.request(fresh, "run", group="after")
        assert kind == "result" and len(spun) == 1
        assert result["pid"] == spun[0].pid != first.pid
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # the stale file, replaced: bind worked
    counts = ledger.assert_exactly_once(unaffected={"before", "after"})
    figure(
        "F2",
        pending_at_kill=len(pending),
        failed_closed=len(pending),
        seconds_kill_to_all_failed=round(failed_after, 3),
        **counts,
    )


# -- F3 ------------------------------------------------------------------------------------------


async def test_f3_stopped_server_is_not_replaced_and_answers_after_continue(
    jitpc_id: str, ledger: Ledger
) -> None:
    """SIGSTOP: the id stays taken (listen gives None, a second server process says busy),
    nothing is answered; after SIGCONT every request, from an old and a new connection, is
    answered once by the same server."""
    sock = socket_path(jitpc_id)
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log)
        early = jitpc.connect(jitpc_id)
        assert (await ledger.request(early, "run", group="early"))[0] == "result"
        inode = os.lstat(sock).st_ino
        server.signal(signal.SIGSTOP)
        try:
            await stopped(server.pid)
            late = jitpc.connect(jitpc_id)
            waiting = [
                asyncio.ensure_future(ledger.request(c, "run", group=g))
                for c, g in [(early, "early"), (late, "late")] * 16
            ]
            assert await jitpc.listen(jitpc_id) is None
            second = await kids.spawn(
                peer_command("ledger_server.py", jitpc_id, "--log", ledger.log)
            )
            assert await second.line(verdict) == "busy"
            assert await second.wait() == 0
            assert os.lstat(sock).st_ino == inode
            assert not any(task.done() for task in waiting)
        finally:
            server.signal(signal.SIGCONT)
        endings = await asyncio.gather(*waiting)
        assert {(kind, result["pid"]) for kind, result in endings} == {("result", server.pid)}
        await early.end()
        await late.end()
    counts = ledger.assert_exactly_once(unaffected={"early", "late"})
    figure("F3", waiting_while_stopped=len(waiting), second_servers=0, **counts)


# -- F4 ------------------------------------------------------------------------------------------

FLOOD = 250_000


async def test_f4_client_that_never_reads(jitpc_id: str, ledger: Ledger) -> None:
    """A raw client writes 250,000 requests and never reads a reply. Another client is answered
    all along. The server's memory is reported (no threshold): before, at its peak, and after
    the flooder goes; and whether the server read the whole flood or stopped reading it."""
    loop = asyncio.get_running_loop()
    lines = b"".join(b'{"jsonrpc":"2.0","method":"nop","id":%d}\n' % i for i in range(1, FLOOD + 1))
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log)
        bystander = jitpc.connect(jitpc_id)
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        rss_before = server.rss_kib()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, socket_path(jitpc_id))

            async def flood() -> None:
                for start in range(0, len(lines), 1 << 16):
                    await loop.sock_sendall(sock, lines[start : start + (1 << 16)])

            flooder = asyncio.ensure_future(flood())
            # Round trips of the other client until the server has read the whole flood, or
            # until it has read none of it for 50 round trips while the flood was waiting in
            # its socket (each round trip is a turn of the server's loop: a server that reads
            # the flooder would have read some of it).
            rounds = same = 0
            read = -1
            while True:
                kind, result = await ledger.request(bystander, "run", group="bystander")
                assert kind == "result"
                rounds += 1
                same = same + 1 if result["nop"] == read else 0
                read = result["nop"]
                if read == FLOOD or same == 50:
                    break
            rss_flooded = server.rss_kib()
            sent_all = flooder.done()
        finally:
            flooder.cancel()
            await asyncio.gather(flooder, return_exceptions=True)
            sock.close()
        await server.line("gone 1")
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        rss_after = server.rss_kib()
        rss_peak = server.rss_kib("VmHWM")
        await bystander.end()
        assert server.proc.returncode is None
        no_tracebacks(server)
    counts = ledger.assert_exactly_once(unaffected={"bystander"})
    figure(
        "F4",
        flood_requests=FLOOD,
        flood_handled_by_server=read,
        server_stopped_reading=read != FLOOD,
        flooder_wrote_all=sent_all,
        bystander_round_trips_during_flood=rounds,
        rss_kib_before=rss_before,
        rss_kib_flooded=rss_flooded,
        rss_kib_peak=rss_peak,
        rss_kib_after_flooder_gone=rss_after,
        **counts,
    )


# -- F5 ------------------------------------------------------------------------------------------


async def test_f5_half_close_after_requests(jitpc_id: str, ledger: Ledger) -> None:
    """A client writes N requests (sync and async handlers) and half-closes: all N answered,
    then end of stream."""
    count = 200
    async with children() as kids:
        await kids.server(jitpc_id, ledger.log)
        reader, writer = await asyncio.open_unix_connection(socket_path(jitpc_id))
        try:
            tokens = [ledger.issue("half-close") for _ in range(count)]
            for i, token in enumerate(tokens):
                method = ("run", "sleepy")[i % 2]
                message = {"method": method, "params": {"token": token}, "id": i + 1}
                writer.write(json.dumps(message).encode() + b"\n")
            writer.write_eof()
            data = await reader.read()  # to end of stream
        finally:
            writer.close()
            await writer.wait_closed()
    replies = [json.loads(line) for line in data.splitlines()]
    assert sorted(reply["id"] for reply in replies) == list(range(1, count + 1))
    for reply in replies:
        ledger.end(tokens[reply["id"] - 1], "result", reply["result"])
    counts = ledger.assert_exactly_once(unaffected={"half-close"})
    figure("F5", requests=count, answered=len(replies), **counts)


# -- F7 ------------------------------------------------------------------------------------------


async def test_f7_file_descriptor_exhaustion(jitpc_id: str, ledger: Ledger) -> None:
    """A server limited to 64 descriptors gets 200 clients at once: it survives, a client
    connected before is answered, and it serves normally once they are gone. What happens to
    the clients beyond the limit is reported."""
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log, "--nofile", 64)
        bystander = jitpc.connect(jitpc_id)
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"

        async def one() -> str:
            async with jitpc.connect(jitpc_id) as client:
                kind, _ = await ledger.request(client, "run", group="crowd")
            return kind

        crowd = [asyncio.ensure_future(one()) for _ in range(200)]
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        outcomes = Counter(await asyncio.gather(*crowd))
        async with jitpc.connect(jitpc_id) as after:
            assert (await ledger.request(after, "run", group="after"))[0] == "result"
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        await bystander.end()
        assert server.proc.returncode is None
    counts = ledger.assert_exactly_once(unaffected={"bystander", "after"})
    figure(
        "F7",
        nofile=64,
        clients=len(crowd),
        crowd_outcomes=dict(outcomes),
        accept_errors_logged=sum("out of system resource" in line for line in server.err),
        server_stderr_lines=len(server.err),
        survived=True,
        recovered=True,
        **counts,
    )


# -- F8 and F9: servers started by clients' spinup -----------------------------------------------


class Launcher:
    """A spinup hook shared by many clients: one server process started at a time.

    A herd of clients failing together shares one start. The servers it starts wait for their
    first client before they may spin down (``--grace``), so the clients that waited for one
    reach it. If the new server finds the id taken (``busy``), by a server that has already had
    clients and may be spinning down, it waits for that one to exit and starts another; if the
    holder has had no client yet, the clients' next try reaches it.

    The servers' spindown hooks are gated (``--gate-spindown``): a hook returns at once, unless
    the test asked for the next one with :meth:`next_spindown`, and then when the test says so.
    """

    def __init__(self, kids: Children, jitpc_id: str, log: Path, *options: object) -> None:
        self.command = peer_command("ledger_server.py", jitpc_id, "--log", log, *options)
        self.kids = kids
        self.spawned: list[Child] = []
        self.busy = 0
        self.holder: Child | None = None
        self._starting: asyncio.Future[None] | None = None
        self._gatekeepers: list[asyncio.Task[None]] = []
        self._hook_wanted: asyncio.Future[Child] | None = None

    async def spinup(self) -> None:
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    def next_spindown(self) -> asyncio.Future[Child]:
        """The server whose spindown hook runs next, held in its hook until ``child.tell``."""
        self._hook_wanted = asyncio.get_running_loop().create_future()
        return self._hook_wanted

    async def hook_or_none_left(self, hook: asyncio.Future[Child]) -> Child | None:
        """The server held in its hook, or None if every server exits without one (the wave's
        clients all met a closing server and none spun up another)."""
        exits = asyncio.gather(*(child.proc.wait() for child in self.spawned))
        either: list[asyncio.Future[Any]] = [hook, exits]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        exits.cancel()
        await asyncio.gather(exits, return_exceptions=True)
        if hook.done():
            return hook.result()
        self._hook_wanted = None
        return None

    async def _start(self) -> None:
        while True:
            child = await self.kids.spawn(self.command)
            self.spawned.append(child)
            self._gatekeepers.append(asyncio.ensure_future(self._gatekeeper(child)))
            if await child.line(verdict) != "busy":
                self.holder = child
                return
            self.busy += 1
            holder = self.holder
            if holder is None or not any(line.startswith("joined") for line in holder.out):
                return
            await holder.wait()

    async def _gatekeeper(self, child: Child) -> None:
        while await child.line("spindown?", or_end=True):
            wanted = self._hook_wanted
            if wanted is not None and not wanted.done():
                wanted.set_result(child)
            else:
                child.tell("go")

    async def wait_all(self) -> list[int]:
        """Wait for every server started to exit by itself (spindown); their exit codes."""
        await asyncio.gather(*self._gatekeepers)
        return [await child.wait() for child in self.spawned]


def serving_intervals(events: list[LogEvent]) -> dict[int, tuple[int, float]]:
    """For each server process: from its first sign of serving to its last spindown hook.

    The start is at or after it took the lock; the end is before it released it (closing starts
    right after a synchronous hook), and no request runs after it. A server still running has
    no end (infinity).
    """
    spans: dict[int, tuple[int, float]] = {}
    for pid in {e.pid for e in events if e.kind == "listen"}:
        mine = [e for e in events if e.pid == pid]
        start = min(e.ns for e in mine if e.kind in ("listen", "exec"))
        downs = [e.ns for e in mine if e.kind == "spindown"]
        closed = any(e.kind == "closed" for e in mine)
        end: float = max(downs) if closed and downs else math.inf
        last_exec = max((e.ns for e in mine if e.kind == "exec"), default=start)
        assert last_exec <= end, f"server {pid} executed a request after its last spindown"
        spans[pid] = (start, end)
    return spans


def most_at_once(spans: dict[int, tuple[int, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


async def test_f8_spindown_races_connecting_clients(jitpc_id: str, ledger: Ledger) -> None:
    """Servers that spin down 10 ms after their last client, and waves of 30 clients that
    connect -> request -> end, each with a spinup that starts a server process. Odd waves start
    the moment the previous wave ends, racing the idle timer; even waves start while the
    server's spindown hook is about to return, racing its close. Every request ends once (a
    result, or ClosedError / ConnectError where it met a closing server), none runs twice, and
    no two servers ever serve at once, by the servers' own log on the system-wide monotonic
    clock."""
    waves, clients = 12, 30
    async with children() as kids:
        launcher = Launcher(
            kids, jitpc_id, ledger.log, "--spindown", 0.01, "--grace", "--gate-spindown"
        )

        async def one(group: str) -> None:
            client = jitpc.connect(jitpc_id, spinup=launcher.spinup)
            await ledger.request(client, "run", group=group)
            await client.end()

        held: Child | None = None
        for wave in range(waves):
            tasks = [asyncio.ensure_future(one(f"wave{wave}")) for _ in range(clients)]
            if held is not None:
                held.tell("go")  # the hook returns as this wave's clients connect
                held = None
            if wave % 2:
                hook = launcher.next_spindown()
                await asyncio.gather(*tasks)
                held = await launcher.hook_or_none_left(hook)
            else:
                await asyncio.gather(*tasks)
        if held is not None:
            held.tell("go")
        codes = await launcher.wait_all()
        for child in launcher.spawned:
            no_tracebacks(child)
    assert codes == [0] * len(codes)
    events = ledger.events()
    spans = serving_intervals(events)
    at_once = most_at_once(spans)
    counts = ledger.assert_exactly_once()
    figure(
        "F8",
        waves=waves,
        clients_per_wave=clients,
        servers_started=len(launcher.spawned),
        servers_served=len(spans),
        servers_busy=launcher.busy,
        spindown_hooks=sum(1 for e in events if e.kind == "spindown"),
        most_servers_at_once=at_once,
        **counts,
    )
    assert at_once == 1


async def test_f9_herd_spinup(jitpc_id: str, ledger: Ledger) -> None:
    """20 clients fail to connect together and each spinup starts a server process: exactly one
    wins the id, the 19 others say ``busy`` and exit 0 with nothing on stderr, and all 20
    requests are answered by the winner."""
    herd = 20
    ready: list[Child] = []
    all_ready = asyncio.Event()
    async with children() as kids:

        async def spinup() -> None:
            # Each server waits until all 20 are started before it calls listen: so every
            # client has failed its first try, and all 20 race for the lock at once.
            command = peer_command("ledger_server.py", jitpc_id, "--log", ledger.log, "--gate")
            child = await kids.spawn(command)
            await child.line("ready")
            ready.append(child)
            if len(ready) == herd:
                for each in ready:
                    assert each.proc.stdin is not None
                    each.proc.stdin.write(b"go\n")
                all_ready.set()
            await all_ready.wait()

        # 20 interpreters starting on a small machine can outlast the default connect
        # deadline, which counts the spinup hook: the herd is what is tested here.
        clients = [
            jitpc.connect(jitpc_id, spinup=spinup, connect_timeout=HANG) for _ in range(herd)
        ]
        endings = await asyncio.gather(*(ledger.request(c, "run", group="herd") for c in clients))
        verdicts = [await child.line(verdict) for child in ready]
        winners = [child for child, said in zip(ready, verdicts, strict=True) if said != "busy"]
        assert len(winners) == 1, verdicts
        assert {(kind, result["pid"]) for kind, result in endings} == {("result", winners[0].pid)}
        losers = [child for child in ready if child is not winners[0]]
        codes = [await child.wait() for child in losers]
        assert codes == [0] * (herd - 1)
        assert all(child.out == ["ready", "busy"] and child.err == [] for child in losers)
        for client in clients:
            await client.end()
    counts = ledger.assert_exactly_once(unaffected={"herd"})
    figure("F9", spinups=len(ready), servers_won=1, losers_clean=len(losers), **counts)


# -- F10 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("deleted", ["lock", "lock and socket"])
async def test_f10_files_deleted_under_a_live_server(
    jitpc_id: str, ledger: Ledger, deleted: str
) -> None:
    """A tmp cleaner deletes the lock file (or the lock and socket files) of a live server A,
    then a new server process B calls listen. Never may two servers accept connections for one
    path: counted in the kernel's table of listening sockets bound to the path, which keeps the
    name of an unlinked socket, so it also counts a server accepting on a socket nobody can
    reach any more.

    With only the lock deleted, A is still reachable: a new client reaches A, which must notice
    then and stop accepting, before B starts. With both deleted, nothing can reach A; whether it
    has noticed yet when B starts is reported, not asserted. Either way connections made after B
    listens reach B, A accepts nobody after the deletion, and A closes by itself once its old
    client has gone (it is served until then: reported).
    """
    sock, lock = socket_path(jitpc_id), lock_path(jitpc_id)
    async with children() as kids:
        a = await kids.server(jitpc_id, ledger.log)
        old = jitpc.connect(jitpc_id)
        assert (await ledger.request(old, "run", group="old"))[0] == "result"
        await a.line("joined 0")
        os.unlink(lock)
        if deleted == "lock and socket":
            os.unlink(sock)
        else:
            async with jitpc.connect(jitpc_id) as probe:
                kind, result = await ledger.request(probe, "run", group="probe")
            assert kind == "result" and result["pid"] == a.pid
            await a.line("joined 1")
        b = await kids.spawn(peer_command("ledger_server.py", jitpc_id, "--log", ledger.log))
        said = await b.line(verdict)
        accepting_at_start = listening_sockets(sock)
        async with jitpc.connect(jitpc_id) as new:
            kind, result = await ledger.request(new, "run", group="new")
        assert said.startswith("listening ") and kind == "result" and result["pid"] == b.pid
        old_kind, old_result = await ledger.request(old, "run", group="old")
        await old.end()
        assert await a.wait() == 0 and a.out[-1] == "closed"  # it closed by itself
        joined = [line for line in a.out if line.startswith("joined")]
        assert joined == ["joined 0", "joined 1"][: 2 if deleted == "lock" else 1], joined
        accepting_after = listening_sockets(sock)
    figure(
        "F10",
        deleted=deleted,
        listening_sockets_when_b_started=accepting_at_start,
        listening_sockets_after_a_closed=accepting_after,
        old_client_served_by_a_meanwhile=old_kind == "result" and old_result["pid"] == a.pid,
    )
    ledger.assert_exactly_once(unaffected={"new"})
    assert accepting_after == 1
    if deleted == "lock":
        assert accepting_at_start == 1, f"{accepting_at_start} servers accept for {sock}"


# -- F11 -----------------------------------------------------------------------------------------


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def read(path: str) -> bytes | None:
    """The file's bytes, or None if the path does not exist (not even as a dangling link)."""
    if not exists(path):
        return None
    with open(path, "rb") as file:
        return file.read()


def exists(path: str) -> bool:
    return os.path.lexists(path)


async def test_f11_lock_path_is_a_symlink(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    """A symlink at the lock path, to a file or to nothing: listen raises ELOOP and neither
    writes through the link nor creates its target."""
    sentinel, missing = str(jitpc_tmpdir / "sentinel"), str(jitpc_tmpdir / "missing")
    write(sentinel, b"precious\n")
    lock = lock_path(jitpc_id)
    for target in (sentinel, missing):
        os.symlink(target, lock)
        with pytest.raises(OSError) as info:
            await jitpc.listen(jitpc_id)
        assert info.value.errno == errno.ELOOP
        assert info.value.filename == lock
        os.unlink(lock)
    assert read(sentinel) == b"precious\n" and read(missing) is None
    assert not exists(socket_path(jitpc_id))
    figure("F11", case="lock symlink", error=repr(info.value), sentinel_changed=0)


@pytest.mark.parametrize("squatted", ["lock", "socket"])
async def test_f11_files_of_another_user(jitpc_id: str, squatted: str) -> None:
    """A lock file, or a stale socket, owned by another uid (4321): listen raises a
    PermissionError naming the uid, touches neither, and leaves the id free."""
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    path = lock_path(jitpc_id) if squatted == "lock" else socket_path(jitpc_id)
    if squatted == "lock":
        write(path, b"")
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatter:
            squatter.bind(path)
    os.chown(path, 4321, 4321)
    with pytest.raises(PermissionError, match="uid 4321") as info:
        await jitpc.listen(jitpc_id)
    assert os.lstat(path).st_uid == 4321
    if squatted == "socket":  # the failed listen released the lock
        os.unlink(path)
        server = await jitpc.listen(jitpc_id, spindown=False)
        assert server is not None
        await server.close()
    figure("F11", case=f"{squatted} of uid 4321", error=str(info.value))


async def test_f11_socket_path_is_a_regular_file(jitpc_id: str) -> None:
    """A regular file where the socket goes: listen raises FileExistsError and leaves it."""
    path = socket_path(jitpc_id)
    write(path, b"not a socket\n")
    with pytest.raises(FileExistsError, match="not a socket") as info:
        await jitpc.listen(jitpc_id)
    with pytest.raises(FileExistsError):  # again, not None: the failed listen freed the lock
        await jitpc.listen(jitpc_id)
    assert read(path) == b"not a socket\n"
    figure("F11", case="socket path is a file", error=str(info.value))


async def test_f11_missing_tmpdir_is_created(
    jitpc_id: str, jitpc_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR that does not exist yet is created (as Node does), and served."""
    missing = jitpc_tmpdir / "a" / "b"
    monkeypatch.setenv("TMPDIR", str(missing))
    server = await jitpc.listen(
        jitpc_id, on_client=lambda c: c.respond("ping", lambda p: "pong"), spindown=False
    )
    assert server is not None and missing.is_dir()
    async with server, jitpc.connect(jitpc_id) as client:
        assert await client.request("ping") == "pong"
    figure("F11", case="TMPDIR missing", outcome="created")


async def test_f11_unusable_tmpdir(
    jitpc_id: str, jitpc_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR that cannot be created (under a regular file, which stops root too): listen
    raises at once, and a client fails at once with a ConnectError rather than retrying."""
    write(str(jitpc_tmpdir / "file"), b"")
    monkeypatch.setenv("TMPDIR", str(jitpc_tmpdir / "file" / "sub"))
    with pytest.raises(NotADirectoryError):
        await jitpc.listen(jitpc_id)
    calls: list[int] = []
    client = jitpc.connect(jitpc_id, spinup=lambda: calls.append(1))
    with pytest.raises(jitpc.ConnectError) as info:
        await client.request("run")
    assert isinstance(info.value.__cause__, NotADirectoryError) and calls == []
    figure("F11", case="TMPDIR under a file", connect_error=str(info.value))


async def test_f11_read_only_tmpdir(
    jitpc_id: str, jitpc_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only TMPDIR: listen raises PermissionError (root ignores the bits: skipped)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores permission bits; test_f11_unusable_tmpdir covers root")
    readonly = jitpc_tmpdir / "ro"
    readonly.mkdir(mode=0o555)
    monkeypatch.setenv("TMPDIR", str(readonly))
    try:
        with pytest.raises(PermissionError):
            await jitpc.listen(jitpc_id)
    finally:
        readonly.chmod(0o755)
    figure("F11", case="TMPDIR read-only", outcome="PermissionError")


# -- F12 -----------------------------------------------------------------------------------------


async def workload(client: jitpc.Client, ledger: Ledger, group: str) -> list[Any]:
    """The scripted workload of F12; returns every result, in order."""
    heard: list[Any] = []
    client.respond("double", lambda params: params * 2)
    client.respond("heard", heard.append)
    results: list[Any] = []
    for i in range(16):
        results.append(await ledger.request(client, "run", {"echo": i}, group=group))
    results += await asyncio.gather(
        *(ledger.request(client, "run", {"echo": "ünï ✓" * i}, group=group) for i in range(64))
    )
    for _ in range(8):
        ledger.notify(client, "note", group=group)
    results.append(await ledger.request(client, "run", group=group))  # after the notes, in order
    results += await asyncio.gather(
        *(
            ledger.request(client, "ask", {"method": "double", "params": i}, group=group)
            for i in range(8)
        )
    )
    for i in range(4):
        params = {"method": "heard", "params": i}
        results.append(await ledger.request(client, "tell", params, group=group))
        results.append(list(heard))  # the notification came before the answer
    results.append(await ledger.request(client, "big", {"size": 4096}, group=group))
    return results


def normalized(results: Any, group: str) -> Any:
    """The results with this run's token prefix removed, so runs compare equal."""
    return json.loads(json.dumps(results).replace(f'"{group}.', '"'))


async def test_f12_chaos_proxy_changes_nothing(jitpc_id: str, ledger: Ledger) -> None:
    """The same workload (sequential, 64 concurrent, notifications, server-to-client requests
    and notifications, a 4 KiB result) directly and through a proxy that splits every write into
    single bytes, coalesces many messages into one write, or delays them: identical results and
    an identical ledger."""
    runs: dict[str, Any] = {}
    async with children() as kids:
        await kids.server(jitpc_id, ledger.log)
        async with jitpc.connect(jitpc_id) as client:
            runs["direct"] = await workload(client, ledger, "direct")
        modes: list[Mode] = ["split", "coalesce", "delay"]
        for mode in modes:
            where = tempfile.mkdtemp(prefix="p", dir="/tmp")
            proxy = ChaosProxy(os.path.join(where, f"{jitpc_id}.sock"), socket_path(jitpc_id), mode)
            try:
                await proxy.start()
                client = jitpc.connect(jitpc_id)
                await open_in(where, client)
                runs[mode] = await workload(client, ledger, mode)
                await client.end()
            finally:
                await proxy.close()
                shutil.rmtree(where, ignore_errors=True)
            figure(
                "F12", mode=mode, proxy_writes=proxy.writes, most_lines_in_a_write=proxy.most_lines
            )
    counts = ledger.assert_exactly_once(unaffected=runs.keys(), delivered=True)
    reference = normalized(runs["direct"], "direct"), ledger.group("direct")
    mismatches = [
        mode for mode in runs if (normalized(runs[mode], mode), ledger.group(mode)) != reference
    ]
    figure("F12", runs=list(runs), mismatches=len(mismatches), **counts)
    assert not mismatches


async def open_in(directory: str, client: jitpc.Client) -> None:
    """Open ``client`` as if TMPDIR were ``directory`` (where a proxy listens)."""
    saved = os.environ["TMPDIR"]
    os.environ["TMPDIR"] = directory
    try:
        await client.open()
    finally:
        os.environ["TMPDIR"] = saved


# -- F13 -----------------------------------------------------------------------------------------


async def exchange(path: str, *writes: bytes) -> list[dict[str, Any]]:
    """Write raw bytes (each a separate write) and read every reply until the server closes.

    The server closes at the first over-long message, so a later write may find it gone: the
    write is refused then, as any write to a peer that hung up, and what the server answered is
    still read. (Closing with bytes unread, the server may also leave an ECONNRESET after its
    answer, which ends the stream here as its close does.)
    """
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, path)
        try:
            for data in writes:
                await loop.sock_sendall(sock, data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        try:
            while chunk := await loop.sock_recv(sock, 65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return [json.loads(line) for line in b"".join(chunks).splitlines()]


async def test_f13_oversize_and_smuggling(jitpc_id: str, ledger: Ledger) -> None:
    """A server limited to 1 KiB messages: an over-long line (with no newline, or a whole
    request) followed by a smuggled request gets one -32600 answer and the connection closes; the
    smuggled request never runs. A client whose own request is too long fails with ClosedError;
    a client limited to 1 KiB that gets a longer result does too. Others are unaffected."""
    smuggle = json.dumps(
        {"jsonrpc": "2.0", "method": "run", "params": {"token": "smuggled"}, "id": 9}
    ).encode()
    oversize = json.dumps(
        {"jsonrpc": "2.0", "method": "run", "params": {"token": "oversize", "pad": "x" * 2000}}
    ).encode()
    path = socket_path(jitpc_id)
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log, "--max-message-bytes", 1024)
        bystander = jitpc.connect(jitpc_id)
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        replies = [
            await exchange(path, b"x" * 2000, smuggle + b"\n"),
            await exchange(path, oversize + b"\n" + smuggle + b"\n"),
            await exchange(path, oversize[:1500], oversize[1500:] + b"\n" + smuggle + b"\n"),
        ]
        for answer in replies:
            assert [(r.get("id"), r["error"]["code"]) for r in answer] == [(None, -32600)], answer
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"

        too_long = jitpc.connect(jitpc_id)
        kind, _ = await ledger.request(too_long, "run", {"pad": "x" * 2000}, group="too-long")
        assert kind == "closed"
        small = jitpc.connect(jitpc_id, max_message_bytes=1024)
        assert (await ledger.request(small, "run", group="small"))[0] == "result"
        kind, _ = await ledger.request(small, "big", {"size": 4096}, group="small-big")
        assert kind == "closed" and small.closed
        assert (await ledger.request(bystander, "run", group="bystander"))[0] == "result"
        await bystander.end()
        assert server.proc.returncode is None
    executions = ledger.executions()
    assert executions["smuggled"] == executions["oversize"] == 0
    counts = ledger.assert_exactly_once(unaffected={"bystander", "small"})
    figure("F13", oversize_lines=len(replies), smuggled_runs=0, **counts)


# -- F14 -----------------------------------------------------------------------------------------


def node_tmpdir(env: dict[str, str]) -> str:
    """Node's os.tmpdir() on POSIX, which jitpc follows (PROTOCOL.md §1)."""
    path = env.get("TMPDIR") or env.get("TMP") or env.get("TEMP") or "/tmp"
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def with_tmpdir(directory: str) -> dict[str, str]:
    """A child's environment that names ``directory`` explicitly, whatever TMP/TEMP say."""
    return python_env(TMPDIR=directory)


def tempfile_order(env: dict[str, str]) -> str:
    """The directory Python's tempfile would pick from the same variables (another order)."""
    return env.get("TMPDIR") or env.get("TEMP") or env.get("TMP") or "/tmp"


async def test_f14_client_and_server_resolve_different_tmpdirs(
    jitpc_id: str, jitpc_tmpdir: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client has TMPDIR unset, TMP=<a>, TEMP=<b>: it looks for <a>/<id>.sock.

    * A spinup that passes the client's resolved directory (Node's order) starts a server the
      client reaches.
    * A spinup that passes Python's tempfile order (TEMP before TMP) starts a server in <b>: the
      client fails with a ConnectError naming the path it tried, after its back-off.
    * Never two live servers for one path: a second server given the same directory spelled
      another way (through TMP, with a trailing slash) says busy.
    """
    a, b = jitpc_tmpdir / "a", jitpc_tmpdir / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.delenv("TMPDIR")
    monkeypatch.setenv("TMP", str(a))
    monkeypatch.setenv("TEMP", str(b))
    env = dict(os.environ)
    async with children() as kids:
        started: dict[str, Child] = {}

        def spinup(order: str, sid: str, directory: str) -> Callable[[], Awaitable[None]]:
            async def start() -> None:
                started[order] = await kids.server(sid, ledger.log, env=with_tmpdir(directory))

            return start

        async def attempt(order: str, sid: str, directory: str) -> tuple[str, Any]:
            client = jitpc.connect(sid, spinup=spinup(order, sid, directory))
            ending = await ledger.request(client, "run", group=order)
            await client.end()
            return ending

        other_id = jitpc_id + "x"  # its own id: it must not find the first case's server
        right, wrong = await asyncio.gather(
            attempt("node-order", jitpc_id, node_tmpdir(env)),
            attempt("tempfile-order", other_id, tempfile_order(env)),
        )
        assert right[0] == "result" and right[1]["pid"] == started["node-order"].pid
        assert wrong[0] == "connect" and str(a / f"{other_id}.sock") in wrong[1]
        assert stat.S_ISSOCK(os.lstat(b / f"{other_id}.sock").st_mode)  # listening elsewhere

        twin_env = python_env(TMP=str(a) + "/", TEMP="/nonexistent")
        twin_env.pop("TMPDIR", None)
        twin = await kids.spawn(
            peer_command("ledger_server.py", jitpc_id, "--log", ledger.log), env=twin_env
        )
        assert await twin.line(verdict) == "busy"
    counts = ledger.assert_exactly_once(unaffected={"node-order"})
    figure(
        "F14",
        node_order="answered",
        tempfile_order="ConnectError: " + wrong[1],
        second_server_same_dir="busy",
        **counts,
    )


# -- F15 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_f15_graceful_signal(jitpc_id: str, ledger: Ledger, signum: int) -> None:
    """SIGTERM or SIGINT to a server whose main closes it from a signal handler: its pending
    requests fail with ClosedError, it exits 0, its socket file is gone and the id is free."""
    sock = socket_path(jitpc_id)
    async with children() as kids:
        server = await kids.server(jitpc_id, ledger.log, script="graceful_server.py")
        client = jitpc.connect(jitpc_id)
        assert (await ledger.request(client, "run", group="before"))[0] == "result"
        pending = [
            asyncio.ensure_future(ledger.request(client, "hold", group="pending")) for _ in range(4)
        ]
        for _ in pending:
            await server.line(starts("holding "))
        server.signal(signum)
        assert [kind for kind, _ in await asyncio.gather(*pending)] == ["closed"] * len(pending)
        assert await server.wait() == 0
        assert f"signal {signal.Signals(signum).name}" in server.out
        assert server.out[-1] == "closed"
        assert not exists(sock)
        again = await jitpc.listen(jitpc_id, spindown=False)
        assert again is not None
        await again.close()
        no_tracebacks(server)
    counts = ledger.assert_exactly_once(unaffected={"before"})
    figure(
        "F15", signal=signal.Signals(signum).name, socket_removed=True, lock_released=True, **counts
    )
