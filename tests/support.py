"""Helpers shared by the tests: hang bounds and child processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def server_process(
    server_id: str, spindown: str = "off"
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``tests/peers/echo_server.py`` and yield it once it listens; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        *peer_command("echo_server.py", server_id, spindown),
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


async def echo_server(server_id: str, **methods: Any) -> Any:
    """An in-process server (spindown off) whose every client answers ``echo`` and
    ``methods`` (name -> responder)."""
    import jitpc

    def on_client(client: jitpc.Client) -> None:
        client.respond("echo", lambda p: p)
        for name, fn in methods.items():
            client.respond(name, fn)

    server = await jitpc.listen(server_id, on_client=on_client, spindown=False)
    assert server is not None
    return server
