"""Helpers shared by the tests: hang bounds and child processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "tests" / "peers"

#: A bound that only catches hangs: no correct run comes near it.
HANG = 60.0


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a Python child process: this one's, with the repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def peer_command(script: str, *args: Any) -> list[str]:
    """The command line that runs ``tests/peers/<script>`` with this interpreter."""
    return [sys.executable, str(PEERS / script), *map(str, args)]


def start_peer(script: str, *args: Any) -> subprocess.Popen[bytes]:
    """Run ``tests/peers/<script>`` and return it once it prints that it listens."""
    # Unbuffered, so that select() sees every line not read yet.
    proc = subprocess.Popen(
        peer_command(script, *args), stdout=subprocess.PIPE, bufsize=0, env=python_env()
    )
    assert read_line(proc) == b"listening\n"
    return proc


def stop_peer(proc: subprocess.Popen[bytes]) -> None:
    """Kill a peer from :func:`start_peer`, and wait for it (within HANG)."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(HANG)
    if proc.stdout is not None:
        proc.stdout.close()


def read_line(proc: subprocess.Popen[bytes]) -> bytes:
    """The next line ``proc`` prints (within HANG)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HANG)
    assert ready, "the peer printed nothing"
    return proc.stdout.readline()


def echo_daemon(jitpc_id: str, spindown: str = "off") -> list[str]:
    """The command line of ``tests/peers/echo_server.py`` serving ``jitpc_id``, for the
    ``jitpc_daemon`` fixture (with ``env=python_env()``)."""
    return peer_command("echo_server.py", jitpc_id, spindown)


@contextlib.asynccontextmanager
async def server_process(
    jitpc_id: str, spindown: str = "off"
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``tests/peers/echo_server.py`` and yield it once it listens; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        *peer_command("echo_server.py", jitpc_id, spindown),
        stdout=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), HANG)
        assert line == b"listening\n", line
        yield proc
    finally:
        await reap(proc)


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs, and wait for it."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    await asyncio.wait_for(proc.communicate(), HANG)


@dataclass
class Run:
    """How a ``python -m jitpc`` run ended."""

    code: int
    out: str
    err: str


async def run_cli(*args: str | bytes, stdin: bytes = b"") -> Run:
    """Run ``python -m jitpc ARGS`` with this test's TMPDIR, ``stdin`` on its standard input;
    wait for it, bounded by HANG."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jitpc",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), HANG)
    finally:
        await reap(proc)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def sample_responders(client: Any) -> None:
    """An ``on_client`` hook: a responder of each kind, each named for what it does: ``echo``,
    ``later`` (a coroutine), ``fail`` (a RemoteError of the params' code and data), ``crash``
    (a ValueError) and ``unencodable`` (a result no JSON can hold)."""
    import jitpc

    client.respond("echo", lambda params: params)

    async def later(params: Any) -> Any:
        await asyncio.sleep(0)
        return params

    def fail(params: Any) -> Any:
        raise jitpc.RemoteError("custom", params["code"], params.get("data"))

    def crash(params: Any) -> Any:
        raise ValueError("broken handler")

    client.respond("later", later)
    client.respond("fail", fail)
    client.respond("crash", crash)
    client.respond("unencodable", lambda params: object())


def echoing(**methods: Any) -> Callable[[Any], None]:
    """An ``on_client`` hook: each client is answered ``echo`` and ``methods`` (name ->
    responder)."""

    def on_client(client: Any) -> None:
        client.respond("echo", lambda p: p)
        for name, fn in methods.items():
            client.respond(name, fn)

    return on_client


async def echo_server(jitpc_id: str, **methods: Any) -> Any:
    """An in-process server (spindown off) whose every client answers ``echo`` and
    ``methods`` (name -> responder)."""
    import jitpc

    server = await jitpc.listen(jitpc_id, on_client=echoing(**methods), spindown=False)
    assert server is not None
    return server
