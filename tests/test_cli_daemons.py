"""The CLI's daemon commands, ``ls``, ``stop`` and ``logs``, run as subprocesses against real
server processes (``tests/peers/cli_daemon.py``, and Node jitpc's ``tests/node/server.js``
when node and npm are on PATH)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

import jitpc
import support
from jitpc.__main__ import main
from support import run_cli as cli

pytestmark = pytest.mark.anyio

NODE = shutil.which("node")
LINUX = sys.platform == "linux"  # where ls asks a lock without taking it, and peers' pids


async def next_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), support.HANG)).decode().rstrip("\n")


@asynccontextmanager
async def started(
    *argv: str, ready: str = "listening", env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run a process and yield it once it has printed ``ready``; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=support.python_env() if env is None else env,
    )
    try:
        assert await next_line(proc) == ready
        yield proc
    finally:
        await support.reap(proc)


Peer = AbstractAsyncContextManager[asyncio.subprocess.Process]


def daemon(jitpc_id: str, *options: str, version: str = "3.1.4") -> Peer:
    """``tests/peers/cli_daemon.py``: a jitpc server with a version."""
    return started(*support.peer_command("cli_daemon.py", jitpc_id, version, *options))


def node_server(node_modules: Path, jitpc_id: str) -> Peer:
    """``tests/node/server.js``: a Node jitpc server (no rpc.status, no rpc.shutdown)."""
    assert NODE is not None
    script = support.ROOT / "tests" / "node" / "server.js"
    return started(NODE, str(script), jitpc_id, env=support.python_env(NODE_PATH=str(node_modules)))


async def exited(proc: asyncio.subprocess.Process) -> int:
    """``proc``'s exit status, once it has exited by itself (bounded by HANG)."""
    return await asyncio.wait_for(proc.wait(), support.HANG)


async def free(jitpc_id: str) -> None:
    """Assert that ``jitpc_id`` is free: a new server gets it."""
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None, f"{jitpc_id!r} is still held"
    await server.close()


def snapshot(directory: Path) -> dict[str, tuple[int, ...]]:
    """Each file of ``directory``, with what says it is unchanged: the access time too (no
    lock file was read), but for a socket, whose every connect (any client's) touches it."""
    files: dict[str, tuple[int, ...]] = {}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        files[name] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if not stat.S_ISSOCK(st.st_mode):
            files[name] += (st.st_atime_ns,)
    return files


def table(text: str) -> list[list[str]]:
    """The rows of ``ls``'s table, header first, split into cells (STATE may hold spaces)."""
    return [line.split(None, 6) for line in text.splitlines()]


def aligned(text: str) -> bool:
    """Whether every cell of ``ls``'s table starts where its column's header does."""
    lines = text.splitlines()
    starts = [i for i, c in enumerate(lines[0]) if c != " " and (i == 0 or lines[0][i - 1] == " ")]
    return all(
        all(line[i] != " " and (i == 0 or line[i - 1] == " ") for i in starts) for line in lines
    )


# -- ls ------------------------------------------------------------------------------------------


async def test_ls_shows_each_server_with_its_pid_and_version(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    other = jitpc_id + "b"  # after jitpc_id: sorted by id
    async with daemon(jitpc_id) as proc:
        server = await support.echo_server(other)  # one in this process, without a version
        try:
            # One at a time: each would count the other's connection as a client.
            run = await cli("ls")
            as_json = await cli("ls", "--json")
            status = await cli("status", jitpc_id)
        finally:
            await server.close()
    assert (run.code, run.err) == (0, "")
    rows = table(run.out)
    assert rows[0] == ["ID", "PID", "VERSION", "JITPC", "UPTIME", "CLIENTS", "STATE"]
    assert [row[:4] for row in rows[1:]] == [
        [jitpc_id, str(proc.pid), "3.1.4", jitpc.__version__],
        [other, str(os.getpid()), "-", jitpc.__version__],
    ]
    # ls's own connection is not counted as a client; uptime is a duration ("0s", "1m02s").
    assert all(row[4].endswith("s") and row[5:] == ["0", "serving"] for row in rows[1:])
    assert aligned(run.out)

    assert (as_json.code, as_json.err, as_json.out.count("\n")) == (0, "", 1)
    first, second = json.loads(as_json.out)
    assert first == {
        "id": jitpc_id,
        "state": "serving",
        "pid": proc.pid,
        "version": "3.1.4",
        "jitpc": jitpc.__version__,
        "uptime": first["uptime"],
        "clients": 0,
        "note": None,
        "socket": str(jitpc_tmpdir / f"{jitpc_id}.sock"),
        "lock": str(jitpc_tmpdir / f"{jitpc_id}.lock"),
    }
    assert isinstance(first["uptime"], float) and first["uptime"] >= 0
    assert (second["id"], second["pid"], second["version"]) == (other, os.getpid(), None)

    assert status.code == 0
    assert json.loads(status.out)["version"] == "3.1.4"


def stale_files(directory: Path, jitpc_id: str) -> None:
    """What a crashed server leaves: a lock file nobody holds, a socket file nobody listens
    at; and jitpc.spawn's lock and log, which are no ids."""
    (directory / f"{jitpc_id}.lock").touch()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(directory / f"{jitpc_id}.sock"))
    (directory / f"{jitpc_id}.spawn.lock").touch()
    (directory / f"{jitpc_id}.log").write_text("a log\n")


HEADER = "ID  PID  VERSION  JITPC  UPTIME  CLIENTS  STATE\n"


async def test_ls_with_no_server_running(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    empty = await cli("ls")
    assert (empty.code, empty.out, empty.err) == (0, HEADER, "")

    stale_files(jitpc_tmpdir, jitpc_id)
    (jitpc_tmpdir / "other.lock").touch()
    run, everything = await asyncio.gather(cli("ls", "--json"), cli("ls", "--all", "--json"))
    assert (run.code, run.out, run.err) == (0, "[]\n", "")  # stale: not shown
    assert everything.code == 0
    listed = json.loads(everything.out)
    assert [(e["id"], e["state"]) for e in listed] == [("other", "stale"), (jitpc_id, "stale")]
    assert listed[1]["socket"] == str(jitpc_tmpdir / f"{jitpc_id}.sock")
    assert listed[0]["socket"] is None


async def test_ls_changes_no_file_and_starts_nothing(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    stale = jitpc_id + "x"
    stale_files(jitpc_tmpdir, stale)
    server = await support.echo_server(jitpc_id)
    try:
        before = snapshot(jitpc_tmpdir)
        run = await cli("ls", "--all", "--json")
        assert snapshot(jitpc_tmpdir) == before  # nothing made, removed, written or read
        listed = json.loads(run.out)
        assert [(e["id"], e["state"]) for e in listed] == [
            (jitpc_id, "serving"),
            (stale, "stale"),
        ]
        # Nothing was started for the stale id; the live server kept its id, and serves on.
        with pytest.raises(jitpc.ConnectError):
            await jitpc.connect(stale, connect_timeout=0).request("rpc.ping")
        assert await jitpc.listen(jitpc_id) is None
        async with jitpc.connect(jitpc_id, connect_timeout=0) as client:
            assert await client.request("echo", 1) == 1
    finally:
        await server.close()


@pytest.mark.skipif(not LINUX, reason="a held lock is known to ls without taking it on Linux")
async def test_ls_lists_a_server_that_does_not_answer(jitpc_id: str) -> None:
    wedged, locked = jitpc_id + "w", jitpc_id + "l"
    holder = support.peer_command("cli_lock_holder.py", locked)
    async with daemon(wedged) as proc, started(*holder, ready="locked"):
        async with jitpc.connect(wedged) as client:
            client.notify("wedge")
            assert await next_line(proc) == "wedged"
            run = await cli("ls", "--json", "--timeout", "0.2")
    assert run.code == 0
    listed = {e["id"]: e for e in json.loads(run.out)}
    assert listed.keys() == {wedged, locked}
    # Connected, but no answer: its pid from the socket's peer credentials.
    assert (listed[wedged]["state"], listed[wedged]["pid"]) == ("not answering", proc.pid)
    # Its lock held, no socket: a server between its lock and its listen.
    assert (listed[locked]["state"], listed[locked]["pid"]) == ("not answering", None)


async def test_ls_lists_a_node_server(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as proc:
        run = await cli("ls", "--json")
        assert proc.returncode is None
    assert (run.code, run.err) == (0, "")
    (entry,) = json.loads(run.out)
    pid = proc.pid if LINUX or sys.platform == "darwin" else None  # peer credentials
    assert entry == {
        "id": jitpc_id,
        "state": "serving",
        "pid": pid,
        "version": None,
        "jitpc": None,
        "uptime": None,
        "clients": None,
        "note": "no rpc.status: Node jitpc?",
        "socket": entry["socket"],
        "lock": entry["lock"],
    }


# -- stop ----------------------------------------------------------------------------------------


async def test_stop_shuts_the_server_down_and_frees_the_id(jitpc_id: str) -> None:
    async with daemon(jitpc_id) as proc:
        async with jitpc.connect(jitpc_id) as client:
            hanging = asyncio.ensure_future(client.request("hang"))
            assert await next_line(proc) == "hanging"
            # The request in flight keeps the id held for the grace: stop waits that long.
            run = await cli("stop", jitpc_id, "--grace", "0.5")
            await free(jitpc_id)  # as soon as stop returns
            with pytest.raises(jitpc.ClosedError):
                await hanging  # cancelled past the grace
        assert await next_line(proc) == "closed"
        assert await exited(proc) == 0
    assert (run.code, run.out) == (0, "")
    assert run.err.count("\n") == 1
    assert run.err.startswith(f"jitpc: stopped the server for {jitpc_id!r} (pid {proc.pid})")


async def test_stop_without_a_server_exits_2(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    run = await cli("stop", jitpc_id)
    assert (run.code, run.out) == (2, "")
    assert run.err.startswith(f"jitpc: no server for {jitpc_id!r}")
    assert os.listdir(jitpc_tmpdir) == []  # and it made no file


async def test_stop_a_server_that_does_not_release_the_id_in_time(jitpc_id: str) -> None:
    async with daemon(jitpc_id) as proc:
        async with jitpc.connect(jitpc_id) as client:
            hanging = asyncio.ensure_future(client.request("hang"))
            assert await next_line(proc) == "hanging"
            # The request in flight may finish within a grace longer than --timeout.
            run = await cli("stop", jitpc_id, "--grace", "60", "--timeout", "0.2")
            assert (run.code, run.out) == (4, "")
            assert run.err == (
                f"jitpc: the server for {jitpc_id!r} (pid {proc.pid}) still held the id 0.2 s "
                "after the request (--timeout); --force would signal it\n"
            )
            assert proc.returncode is None
            hanging.cancel()


async def test_stop_force_sends_sigterm(jitpc_id: str) -> None:
    async with daemon(jitpc_id) as proc:
        async with jitpc.connect(jitpc_id) as client:
            hanging = asyncio.ensure_future(client.request("hang"))
            assert await next_line(proc) == "hanging"
            # --kill-after is long: only SIGTERM can have freed the id.
            args = ("--grace", "60", "--timeout", "0.2", "--kill-after", "60")
            run = await cli("stop", jitpc_id, "--force", *args)
            assert await exited(proc) == -signal.SIGTERM
            await free(jitpc_id)  # when stop returns
            with pytest.raises(jitpc.ClosedError):
                await hanging
    assert run.code == 0
    assert run.err == (
        f"jitpc: stopped the server for {jitpc_id!r} (pid {proc.pid}) with SIGTERM: it "
        "still held the id 0.2 s after the request (--timeout)\n"
    )
    await free(jitpc_id)


@pytest.mark.skipif(not LINUX, reason="the pid of a server that answers nothing: peer credentials")
async def test_stop_force_sends_sigkill_to_a_server_that_ignores_sigterm(jitpc_id: str) -> None:
    async with daemon(jitpc_id, "--ignore-term") as proc:
        async with jitpc.connect(jitpc_id) as client:
            client.notify("wedge")
            assert await next_line(proc) == "wedged"
            unforced = await cli("stop", jitpc_id, "--timeout", "0.2")
            assert unforced.code == 4
            assert unforced.err == (
                f"jitpc: the server for {jitpc_id!r} did not answer rpc.shutdown within 0.2 s "
                "(--timeout); --force would signal it\n"
            )
            args = ("--timeout", "0.2", "--kill-after", "0.2")
            run = await cli("stop", jitpc_id, "--force", *args)
        assert await exited(proc) == -signal.SIGKILL
    assert run.code == 0
    assert run.err == (
        f"jitpc: stopped the server for {jitpc_id!r} (pid {proc.pid}) with SIGKILL: it did "
        "not answer rpc.shutdown within 0.2 s (--timeout)\n"
    )
    await free(jitpc_id)


async def test_stop_a_node_server(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as proc:
        run = await cli("stop", jitpc_id)
        assert run.code == 1
        assert run.err == (
            f"jitpc: the server for {jitpc_id!r} has no method rpc.shutdown (a Node jitpc "
            "server, probably); --force would signal it\n"
        )
        assert proc.returncode is None
        if not (LINUX or sys.platform == "darwin"):
            return  # its pid is not known here
        forced = await cli("stop", jitpc_id, "--force")
        assert await exited(proc) == -signal.SIGTERM
    assert forced.code == 0
    assert forced.err.startswith(
        f"jitpc: stopped the server for {jitpc_id!r} (pid {proc.pid}) with SIGTERM: it has no "
        "method rpc.shutdown"
    )
    await free(jitpc_id)


# -- logs ----------------------------------------------------------------------------------------


async def test_logs_prints_the_end_of_the_spawn_log(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    log = jitpc_tmpdir / f"{jitpc_id}.log"
    # Over jitpc.spawn's 1 MiB: the spawn moves it to <id>.log.1 before it appends.
    log.write_text(("x" * 99 + "\n") * 11000 + "".join(f"old {n}\n" for n in range(1, 21)))
    argv = support.peer_command("cli_daemon.py", jitpc_id, "1.0", "--say", "60")
    async with jitpc.connect(jitpc_id, spinup=jitpc.spawn(argv, env=support.python_env())) as c:
        try:
            await c.open()  # it spawns the daemon
            assert (jitpc_tmpdir / f"{jitpc_id}.log.1").stat().st_size > 1 << 20
            tail, three, more = await asyncio.gather(
                cli("logs", jitpc_id),
                cli("logs", jitpc_id, "-n", "3"),
                cli("logs", jitpc_id, "-n", "63"),
            )
        finally:
            await c.request("rpc.shutdown", {"grace": 0})  # the daemon exits
    # The log: spawn's header line, line 1 ... line 60 (stdout and stderr), listening.
    lines = [f"line {n}" for n in range(1, 61)] + ["listening"]
    assert (tail.code, tail.err) == (0, "")
    assert tail.out.splitlines() == lines[-50:]
    assert (three.code, three.out) == (0, "line 59\nline 60\nlistening\n")
    # More lines than the log has: it begins in the rotated one.
    assert more.code == 0
    older, header, *rest = more.out.splitlines()
    assert older == "old 20"
    assert header.startswith("--- ") and f"jitpc: process {os.getpid()} starts" in header
    assert rest == lines


async def test_logs_without_a_log_exits_2(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    run = await cli("logs", jitpc_id)
    assert (run.code, run.out) == (2, "")
    assert run.err == f"jitpc: no log for {jitpc_id!r} at {jitpc_tmpdir / jitpc_id}.log\n"


def test_logs_of_no_lines_of_a_line_being_written_and_of_the_rotated_log_alone(
    jitpc_id: str, jitpc_tmpdir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (jitpc_tmpdir / f"{jitpc_id}.log.1").write_bytes(b"a\nb\n")
    assert main(["logs", jitpc_id, "-n", "1"]) == 0
    assert capsysbinary.readouterr().out == b"b\n"
    (jitpc_tmpdir / f"{jitpc_id}.log").write_bytes(b"one\n\xff two\nthr")
    assert main(["logs", jitpc_id, "-n", "0"]) == 0
    assert capsysbinary.readouterr().out == b""
    assert main(["logs", jitpc_id, "-n", "2"]) == 0
    assert capsysbinary.readouterr().out == b"\xff two\nthr\n"  # bytes as written, ended


# -- help and usage ------------------------------------------------------------------------------


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    options = {
        "ls": ("--json", "--all", "--timeout SECONDS"),
        "stop": ("--force", "--timeout SECONDS", "--grace SECONDS", "--kill-after SECONDS"),
        "logs": ("-n LINES",),
    }
    for command, documented in options.items():
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(option in out for option in documented), out
        assert "exit codes:" in out
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert all(f"\n    {command} " in top for command in options)
    for argv in (
        ["stop"],
        ["logs"],
        ["ls", "extra"],
        ["stop", "x", "--timeout", "soon"],
        ["stop", "x", "--kill-after", "-1"],
        ["logs", "x", "-n", "-1"],
        ["stop", "x" * 200],
        ["logs", "x" * 200],
    ):
        assert main(argv) == 64, argv
        assert capsys.readouterr().out == ""
    assert main(["ls", "--bogus"]) == 64
    err = capsys.readouterr().err
    assert err.startswith("usage: jitpc ls [-h] ")
    assert err.endswith("jitpc ls: error: unrecognized arguments: --bogus\n")
