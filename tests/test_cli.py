"""The ``jitpc`` command line, run as a subprocess against a real echo server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import support
from jitpc.__main__ import main


@dataclass
class Run:
    code: int
    out: str
    err: str


async def jitpc(*args: str, stdin: bytes | None = None) -> Run:
    """Run ``python -m jitpc ARGS`` with this test's TMPDIR; wait for it, bounded by HANG."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jitpc",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=support.python_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin or b""), support.HANG)
    finally:
        await support.reap(proc)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_call_prints_the_result(server_id: str) -> None:
    async with support.server_process(server_id):
        run = await jitpc("call", server_id, "echo", '{"a": [1, "\\u00e9", null]}')
        assert (run.code, run.err) == (0, "")
        assert run.out.count("\n") == 1
        assert json.loads(run.out) == {"a": [1, "é", None]}

        pretty = await jitpc("call", "--pretty", server_id, "echo", "[1, 2]")
        assert pretty.code == 0
        assert pretty.out == "[\n  1,\n  2\n]\n"

        no_params = await jitpc("call", server_id, "echo")
        assert (no_params.code, no_params.out) == (0, "null\n")

        waited = await jitpc("call", "--wait", server_id, "echo", '"hi"')
        assert (waited.code, waited.out) == (0, '"hi"\n')


async def test_call_reads_params_from_stdin(server_id: str) -> None:
    async with support.server_process(server_id):
        run = await jitpc("call", server_id, "echo", "-", stdin=b'{"from": "stdin"}\n')
        assert (run.code, json.loads(run.out)) == (0, {"from": "stdin"})


async def test_call_remote_error_exits_1_with_the_error_on_stderr(server_id: str) -> None:
    async with support.server_process(server_id):
        run = await jitpc("call", server_id, "fail", '"E_BOOM"')
        assert (run.code, run.out) == (1, "")
        assert json.loads(run.err) == {"message": "failed on purpose", "code": "E_BOOM"}

        missing = await jitpc("call", server_id, "no.such.method")
        assert missing.code == 1
        assert json.loads(missing.err)["code"] == -32601


async def test_notify(server_id: str) -> None:
    async with support.server_process(server_id) as proc:
        run = await jitpc("notify", server_id, "echo", '{"x": 1}')
        assert (run.code, run.out, run.err) == (0, "", "")
        assert proc.returncode is None  # still serving
        # The notification went through the same server, which still answers.
        assert (await jitpc("call", server_id, "echo", "1")).out == "1\n"


async def test_notify_without_a_server_exits_2(server_id: str) -> None:
    run = await jitpc("notify", server_id, "echo")
    assert run.code == 2
    assert server_id in run.err


async def test_ping_alive(server_id: str) -> None:
    async with support.server_process(server_id):
        run = await jitpc("ping", server_id)
        assert (run.code, run.out) == (0, "alive\n")


async def test_ping_without_a_server_fails_fast(server_id: str) -> None:
    run = await jitpc("ping", server_id)
    assert (run.code, run.out) == (2, "no server\n")
    # Tried once: that message comes only from the refused spinup, before any back-off.
    assert "try --wait?" in run.err, run.err


async def test_call_without_a_server_fails_fast(server_id: str, jitpc_tmpdir: Path) -> None:
    run = await jitpc("call", server_id, "echo", "1")
    assert (run.code, run.out) == (2, "")
    assert "no server" in run.err and str(jitpc_tmpdir / f"{server_id}.sock") in run.err
    assert "no socket file" in run.err
    assert "try --wait?" in run.err


async def test_stale_socket_file_means_no_server(server_id: str, jitpc_tmpdir: Path) -> None:
    path = str(jitpc_tmpdir / f"{server_id}.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)  # bound, never listening: connecting is refused
    run = await jitpc("call", server_id, "echo")
    assert run.code == 2
    assert "stale socket file" in run.err
    assert "try --wait?" in run.err


async def test_where(server_id: str, jitpc_tmpdir: Path) -> None:
    expected = [
        f"socket: {jitpc_tmpdir / server_id}.sock",
        f"lock:   {jitpc_tmpdir / server_id}.lock",
    ]
    idle = await jitpc("where", server_id)
    assert idle.code == 0
    assert idle.out.splitlines() == [*expected, "server: not listening"]
    async with support.server_process(server_id):
        busy = await jitpc("where", server_id)
        assert busy.code == 0
        assert busy.out.splitlines() == [*expected, "server: listening"]


async def test_discover(server_id: str) -> None:
    async with support.server_process(server_id):
        run = await jitpc("discover", server_id)
        assert run.code == 0
        document = json.loads(run.out)
        assert document["openrpc"].startswith("1.3")
        assert document["info"]["title"] == server_id
        assert isinstance(document["methods"], list)


@pytest.mark.parametrize("params", ["{bad", "", "NaN", "[1, Infinity]", "1 2"])
async def test_invalid_json_exits_64(server_id: str, params: str) -> None:
    run = await jitpc("call", server_id, "echo", params)
    assert (run.code, run.out) == (64, "")
    assert "not valid JSON" in run.err


async def test_usage_errors_exit_64(server_id: str) -> None:
    assert (await jitpc()).code == 64
    assert (await jitpc("nope", server_id)).code == 64
    assert (await jitpc("call", server_id)).code == 64
    too_long = await jitpc("ping", "x" * 200)
    assert too_long.code == 64
    assert "limit" in too_long.err


async def test_help_exits_0_and_documents_the_exit_codes() -> None:
    run = await jitpc("--help")
    assert run.code == 0
    assert "exit codes:" in run.out
    for code in ("0", "1", "2", "3", "64"):
        assert f"\n  {code} " in run.out
    for command in ("call", "notify", "ping", "where", "discover"):
        assert command in run.out
        assert (await jitpc(command, "--help")).code == 0


def test_main_returns_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["call", "x", "echo", "{"]) == 64
    assert main(["bogus"]) == 64
    assert "not valid JSON" in capsys.readouterr().err
