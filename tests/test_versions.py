"""``connect(version=, methods=, on_mismatch=)``: a client checks the server it reaches, and
refuses it or has it restarted.

Real processes: ``peers/versioned_daemon.py`` listens with a version and a typed ``inc`` of one
of two schemas. An old server is started by the test itself (so that it can wait for its exit);
new ones by the client's ``jitpc.spawn`` hook. Every daemon appends its pid to a file, so the
tests count the daemons started; those still running are killed at the end. Waits are for
events (a line a daemon prints, an answer, an exit), bounded by ``HANG``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

import jitpc
import jitpc.sync
from nodesetup import ensure_node_jitpc
from support import HANG, PEERS, peer_command, python_env, reap

pytestmark = pytest.mark.anyio


def _load_daemon() -> Any:
    spec = importlib.util.spec_from_file_location("versioned_daemon", PEERS / "versioned_daemon.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (pydantic looks its models' module up there)
    spec.loader.exec_module(module)
    return module


# (Any: mypy cannot follow a module loaded by path.)
_daemon = _load_daemon()
IncA: Any = _daemon.IncA  # inc, key: str
IncB: Any = _daemon.IncB  # inc, key: int
Note: Any = _daemon.Note

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or shutil.which("npm") is None, reason="node and npm must be on PATH"
)


@pytest.fixture
def starts(jitpc_tmpdir: Path) -> Iterator[Path]:
    """The file every daemon appends its pid to; those still running are killed after."""
    path = jitpc_tmpdir / "starts"
    yield path
    for pid in started(path):
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.parent.exists() and b"versioned_daemon.py" not in _read(cmdline):
            continue  # gone, and the pid reused (or a zombie: nothing to kill)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # our child: its spawn reaper thread reaps it


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def argv(version: str, jitpc_id: str, starts: Path, *options: str) -> list[str]:
    return peer_command("versioned_daemon.py", version, jitpc_id, "--starts", starts, *options)


def spawn(version: str, jitpc_id: str, starts: Path, *options: str) -> jitpc._spawn.Spawn:
    """A spinup hook that starts a daemon of ``version``."""
    return jitpc.spawn(argv(version, jitpc_id, starts, *options), env=python_env())


@asynccontextmanager
async def running(
    version: str, jitpc_id: str, starts: Path, *options: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A daemon of ``version`` run by the test, once it listens; killed on exit if need be."""
    proc = await asyncio.create_subprocess_exec(
        *argv(version, jitpc_id, starts, *options),
        stdout=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    try:
        assert await line(proc) == f"listening {version} {proc.pid}"
        yield proc
    finally:
        await reap(proc)


async def line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode().rstrip("\n")


async def status(jitpc_id: str) -> dict[str, Any]:
    """``rpc.status`` of the server now serving ``jitpc_id``, by an unchecked client."""
    async with jitpc.connect(jitpc_id, connect_timeout=HANG) as client:
        result: dict[str, Any] = await client.request("rpc.status")
    return result


async def test_the_right_version_is_served(jitpc_id: str, starts: Path) -> None:
    """Version and schemas match: calls work, and a notification sent before connecting
    arrives, checked like the rest."""
    async with running("1", jitpc_id, starts) as proc:
        client = jitpc.connect(jitpc_id, version="1", methods=[IncA, Note])
        async with client:
            client.notify(Note(text="early"))  # held until the server passed the check
            assert await client.call(IncA(key="a"), timeout=HANG) == 1
            assert await line(proc) == "note early"
            assert (await client.request("rpc.status"))["version"] == "1"
    assert started(starts) == [proc.pid]


async def test_another_version_is_refused_and_left_running(jitpc_id: str, starts: Path) -> None:
    """A server of version "1" for a client that wants "2": VersionMismatch naming both, the
    server untouched (it answers the next client; nothing the refused client sent reached it),
    the client closed with that error."""
    async with running("1", jitpc_id, starts) as proc:
        client = jitpc.connect(jitpc_id, version="2")
        client.notify(Note(text="refused"))
        with pytest.raises(jitpc.VersionMismatch) as caught:
            await client.request("inc", {"key": "a"}, timeout=HANG)
        error = caught.value
        assert (error.expected, error.found, error.methods) == ("2", "1", ())
        assert str(error) == f"jitpc server {jitpc_id!r} runs version '1', not '2'"
        assert (error.server_id, error.path) == (jitpc_id, jitpc._paths.address(jitpc_id).socket)
        assert client.closed
        with pytest.raises(jitpc.VersionMismatch):
            await client.open()

        async with jitpc.connect(jitpc_id, version="1") as other:
            other.notify(Note(text="accepted"))
            assert await other.request("inc", {"key": "a"}, timeout=HANG) == 1  # not 2
        assert await line(proc) == "note accepted"  # the first notification never came
        assert proc.returncode is None
    assert started(starts) == [proc.pid]


async def test_restart_replaces_the_old_server(jitpc_id: str, starts: Path) -> None:
    """on_mismatch="restart": the old server stops (its process exits, cleanly), the spinup
    hook starts one new daemon, and the client talks to it."""
    async with running("1", jitpc_id, starts) as old:
        async with jitpc.connect(
            jitpc_id,
            version="2",
            on_mismatch="restart",
            spinup=spawn("2", jitpc_id, starts),
            connect_timeout=HANG,
        ) as client:
            now = await client.request("rpc.status")
            assert await client.request("inc", {"key": "a"}) == 1
        assert await asyncio.wait_for(old.wait(), HANG) == 0
    assert now["version"] == "2"
    assert started(starts) == [old.pid, now["pid"]]


async def test_methods_with_other_schemas_are_refused(jitpc_id: str, starts: Path) -> None:
    """``methods=`` compares fingerprints: the same method name with another params schema
    is a mismatch, named in the error; the same schema is not."""
    async with running("1", jitpc_id, starts, "--variant", "B"):
        async with jitpc.connect(jitpc_id, methods=[IncB]) as client:
            assert await client.call(IncB(key=7), timeout=HANG) == 1

        with pytest.raises(jitpc.VersionMismatch) as caught:
            await jitpc.connect(jitpc_id, methods=[IncA, IncB, Note]).open()
        error = caught.value
        assert (error.expected, error.found, error.methods) == (None, "1", ("inc",))
        assert "methods differ" in str(error) and "inc" in str(error)

        with pytest.raises(jitpc.VersionMismatch) as caught:
            await jitpc.connect(jitpc_id, version="2", methods=[IncA]).open()
        assert str(caught.value) == (
            f"jitpc server {jitpc_id!r} runs version '1', not '2' (methods that differ: inc)"
        )


async def test_a_restart_into_the_wrong_version_again_is_refused(
    jitpc_id: str, starts: Path
) -> None:
    """The hook starts a server that is no better: VersionMismatch after one restart, not a
    loop; the new server is left running."""
    async with running("1", jitpc_id, starts) as old:
        client = jitpc.connect(
            jitpc_id,
            version="2",
            on_mismatch="restart",
            spinup=spawn("1", jitpc_id, starts),
            connect_timeout=HANG,
        )
        with pytest.raises(jitpc.VersionMismatch) as caught:
            await client.open()
        assert await asyncio.wait_for(old.wait(), HANG) == 0
    assert (caught.value.expected, caught.value.found) == ("2", "1")
    assert "restarted once already" in str(caught.value)
    first, second = started(starts)
    assert first == old.pid
    assert (await status(jitpc_id))["pid"] == second


async def test_clients_that_restart_together_start_one_server(jitpc_id: str, starts: Path) -> None:
    """Three clients of one process find the old server together: it is stopped once, one
    new daemon is started, and all three talk to it."""
    async with running("1", jitpc_id, starts) as old:
        hook = spawn("2", jitpc_id, starts)
        clients = [
            jitpc.connect(
                jitpc_id, version="2", on_mismatch="restart", spinup=hook, connect_timeout=HANG
            )
            for _ in range(3)
        ]
        try:
            answers = await asyncio.gather(*(c.request("rpc.status") for c in clients))
        finally:
            for client in clients:
                await client.end()
        assert await asyncio.wait_for(old.wait(), HANG) == 0
    assert {answer["version"] for answer in answers} == {"2"}
    assert len({answer["pid"] for answer in answers}) == 1
    assert started(starts) == [old.pid, answers[0]["pid"]]


async def test_processes_that_restart_together_start_one_server(
    jitpc_id: str, starts: Path
) -> None:
    """The herd across processes: two client processes restart the same old server at once;
    it stops, one new daemon starts (the spawn lock), and both end up with it."""
    async with running("1", jitpc_id, starts) as old:
        herd = [
            await asyncio.create_subprocess_exec(
                *peer_command("versioned_client.py", jitpc_id, "2", starts),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=python_env(),
            )
            for _ in range(2)
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in herd)), HANG)
        ends = [(p.returncode, err) for p, (_, err) in zip(herd, outputs, strict=True)]
        assert ends == [(0, b"")] * 2
        assert await asyncio.wait_for(old.wait(), HANG) == 0
    (new,) = {out for out, _ in outputs}
    version, pid = new.decode().split()
    assert version == "2"
    assert started(starts) == [old.pid, int(pid)]


async def test_each_reconnect_is_checked(jitpc_id: str, starts: Path) -> None:
    """With reconnect, the server met after the first one went away is checked too."""
    async with running("1", jitpc_id, starts) as old:
        client = jitpc.connect(
            jitpc_id,
            version="1",
            reconnect=True,
            spinup=spawn("2", jitpc_id, starts),
            connect_timeout=HANG,
        )
        async with client:
            await client.request("rpc.shutdown")
            assert await asyncio.wait_for(old.wait(), HANG) == 0
            with pytest.raises(jitpc.VersionMismatch) as caught:
                await client.request("inc", {"key": "a"})
            assert (caught.value.expected, caught.value.found) == ("1", "2")
            assert not client.closed


async def test_the_sync_facade_checks_too(jitpc_id: str, starts: Path) -> None:
    def check() -> None:
        with jitpc.sync.connect(jitpc_id, version="1", methods=[IncA], timeout=HANG) as client:
            assert client.call(IncA(key="a")) == 1
        with jitpc.sync.connect(jitpc_id, version="2", timeout=HANG) as client:
            with pytest.raises(jitpc.VersionMismatch) as caught:
                client.request("rpc.ping")
            assert (caught.value.expected, caught.value.found) == ("2", "1")

    async with running("1", jitpc_id, starts):
        await asyncio.to_thread(check)  # (the sync API blocks: not on this loop)


def test_arguments_are_checked_at_connect(jitpc_id: str) -> None:
    def hook() -> None: ...

    for connect in (jitpc.connect, jitpc.sync.connect):
        with pytest.raises(ValueError, match="on_mismatch"):
            connect(jitpc_id, version="1", on_mismatch="retry")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Method subclasses"):
            connect(jitpc_id, methods=[int])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="iterable"):
            connect(jitpc_id, methods=IncA)
        with pytest.raises(TypeError, match="Method subclasses"):
            connect(jitpc_id, methods=[jitpc.Method[int]])
        with pytest.raises(TypeError, match="version"):
            connect(jitpc_id, version=2)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="spinup"):
            connect(jitpc_id, version="1", on_mismatch="restart")
        with pytest.raises(ValueError, match="connect_timeout=0"):
            connect(jitpc_id, version="1", connect_timeout=0, spinup=hook)
        connect(jitpc_id, version="1", on_mismatch="restart", spinup=hook)
        connect(jitpc_id, methods=(m for m in [IncA]), connect_timeout=0.5)
        connect(jitpc_id, connect_timeout=0)  # nothing to check: 0 is fine


# -- a Node jitpc server: no rpc.status, no rpc.shutdown -------------------------------------


@asynccontextmanager
async def node_server(jitpc_id: str) -> AsyncIterator[asyncio.subprocess.Process]:
    assert NODE is not None
    env = dict(os.environ, NODE_PATH=str(ensure_node_jitpc()))
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(Path(__file__).parent / "node" / "server.js"),
        jitpc_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert await line(proc) == "listening"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        await reap(proc)


@needs_node
async def test_a_node_server_reports_no_version(jitpc_id: str) -> None:
    async with node_server(jitpc_id) as proc:
        with pytest.raises(jitpc.VersionMismatch) as caught:
            await jitpc.connect(jitpc_id, version="2", methods=[IncA]).open()
        error = caught.value
        assert (error.expected, error.found, error.methods) == ("2", None, ("inc",))
        assert str(error) == (
            f"jitpc server {jitpc_id!r} runs no version (a server without rpc.status, such "
            "as Node jitpc), not '2' (methods that differ: inc)"
        )
        async with jitpc.connect(jitpc_id) as client:
            assert await client.request("whoami", timeout=HANG) == "node"
        assert proc.returncode is None


@needs_node
async def test_a_node_server_cannot_be_restarted(jitpc_id: str) -> None:
    calls: list[None] = []
    async with node_server(jitpc_id) as proc:
        client = jitpc.connect(
            jitpc_id,
            version="2",
            on_mismatch="restart",
            spinup=lambda: calls.append(None),
            connect_timeout=HANG,
        )
        with pytest.raises(jitpc.VersionMismatch) as caught:
            await client.open()
        assert caught.value.found is None
        assert str(caught.value).endswith("; it cannot be restarted: it has no rpc.shutdown")
        async with jitpc.connect(jitpc_id) as other:
            assert await other.request("whoami", timeout=HANG) == "node"
        assert proc.returncode is None
    assert calls == []


def test_the_error_pickles() -> None:
    import pickle

    error = jitpc.VersionMismatch(
        "m", server_id="s", path="p", expected="2", found=None, methods=("inc",)
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is jitpc.VersionMismatch
    assert (str(copy), copy.server_id, copy.path, copy.expected, copy.found, copy.methods) == (
        "m",
        "s",
        "p",
        "2",
        None,
        ("inc",),
    )
