"""``jitpc.spawn``: a daemon started detached, reached once it says it serves, one per herd.

Real processes throughout (``peers/spawn_daemon.py``, ``peers/spawn_client.py``). Every daemon
appends its pid to a file, so the tests count the daemons started; the ``daemons`` fixture kills
those still running at the end. Nothing here sleeps to synchronise or asserts on a duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import jitpc
import jitpc.sync
from jitpc import _spawn
from jitpc._lock import try_acquire
from support import HANG, peer_command, python_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        sys.platform != "linux", reason="the spawn tests read /proc to see zombies and descriptors"
    ),
]


@pytest.fixture
def starts(jitpc_tmpdir: Path) -> Iterator[Path]:
    """The file every daemon appends its pid to; the daemons still running are killed after."""
    path = jitpc_tmpdir / "starts"
    yield path
    for pid in started(path):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_daemon.py" in cmdline:
            os.kill(pid, signal.SIGKILL)  # if it is our child, its reaper thread reaps it


def started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def daemon(jitpc_id: str, starts: Path, *options: object) -> jitpc._spawn.Spawn:
    return jitpc.spawn(peer_command("spawn_daemon.py", jitpc_id, starts, *options))


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def pipes() -> set[str]:
    """The pipes this process has open."""
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if name.startswith("pipe:"):
            names.add(name)
    return names


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemons inherit our environment: make this jitpc importable there.
    monkeypatch.setenv("PYTHONPATH", python_env()["PYTHONPATH"])


async def test_a_spawned_daemon_is_reached_and_writes_to_its_log(
    jitpc_id: str, starts: Path, jitpc_tmpdir: Path
) -> None:
    """The daemon serves, its stdout and stderr are in ``<tmpdir>/<id>.log``, stdin is the null
    device, no descriptor of ours leaks into it (not even an inheritable one), and its listen()
    removed the readiness variable."""
    marker = jitpc_tmpdir / "marker"
    leaky = os.open(marker, os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leaky, True)
    try:
        async with jitpc.connect(jitpc_id, spinup=daemon(jitpc_id, starts)) as client:
            pid = await client.request("pid")
            fds = await client.request("fds")
            ready_env = await client.request("ready_env")
    finally:
        os.close(leaky)
    assert started(starts) == [pid]
    log = jitpc_tmpdir / f"{jitpc_id}.log"
    lines = log.read_text().splitlines()
    assert lines[0].startswith("--- ") and "spawn_daemon.py" in lines[0]
    assert f"daemon {pid} on stdout" in lines and f"daemon {pid} on stderr" in lines
    assert fds["0"] == "/dev/null"
    assert fds["1"] == fds["2"] == str(log)
    assert str(marker) not in fds.values()
    assert not [name for name in fds.values() if name.startswith("pipe:")]  # readiness: closed
    assert ready_env is None
    assert log.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("client_exits", [True, False], ids=["daemon-outlives", "daemon-exits"])
async def test_no_inherited_output_no_zombie_no_warning(
    jitpc_id: str, starts: Path, client_exits: bool
) -> None:
    """A client run as ``out=$(python client.py)`` would: its stdout and stderr are pipes.
    Under ``-X dev -W error`` the client ends cleanly, and its pipes reach their end while the
    daemon lives on (daemon-outlives: the daemon is then reparented), or the daemon quits while
    the client lives and the client reaps it (daemon-exits: no zombie)."""
    command = [sys.executable, "-X", "dev", "-W", "error", *peer_command("spawn_client.py")[1:]]
    command += [jitpc_id, str(starts)] + ([] if client_exits else ["--quit"])
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    out, err = await proc.communicate()  # the end of both pipes
    assert (proc.returncode, err) == (0, b"")
    (pid,) = started(starts)
    if client_exits:
        assert out.decode() == f"pid {pid}\n"
        assert alive(pid)  # the pipes ended while it runs: it never had them
        assert parent(pid) != proc.pid
    else:
        assert out.decode() == f"pid {pid}\nreaped {pid}\n"


async def test_a_daemon_that_crashes_is_reported_at_once(jitpc_id: str, starts: Path) -> None:
    """No back-off to wait out: with no deadline at all, the connect fails as the daemon
    exits, with its exit status and the end of its log."""
    hook = daemon(jitpc_id, starts, "--crash", 3)
    client = jitpc.connect(jitpc_id, spinup=hook, connect_timeout=None)
    with pytest.raises(jitpc.ConnectError) as info:
        await client.request("pid")
    (pid,) = started(starts)
    message = str(info.value)
    assert f"(pid {pid}: " in message and "exited with status 3 before it served" in message
    assert message.endswith(
        f"\n    daemon {pid} on stdout\n    daemon {pid} on stderr\n    crashing on purpose"
    )
    assert info.value.server_id == jitpc_id
    assert not alive(pid)


async def test_herd_of_processes_starts_one_daemon(jitpc_id: str, starts: Path) -> None:
    """20 client processes that find no server at the same moment start exactly one daemon,
    and all 20 are answered by it."""
    herd = 20
    command = [*peer_command("spawn_client.py", jitpc_id, starts), "--gate"]
    procs = [
        await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=python_env(),
        )
        for _ in range(herd)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
    results = await asyncio.gather(*(proc.communicate(b"go\n") for proc in procs))
    daemons = started(starts)
    assert len(daemons) == 1, daemons
    assert [proc.returncode for proc in procs] == [0] * herd
    assert {(out, err) for out, err in results} == {(f"pid {daemons[0]}\n".encode(), b"")}


async def test_concurrent_connects_in_one_process_spawn_once(jitpc_id: str, starts: Path) -> None:
    """20 connects of one process, each with its own hook, find no server together: one
    daemon is started, and it answers all of them."""
    clients = [jitpc.connect(jitpc_id, spinup=daemon(jitpc_id, starts)) for _ in range(20)]
    pids = await asyncio.gather(*(client.request("pid") for client in clients))
    for client in clients:
        await client.end()
    assert started(starts) == [pids[0]] and set(pids) == {pids[0]}


@pytest.mark.parametrize("how", ["destroy", "deadline"])
async def test_giving_up_leaves_the_daemon_to_come_up(
    jitpc_id: str, starts: Path, jitpc_tmpdir: Path, how: str
) -> None:
    """A connect cancelled (the client destroyed) or past its deadline while the daemon
    starts: the daemon is not
    killed, the readiness pipe is closed, the spawn lock is free; once the daemon comes up (its
    announcement now goes nowhere), a plain connect reaches it."""
    gate = jitpc_tmpdir / "gate"
    os.mkfifo(gate)
    hook = daemon(jitpc_id, starts, "--gate", gate)
    before = pipes()
    client = jitpc.connect(jitpc_id, spinup=hook, connect_timeout=3 if how == "deadline" else None)
    task = asyncio.ensure_future(client.request("pid"))
    # Opening the FIFO for writing returns once the daemon opened it: it waits at the gate.
    writer = await asyncio.to_thread(os.open, gate, os.O_WRONLY)
    try:
        if how == "destroy":
            client.destroy()  # cancels the connect attempt
            with pytest.raises(jitpc.ClosedError):
                await task
        else:
            with pytest.raises(jitpc.ConnectError, match="did not say it serves within"):
                await task
            assert "it runs on; the last lines of its log" in str(task.exception())
        assert pipes() == before
        lock = try_acquire(str(jitpc_tmpdir / f"{jitpc_id}.spawn.lock"))
        assert lock is not None
        lock.release()
        (pid,) = started(starts)
        assert alive(pid)
    finally:
        os.close(writer)  # the gate opens
    async with jitpc.connect(jitpc_id, connect_timeout=HANG) as late:
        assert await late.request("pid") == pid


async def test_a_daemon_serving_another_path_is_an_error(
    jitpc_id: str, starts: Path, jitpc_tmpdir: Path
) -> None:
    other = jitpc_tmpdir / "other"
    other.mkdir()
    hook = jitpc.spawn(
        peer_command("spawn_daemon.py", jitpc_id, starts), env=python_env(TMPDIR=str(other))
    )
    with pytest.raises(jitpc.ConnectError, match="TMPDIR differ"):
        await jitpc.connect(jitpc_id, spinup=hook, connect_timeout=None).open()


async def test_a_busy_daemon_counts_as_served(
    jitpc_id: str, starts: Path, jitpc_tmpdir: Path
) -> None:
    """Another process holds the id, but its socket is gone for now: the daemon says ``busy``,
    the hook returns, and the connect reaches the holder once it has re-created its socket."""
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    try:
        server.on_client(lambda client: client.respond("pid", lambda params: "holder"))
        (jitpc_tmpdir / f"{jitpc_id}.sock").unlink()
        client = jitpc.connect(jitpc_id, spinup=daemon(jitpc_id, starts))
        async with client:
            assert await client.request("pid") == "holder"
        (pid,) = started(starts)
        assert "busy" in (jitpc_tmpdir / f"{jitpc_id}.log").read_text().splitlines()
    finally:
        await server.close()


async def test_the_log_is_rotated_past_a_mebibyte(
    jitpc_id: str, starts: Path, jitpc_tmpdir: Path
) -> None:
    log = jitpc_tmpdir / f"{jitpc_id}.log"
    log.write_bytes(b"old\n" * (_spawn.LOG_MAX_BYTES // 4 + 1))
    log.chmod(0o600)
    async with jitpc.connect(jitpc_id, spinup=daemon(jitpc_id, starts)) as client:
        pid = await client.request("pid")
    assert (jitpc_tmpdir / f"{jitpc_id}.log.1").read_bytes().startswith(b"old\n")
    assert f"daemon {pid} on stdout" in log.read_text().splitlines()
    assert log.stat().st_size < 1024


async def test_the_hook_awaited_by_hand(jitpc_id: str, starts: Path) -> None:
    """With ``id=``, the hook may be awaited directly; without, it says what it needs."""
    with pytest.raises(TypeError, match="id="):
        await daemon(jitpc_id, starts)()
    hook = jitpc.spawn(peer_command("spawn_daemon.py", jitpc_id, starts), id=jitpc_id)
    await hook()
    (pid,) = started(starts)
    async with jitpc.connect(jitpc_id, connect_timeout=0) as client:
        assert await client.request("pid") == pid


async def test_a_command_that_cannot_start(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    hook = jitpc.spawn([str(jitpc_tmpdir / "no-such-program")])
    with pytest.raises(jitpc.ConnectError, match="cannot start the jitpc daemon"):
        await jitpc.connect(jitpc_id, spinup=hook, connect_timeout=HANG).open()
    with pytest.raises(TypeError):
        jitpc.spawn("python daemon.py")
    with pytest.raises(ValueError):
        jitpc.spawn([])


def test_announce_writes_only_to_its_own_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable inherited without its pipe (a daemon's own child) names some other file:
    announce() leaves it alone, and removes the variable either way."""
    r, w = os.pipe()
    other_r, other_w = os.pipe()
    try:
        monkeypatch.setenv(_spawn.READY_ENV, f"{other_w}:{os.fstat(w).st_ino}")
        _spawn.announce("listening", "/x.sock")
        assert _spawn.READY_ENV not in os.environ
        os.fstat(other_w)  # still open
        os.set_blocking(other_r, False)
        with pytest.raises(BlockingIOError):
            os.read(other_r, 100)
        monkeypatch.setenv(_spawn.READY_ENV, f"{w}:{os.fstat(w).st_ino}")
        _spawn.announce("busy", "/x.sock")
        _spawn.announce("listening", "/x.sock")  # the duty is done: nothing more
        said = json.loads(os.read(r, 1000))
        assert said == {"state": "busy", "socket": "/x.sock", "pid": os.getpid()}
        assert os.read(r, 1000) == b""  # closed
    finally:
        for fd in (r, other_r, other_w):
            os.close(fd)


def test_the_blocking_facade_runs_it_too(jitpc_id: str, starts: Path) -> None:
    with jitpc.sync.connect(jitpc_id, spinup=daemon(jitpc_id, starts)) as client:
        assert client.request("pid", timeout=HANG) == started(starts)[0]


async def test_a_connect_error_from_any_hook_is_passed_on(jitpc_id: str) -> None:
    """A hook that knows why there is no server says so itself: its ConnectError is not
    wrapped in "the spinup hook failed"."""
    own = jitpc.ConnectError("the daemon is disabled", server_id=jitpc_id, path="")

    async def hook() -> None:
        raise own

    with pytest.raises(jitpc.ConnectError) as info:
        await jitpc.connect(jitpc_id, spinup=hook).open()
    assert info.value is own
