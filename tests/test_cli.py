"""The ``jitpc`` command line, run as a subprocess against real servers: the echo server,
``tests/peers/cli_*.py``, and the Node package's server (``tests/node/server.js``) when node
and npm are on PATH."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

import support
from jitpc import __version__
from jitpc.__main__ import main
from jitpc.testing import DaemonFactory
from support import run_cli as jitpc

pytestmark = pytest.mark.anyio

NODE = shutil.which("node")


def strict_json(text: str) -> Any:
    """``text`` as strict JSON: no NaN, Infinity or -Infinity."""

    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=reject)


async def next_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), support.HANG)).decode().rstrip("\n")


@asynccontextmanager
async def peer(*argv: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run a server process and yield it once it has printed ``listening``; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert await next_line(proc) == "listening"
        yield proc
    finally:
        await support.reap(proc)


Peer = AbstractAsyncContextManager[asyncio.subprocess.Process]


def raw_server(jitpc_id: str, reply: str) -> Peer:
    """``tests/peers/cli_raw_server.py``: answers every request with ``{"id":…,REPLY}``."""
    argv = support.peer_command("cli_raw_server.py", jitpc_id, reply)
    return peer(*argv, env=support.python_env())


#: What Node jitpc 2.2.7 answers for a method it does not have (no ``code``).
NODE_UNKNOWN = '"error":{"message":"Unknown method: rpc.status"}'


@contextmanager
def silent_server(path: Path) -> Iterator[None]:
    """A socket that listens and never accepts: a connect succeeds, nothing ever answers."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        yield


def node_server(node_modules: Path, jitpc_id: str) -> Peer:
    """``tests/node/server.js``: a Node jitpc 2.2.7 server (no rpc.ping, rpc.status)."""
    assert NODE is not None
    script = support.ROOT / "tests" / "node" / "server.js"
    env = support.python_env(NODE_PATH=str(node_modules))
    return peer(NODE, str(script), jitpc_id, env=env)


async def test_call_prints_the_result(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("call", jitpc_id, "echo", '{"a": [1, "\\u00e9", null]}')
    assert (run.code, run.err) == (0, "")
    assert run.out.count("\n") == 1
    assert json.loads(run.out) == {"a": [1, "é", None]}

    pretty = await jitpc("call", "--pretty", jitpc_id, "echo", "[1, 2]")
    assert pretty.code == 0
    assert pretty.out == "[\n  1,\n  2\n]\n"

    no_params = await jitpc("call", jitpc_id, "echo")
    assert (no_params.code, no_params.out) == (0, "null\n")

    waited = await jitpc("call", "--wait", jitpc_id, "echo", '"hi"')
    assert (waited.code, waited.out) == (0, '"hi"\n')


async def test_call_reads_params_from_stdin(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("call", jitpc_id, "echo", "-", stdin=b'{"from": "stdin"}\n')
    assert (run.code, json.loads(run.out)) == (0, {"from": "stdin"})


async def test_call_remote_error_exits_1_with_the_error_on_stderr(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("call", jitpc_id, "fail", '"E_BOOM"')
    assert (run.code, run.out) == (1, "")
    assert json.loads(run.err) == {"message": "failed on purpose", "code": "E_BOOM"}

    missing = await jitpc("call", jitpc_id, "no.such.method")
    assert missing.code == 1
    assert json.loads(missing.err)["code"] == -32601


async def test_notify(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    daemon = await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("notify", jitpc_id, "echo", '{"x": 1}')
    assert (run.code, run.out, run.err) == (0, "", "")
    assert daemon.returncode is None  # still serving
    # The notification went through the same server, which still answers.
    assert (await jitpc("call", jitpc_id, "echo", "1")).out == "1\n"


async def test_notify_without_a_server_exits_2(jitpc_id: str) -> None:
    run = await jitpc("notify", jitpc_id, "echo")
    assert run.code == 2
    assert jitpc_id in run.err


async def test_ping_alive(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("ping", jitpc_id)
    assert (run.code, run.out) == (0, "alive\n")


async def test_ping_without_a_server_fails_fast(jitpc_id: str) -> None:
    run = await jitpc("ping", jitpc_id)
    assert (run.code, run.out) == (2, "no server\n")
    # Tried once (connect_timeout=0), so the message suggests waiting.
    assert "tried once; try --wait?" in run.err, run.err


async def test_call_without_a_server_fails_fast(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    run = await jitpc("call", jitpc_id, "echo", "1")
    assert (run.code, run.out) == (2, "")
    assert "no server" in run.err and str(jitpc_tmpdir / f"{jitpc_id}.sock") in run.err
    assert "no socket file" in run.err
    assert "try --wait?" in run.err


async def test_stale_socket_file_means_no_server(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    path = str(jitpc_tmpdir / f"{jitpc_id}.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)  # bound, never listening: connecting is refused
    run = await jitpc("call", jitpc_id, "echo")
    assert run.code == 2
    assert "stale socket file" in run.err
    assert "try --wait?" in run.err


async def test_where(jitpc_daemon: DaemonFactory, jitpc_id: str, jitpc_tmpdir: Path) -> None:
    expected = [
        f"socket: {jitpc_tmpdir / jitpc_id}.sock",
        f"lock:   {jitpc_tmpdir / jitpc_id}.lock",
    ]
    idle = await jitpc("where", jitpc_id)
    assert idle.code == 0
    assert idle.out.splitlines() == [*expected, "server: not listening"]
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    busy = await jitpc("where", jitpc_id)
    assert busy.code == 0
    assert busy.out.splitlines() == [*expected, "server: listening"]


async def test_discover(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("discover", jitpc_id)
    assert run.code == 0
    document = json.loads(run.out)
    assert document["openrpc"].startswith("1.3")
    assert document["info"]["title"] == jitpc_id
    assert isinstance(document["methods"], list)


@pytest.mark.parametrize("params", ["{bad", "", "NaN", "[1, Infinity]", "1 2"])
async def test_invalid_json_exits_64(jitpc_id: str, params: str) -> None:
    run = await jitpc("call", jitpc_id, "echo", params)
    assert (run.code, run.out) == (64, "")
    assert "not valid JSON" in run.err


async def test_usage_errors_exit_64(jitpc_id: str) -> None:
    assert (await jitpc()).code == 64
    assert (await jitpc("nope", jitpc_id)).code == 64
    assert (await jitpc("call", jitpc_id)).code == 64
    too_long = await jitpc("ping", "x" * 200)
    assert too_long.code == 64
    assert "limit" in too_long.err


async def test_help_exits_0_and_documents_the_exit_codes() -> None:
    run = await jitpc("--help")
    assert run.code == 0
    assert "exit codes:" in run.out
    for code in ("0", "1", "2", "3", "4", "64"):
        assert f"\n  {code} " in run.out
    for command in ("call", "notify", "ping", "status", "where", "discover"):
        assert command in run.out
        usage = await jitpc(command, "--help")
        assert usage.code == 0
        assert "--timeout SECONDS" in usage.out and "--connect-timeout SECONDS" in usage.out


def test_help_is_the_same_whichever_way_it_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    # (A command given first gets a parser that knows only that command: it must not show.)
    def shown(*argv: str) -> str:
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    whole = shown("--help")
    assert shown("-h", "call") == whole
    for command in ("call", "notify", "ping", "status", "where", "discover", "ls", "stop", "logs"):
        assert f"\n    {command} " in whole, command
        assert shown(command, "--help").startswith(f"usage: jitpc {command} ")


def test_main_returns_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["call", "x", "echo", "{"]) == 64
    assert main(["bogus"]) == 64
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["ping", "x", "--timeout", "-1"]) == 64
    assert "--timeout: not a non-negative number" in capsys.readouterr().err


# -- --timeout -----------------------------------------------------------------------------------


async def test_timeout_cuts_a_call_short_and_cancels_it(jitpc_id: str) -> None:
    sleeper = support.peer_command("cli_sleeper.py", jitpc_id)
    async with peer(*sleeper, env=support.python_env()) as server:
        run = await jitpc("call", "--timeout", "0.2", jitpc_id, "sleep")
        assert (run.code, run.out) == (4, "")
        assert "timed out after 0.2 s (--timeout)" in run.err
        assert f"waiting for the server for {jitpc_id!r} to answer" in run.err
        # The handler started, and the server cancelled it once the CLI gave up.
        assert await next_line(server) == "started"
        assert await next_line(server) == "cancelled"


@pytest.mark.parametrize("command", ["call", "ping", "status", "where", "discover"])
async def test_timeout_against_a_server_that_never_answers(
    jitpc_id: str, jitpc_tmpdir: Path, command: str
) -> None:
    with silent_server(jitpc_tmpdir / f"{jitpc_id}.sock"):
        args = ["echo"] if command == "call" else []
        run = await jitpc(command, jitpc_id, "--timeout", "0.1", *args)
    assert run.code == 4, run
    assert "to answer" in run.err
    if command == "ping":
        assert run.out == "timed out\n"
    elif command == "where":
        assert run.out.splitlines()[-1] == "server: not answering"
    else:
        assert run.out == ""


async def test_timeout_while_waiting_for_a_server(jitpc_id: str) -> None:
    run = await jitpc("ping", "--wait", "--timeout", "0.1", jitpc_id)
    assert (run.code, run.out) == (4, "timed out\n")
    assert f"waiting for a server for {jitpc_id!r}" in run.err

    where = await jitpc("where", "--connect-timeout", "60", "--timeout", "0.1", jitpc_id)
    assert where.code == 4
    assert where.out.splitlines()[-1] == "server: not listening"


async def test_timeout_that_does_not_expire(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("call", "--timeout", "60", jitpc_id, "echo", "[1]")
    assert (run.code, run.out, run.err) == (0, "[1]\n", "")
    notify = await jitpc("notify", "--timeout", "60", jitpc_id, "echo")
    assert (notify.code, notify.err) == (0, "")


@pytest.mark.parametrize("option", ["--timeout", "--connect-timeout"])
@pytest.mark.parametrize("value", ["-1", "abc", "", "nan", "inf", "1e400"])
async def test_bad_seconds_exit_64(jitpc_id: str, option: str, value: str) -> None:
    run = await jitpc("call", jitpc_id, "echo", f"{option}={value}")
    assert (run.code, run.out) == (64, "")
    assert f"argument {option}: not a non-negative number of seconds" in run.err


# -- --connect-timeout and --wait ----------------------------------------------------------------


async def test_connect_timeout_without_a_server_exits_2(jitpc_id: str) -> None:
    for args in (["--connect-timeout", "0.1"], ["--wait", "--connect-timeout", "0.1"]):
        run = await jitpc("call", *args, jitpc_id, "echo")
        assert (run.code, run.out) == (2, "")
        assert f"no server for {jitpc_id!r}" in run.err
        assert "after trying for 0.1 s" in run.err
        assert "--wait" not in run.err  # it would not help: this already waited

    once = await jitpc("ping", "--connect-timeout", "0", jitpc_id)
    assert (once.code, once.out) == (2, "no server\n")
    assert "after trying for 0 s" in once.err and "--wait" not in once.err


async def test_connect_timeout_finds_a_server_that_starts_meanwhile(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    # Whichever comes first, the CLI's first try or the server, the call must succeed.
    cli = asyncio.ensure_future(jitpc("call", "--connect-timeout", "60", jitpc_id, "echo", "7"))
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await cli
    assert (run.code, run.out, run.err) == (0, "7\n", "")


# -- ping, status --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ['"result":{}', NODE_UNKNOWN])
async def test_ping_sends_rpc_ping_and_any_answer_means_alive(jitpc_id: str, reply: str) -> None:
    async with raw_server(jitpc_id, reply) as server:
        run = await jitpc("ping", jitpc_id)
        assert (run.code, run.out, run.err) == (0, "alive\n", "")
        assert await next_line(server) == '"rpc.ping"'


async def test_status(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    daemon = await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    run = await jitpc("status", jitpc_id)
    assert (run.code, run.err) == (0, "")
    assert run.out.count("\n") == 1
    status = strict_json(run.out)
    assert status["id"] == jitpc_id
    assert status["pid"] == daemon.pid
    assert status["jitpc"] == __version__
    assert isinstance(status["uptime"], int | float) and status["uptime"] >= 0
    assert status["clients"] == 1  # this CLI
    assert isinstance(status["in_flight"], int)
    assert "echo" in status["methods"] and "rpc.status" in status["methods"]
    assert status["methods"] == sorted(status["methods"])

    pretty = await jitpc("status", "--pretty", jitpc_id)
    assert pretty.code == 0
    assert pretty.out.startswith("{\n  ")
    assert strict_json(pretty.out).keys() == status.keys()


async def test_status_of_a_server_without_rpc_status(jitpc_id: str, jitpc_tmpdir: Path) -> None:
    async with raw_server(jitpc_id, NODE_UNKNOWN) as server:
        run = await jitpc("status", jitpc_id)
        assert await next_line(server) == '"rpc.status"'
    assert run.code == 0
    assert strict_json(run.out) == {
        "id": jitpc_id,
        "socket": str(jitpc_tmpdir / f"{jitpc_id}.sock"),
        "alive": True,
        "status": None,
    }
    assert run.err == (
        f"jitpc: the server for {jitpc_id!r} has no method rpc.status (a Node jitpc server, "
        "probably); its status is null\n"
    )


async def test_discover_of_a_server_without_rpc_discover(jitpc_id: str) -> None:
    reply = '"error":{"message":"Unknown method: rpc.discover"}'  # Node's, no code
    async with raw_server(jitpc_id, reply) as server:
        run = await jitpc("discover", jitpc_id)
        assert await next_line(server) == '"rpc.discover"'
    assert (run.code, run.out) == (1, "")
    assert run.err == (
        f"jitpc: the server for {jitpc_id!r} has no method rpc.discover (a Node jitpc server, "
        "probably)\n"
    )


@pytest.mark.parametrize("command", ["status", "discover"])
async def test_status_and_discover_failing_otherwise_exit_1(jitpc_id: str, command: str) -> None:
    # Only a missing method gets the sentence (and status its fallback): not any error.
    async with raw_server(jitpc_id, '"error":{"message":"busy","code":"E_BUSY"}'):
        run = await jitpc(command, jitpc_id)
    assert (run.code, run.out) == (1, "")
    assert strict_json(run.err) == {"message": "busy", "code": "E_BUSY"}


async def test_status_without_a_server_exits_2(jitpc_id: str) -> None:
    run = await jitpc("status", jitpc_id)
    assert (run.code, run.out) == (2, "")
    assert "no server" in run.err and "try --wait?" in run.err


async def test_ping_and_status_against_node(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as server:
        ping = await jitpc("ping", jitpc_id)
        assert (ping.code, ping.out) == (0, "alive\n")
        status = await jitpc("status", "--timeout", "60", jitpc_id)
        assert status.code == 0
        assert strict_json(status.out)["status"] is None
        assert status.err == (
            f"jitpc: the server for {jitpc_id!r} has no method rpc.status (a Node jitpc "
            "server, probably); its status is null\n"
        )
        discover = await jitpc("discover", "--pretty", jitpc_id)
        assert (discover.code, discover.out) == (1, "")
        assert discover.err == (
            f"jitpc: the server for {jitpc_id!r} has no method rpc.discover (a Node jitpc "
            "server, probably)\n"
        )
        where = await jitpc("where", jitpc_id)
        assert where.out.splitlines()[-1] == "server: listening"
        assert server.returncode is None


# -- strict JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["call", "status", "discover"])
async def test_numbers_beyond_float_range_print_as_strict_json(jitpc_id: str, command: str) -> None:
    # Read as infinity (as JSON.parse does), written null (as JSON.stringify does).
    result = '[1e400,-1e400,{"x":[1e999]},1.5]'
    method = ["m"] if command == "call" else []
    async with raw_server(jitpc_id, f'"result":{result}'):
        for pretty in ([], ["--pretty"]):
            run = await jitpc(command, *pretty, jitpc_id, *method)
            assert (run.code, run.err) == (0, ""), run
            assert strict_json(run.out) == [None, None, {"x": [None]}, 1.5]
            assert run.out.startswith("[\n  null,") if pretty else run.out.count("\n") == 1
    error = '"error":{"message":"big","code":1,"data":[1e400]}'
    async with raw_server(jitpc_id, error):
        failed = await jitpc("call", jitpc_id, "m")
        assert failed.code == 1
        assert strict_json(failed.err)["data"] == [None]


async def test_params_beyond_float_range_exit_64(jitpc_id: str) -> None:
    run = await jitpc("call", jitpc_id, "echo", "[1, 1e400]")
    assert (run.code, run.out) == (64, "")
    assert "1e400, beyond the range of a float" in run.err


# -- params that cannot be sent ------------------------------------------------------------------

DEEP = (
    "PARAMS_JSON nests deeper than 200 levels, jitpc's limit (a value inside the innermost "
    "array or object is a level too: [[1]] has 3)"
)
#: Messages that point at a remedy this command has no way to use.
USELESS_HINTS = ("set_int_max_str_digits", "utf-8-sig", "--wait", "Traceback")


def one_line_usage_error(code: int, err: str) -> str:
    """The message of a usage error: exit 64 and one line on stderr, no traceback."""
    assert code == 64, err
    assert err.startswith("jitpc: ") and err.count("\n") == 1, err
    for hint in USELESS_HINTS:
        assert hint not in err
    return err


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("[" * 100_000, DEEP),  # json.loads would raise RecursionError
        ('{"a":' * 100_000, DEEP),
        ("[" * 201 + "]" * 201, DEEP),
        ("[" * 200 + "1" + "]" * 200, DEEP),  # the 1 is level 201
        ('{"a":' * 199 + "[{}]" + "}" * 199, DEEP),
        ("1" * 4301, "PARAMS_JSON holds an integer of 4,301 digits; jitpc sends at most 4,300"),
        (
            "[-" + "9" * 5000 + "]",
            "PARAMS_JSON holds an integer of 5,000 digits; jitpc sends at most 4,300",
        ),
        ('"\udcff"', "PARAMS_JSON is not valid UTF-8"),  # argv bytes that were not UTF-8
        ("", "PARAMS_JSON is not valid JSON: it is empty"),
        (" \t\r\n", "PARAMS_JSON is not valid JSON: it is empty"),
        ("\ufeff[1]", "PARAMS_JSON is not valid JSON: it starts with a byte order mark"),
        ("[1,]", "PARAMS_JSON is not valid JSON: Expecting value: line 1 column 4 (char 3)"),
        ("[-Infinity]", "PARAMS_JSON is not valid JSON: -Infinity is not JSON"),
        ("1e400", "PARAMS_JSON holds 1e400, beyond the range of a float"),
    ],
)
def test_params_that_cannot_be_sent_are_usage_errors(
    capsys: pytest.CaptureFixture[str], params: str, message: str
) -> None:
    for command in ("call", "notify"):
        code = main([command, "x", "m", params])
        out, err = capsys.readouterr()
        assert out == ""
        assert one_line_usage_error(code, err) == f"jitpc: {message}\n"


class FailingStdin:
    """A stdin whose read fails, as a read from a terminal of another session does (EIO)."""

    class buffer:  # as sys.stdin.buffer
        @staticmethod
        def read() -> bytes:
            raise OSError(5, "Input/output error")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "PARAMS_JSON is not valid JSON: it is empty"),
        (b"\n", "PARAMS_JSON is not valid JSON: it is empty"),
        (b'"\xff"', "PARAMS_JSON on stdin is not valid UTF-8 (invalid start byte at offset 1)"),
        # An encoded surrogate, which a jitpc server rejects too.
        (
            b'"\xed\xa0\x80"',
            "PARAMS_JSON on stdin is not valid UTF-8 (invalid continuation byte at offset 1)",
        ),
        (b"\xef\xbb\xbf[1]", "PARAMS_JSON is not valid JSON: it starts with a byte order mark"),
        (b"[" * 100_000, DEEP),
        (
            b"[" + b"7" * 4301 + b"]",
            "PARAMS_JSON holds an integer of 4,301 digits; jitpc sends at most 4,300",
        ),
        (
            b"{bad",
            "PARAMS_JSON is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
    ],
)
def test_params_from_stdin_that_cannot_be_sent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: bytes, message: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = main(["call", "x", "m", "-"])
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line_usage_error(code, err) == f"jitpc: {message}\n"


def test_unreadable_stdin_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # started with fd 0 closed
    code = main(["call", "x", "m", "-"])
    message = "jitpc: PARAMS_JSON is '-', but there is no stdin to read it from\n"
    assert one_line_usage_error(code, capsys.readouterr().err) == message

    monkeypatch.setattr(sys, "stdin", FailingStdin())
    code = main(["notify", "x", "m", "-"])
    message = "jitpc: cannot read PARAMS_JSON from stdin: Input/output error\n"
    assert one_line_usage_error(code, capsys.readouterr().err) == message


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("", "METHOD must not be empty"),  # it would be read as a response, never answered
        ("\udcff", "METHOD is not valid UTF-8"),
    ],
)
def test_unusable_method_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], method: str, message: str
) -> None:
    for command in ("call", "notify"):
        code = main([command, "x", method])
        assert one_line_usage_error(code, capsys.readouterr().err) == f"jitpc: {message}\n"


async def test_params_at_the_limits_are_sent(jitpc_daemon: DaemonFactory, jitpc_id: str) -> None:
    # 200 levels each, the innermost value included; a 4,300-digit integer.
    big = "-" + "9" * 4300
    cases = ["[" * 199 + big + "]" * 199, '{"a":' * 198 + "[" + big + "]" + "}" * 198]
    cases.append("[" * 200 + "]" * 200)
    await jitpc_daemon.start(support.echo_daemon(jitpc_id), env=support.python_env())
    for deep in cases:
        run = await jitpc("call", jitpc_id, "echo", deep)
        assert (run.code, run.err) == (0, "")
        assert json.loads(run.out) == json.loads(deep)
        piped = await jitpc("call", jitpc_id, "echo", "-", stdin=deep.encode())
        assert (piped.code, piped.out) == (0, run.out)


async def test_params_errors_in_a_real_process(jitpc_id: str) -> None:
    # Through the interpreter's own argv and stdin decoding: bytes that are not UTF-8, an
    # empty stdin, a nesting bomb. Nothing is sent: no server is needed.
    cases = [
        ((b'"\xff"',), b"", "jitpc: PARAMS_JSON is not valid UTF-8\n"),
        ((b"-",), b"", "jitpc: PARAMS_JSON is not valid JSON: it is empty\n"),
        (
            (b"-",),
            b"\xff",
            "jitpc: PARAMS_JSON on stdin is not valid UTF-8 (invalid start byte at offset 0)\n",
        ),
        ((b"-",), b"[" * 100_000, f"jitpc: {DEEP}\n"),
        ((b"[" * 100_000,), b"", f"jitpc: {DEEP}\n"),
    ]
    for params, stdin, message in cases:
        run = await jitpc("call", jitpc_id, "echo", *params, stdin=stdin)
        assert (run.code, run.out, run.err) == (64, "", message)


# -- bad options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["call", "notify", "ping", "status", "where", "discover"])
@pytest.mark.parametrize("where", ["after", "before the id"])
def test_bad_option_after_a_command_prints_its_usage(
    capsys: pytest.CaptureFixture[str], command: str, where: str
) -> None:
    rest = ["x", "m"] if command in ("call", "notify") else ["x"]
    argv = [command, *rest, "--bogus"] if where == "after" else [command, "--bogus", *rest]
    assert main(argv) == 64
    out, err = capsys.readouterr()
    assert out == ""
    usage, _, last = err.rstrip("\n").rpartition("\n")
    assert usage.startswith(f"usage: jitpc {command} [-h] ")
    assert last == f"jitpc {command}: error: unrecognized arguments: --bogus"


def test_bad_option_before_the_command_prints_the_top_level_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--bogus", "status", "x"]) == 64
    assert capsys.readouterr().err == (
        "usage: jitpc [-h] [--version] COMMAND ...\njitpc: error: unrecognized arguments: --bogus\n"
    )
    assert main(["status", "x", "--pretty", "extra"]) == 64
    assert capsys.readouterr().err.endswith("jitpc status: error: unrecognized arguments: extra\n")


async def test_bad_option_in_a_real_process() -> None:
    run = await jitpc("call", "x", "m", "--bogus")
    assert (run.code, run.out) == (64, "")
    assert run.err.startswith("usage: jitpc call [-h] ")
    assert run.err.endswith("jitpc call: error: unrecognized arguments: --bogus\n")
    status = await jitpc("status", "--nope", "x")
    assert status.code == 64
    assert status.err.startswith("usage: jitpc status [-h] ")
    assert status.err.endswith("jitpc status: error: unrecognized arguments: --nope\n")


# -- stdout closed -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["call", "where"])
async def test_closed_stdout_exits_141_without_a_traceback(jitpc_id: str, command: str) -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    try:
        async with support.server_process(jitpc_id):
            args = ["echo", "[1]"] if command == "call" else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jitpc",
                command,
                jitpc_id,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write,
                stderr=asyncio.subprocess.PIPE,
                env=support.python_env(),
            )
            os.close(write)
            write = -1
            _, err = await asyncio.wait_for(proc.communicate(), support.HANG)
    finally:
        if write != -1:
            os.close(write)
    assert (proc.returncode, err) == (141, b"")
