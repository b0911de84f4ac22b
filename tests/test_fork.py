"""Fork without exec: a forked child lets go of what jitpc holds in its parent.

A handler that forks a long-lived worker (``os.fork()`` or multiprocessing's 'fork' context)
must not keep its server's id locked, nor its connections open, once the server has gone; a
client that forks must not keep its connection open either; and ``jitpc.sync`` works in a
forked child. Real processes throughout: ``tests/peers/fork_server.py`` (whose handlers fork),
``tests/peers/fork_sync.py`` (a sync client that forks), ``tests/peers/fork_fds.py`` (which
lists what its children hold) and ``tests/peers/sync_server.py``.

Each worker holds two pipe ends the test made (see ``fork_server.py``): it blocks reading one
until the test closes the other end; on the second one it writes a byte as it starts, and the
test's end reaches its end exactly when the worker has exited. So "the worker started" and
"the worker still lives" are facts the test checks, and it never needs a worker's pid.

A child lets go of jitpc's descriptors as its first act, but it may run only some time after
its parent has gone on: the tests wait for the worker to start before they count on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

import jitpc
from jitpc.testing import Daemon, DaemonFactory
from support import HANG, peer_command, python_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform"),
]

#: Python 3.12+ warns at every fork of a process with threads (a sync client has its portal).
QUIET_FORK = "ignore:This process:DeprecationWarning"


class Worker:
    """The pipes of one forked worker, from the test's side."""

    def __init__(self) -> None:
        self.ctl, self._release = os.pipe()  # the worker reads ctl until we close _release
        self._alive, self.alive = os.pipe()  # the worker holds alive open while it lives

    def passed(self) -> None:
        """The child process has its ends (ctl and alive): drop ours."""
        os.close(self.ctl)
        os.close(self.alive)

    async def started(self) -> None:
        """Wait for the worker's first byte: its after-fork hooks have run."""
        readable, _, _ = await asyncio.to_thread(select.select, [self._alive], [], [], HANG)
        assert readable and os.read(self._alive, 1) == b"+", "the worker did not start"

    def lives(self) -> bool:
        readable, _, _ = select.select([self._alive], [], [], 0)
        return not readable  # nobody writes: readable means its end, the worker exited

    async def end(self) -> None:
        """Let the worker exit, and wait until it has."""
        if self._release >= 0:
            os.close(self._release)
            self._release = -1
        readable, _, _ = await asyncio.to_thread(select.select, [self._alive], [], [], HANG)
        assert readable, "the worker did not exit"
        os.close(self._alive)


@contextlib.asynccontextmanager
async def fork_server(
    loop: str, jitpc_id: str, worker: Worker | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``fork_server.py`` and yield it once it listens; kill it on exit."""
    fds = (worker.ctl, worker.alive) if worker else ()
    proc = await asyncio.create_subprocess_exec(
        *peer_command("fork_server.py", loop, jitpc_id, *fds),
        stdout=asyncio.subprocess.PIPE,
        pass_fds=fds,
        env=python_env(),
    )
    if worker is not None:
        worker.passed()
    try:
        assert await line(proc) == "listening"
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await asyncio.wait_for(proc.wait(), HANG)


async def line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode().rstrip("\n")


@pytest.fixture
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop the servers run on: the tests' own (``--loop``)."""
    return str(request.config.getoption("--loop"))


@contextlib.asynccontextmanager
async def worker_pipes() -> AsyncIterator[Worker]:
    worker = Worker()
    try:
        yield worker
    finally:
        await worker.end()


@pytest.mark.parametrize("how", ["fork", "mp"])
async def test_a_forked_worker_does_not_keep_the_id(loop: str, jitpc_id: str, how: str) -> None:
    """(The lock is an open file description lock, which a child's copy of the descriptor
    would hold on to after the server has gone.)"""
    async with worker_pipes() as worker, fork_server(loop, jitpc_id, worker) as proc:
        async with jitpc.connect(jitpc_id) as client:
            await client.request(how)
            await worker.started()
            assert worker.lives()
        assert await line(proc) == "gone"
        assert await line(proc) == "closed"  # its last client gone, the server closed
        if how == "fork":
            assert await asyncio.wait_for(proc.wait(), HANG) == 0
        # (A multiprocessing parent waits for its worker as it exits: it may still run.)
        assert worker.lives()
        server = await jitpc.listen(jitpc_id, spindown=False)
        assert server is not None, "the forked worker kept the id"
        async with server, jitpc.connect(jitpc_id) as client:
            assert await client.request("rpc.ping") == {}


@pytest.mark.parametrize("how", ["fork", "mp"])
async def test_a_killed_servers_forked_worker_does_not_keep_its_connections(
    loop: str, jitpc_id: str, how: str
) -> None:
    async with worker_pipes() as worker, fork_server(loop, jitpc_id, worker) as proc:
        async with jitpc.connect(jitpc_id) as client:
            await client.request(how)
            await worker.started()
            pending = asyncio.ensure_future(client.request("hang"))
            assert await line(proc) == "hanging"
            proc.kill()
            with pytest.raises(jitpc.ClosedError):
                await asyncio.wait_for(pending, HANG)
            assert worker.lives()


async def test_a_killed_clients_forked_child_does_not_keep_its_connection(
    loop: str, jitpc_id: str
) -> None:
    async with fork_server(loop, jitpc_id) as server, worker_pipes() as worker:
        fds = (worker.ctl, worker.alive)
        client = await asyncio.create_subprocess_exec(
            *peer_command("fork_sync.py", jitpc_id, "linger", *fds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=fds,
            env=python_env(PYTHONWARNINGS=QUIET_FORK),
        )
        worker.passed()
        try:
            assert await line(client) == "forked"
            await worker.started()
            client.kill()
            # The server sees the connection end although the client's child still lives.
            assert await line(server) == "gone"
            assert worker.lives()
        finally:
            with contextlib.suppress(ProcessLookupError):
                client.kill()
            await asyncio.wait_for(client.wait(), HANG)


@pytest.fixture
def sync_server(jitpc_daemon: DaemonFactory, jitpc_id: str) -> Daemon:
    return jitpc_daemon(peer_command("sync_server.py", jitpc_id), env=python_env())


@pytest.mark.usefixtures("sync_server")
def test_sync_in_a_forked_child(jitpc_id: str) -> None:
    """The child of a process whose portal runs gets a portal of its own, with its deadlines;
    the parent's portal and connection are untouched by the child's life and normal exit."""
    run: Any = subprocess.run(
        peer_command("fork_sync.py", jitpc_id, "check"),
        capture_output=True,
        timeout=HANG,
        env=python_env(PYTHONWARNINGS=QUIET_FORK),
    )
    assert (run.returncode, run.stderr.decode()) == (0, "")
    assert run.stdout.decode().splitlines() == [
        "inherited ClosedError",
        "inherited closed True",
        "unused ok",
        "new ok",
        "timeout TimeoutError",
        "cancelled cancelled",
        "connect ConnectError ['spun']",
        "child exited 0",
        "parent ok",
    ]


def test_a_forked_child_holds_no_descriptor_of_jitpcs(loop: str, jitpc_id: str) -> None:
    """Descriptor by descriptor: not the lock, the listener, either end of a connection, nor a
    connection accepted but not made yet when the process forked."""
    run: Any = subprocess.run(
        peer_command("fork_fds.py", loop, jitpc_id),
        capture_output=True,
        timeout=HANG,
        env=python_env(),
    )
    assert (run.returncode, run.stderr.decode()) == (0, "")
    *forks, last = run.stdout.decode().splitlines()
    assert last == "parent ok"
    reports = [line.split(" ", 4) for line in forks]
    assert [json.loads(held) for *_, held in reports] == [[]] * 4
    assert any(int(stray) for _, _, _, stray, _ in reports), "no fork between accept and made"
