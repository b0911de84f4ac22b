"""Node jitpc's error for an unknown method is a ``MethodNotFound`` on our side.

Node jitpc 2.2.7 answers a request for a method it lacks with ``{"message": "Unknown method:
NAME", "stack": ...}`` and no code. ``RemoteError.from_wire`` reads that as
:class:`jitpc.MethodNotFound` (code -32601, message and stack as sent): unit cases first, then
a real Node server (``tests/node/server.js``), through the API and through the CLI, and a
Python server relaying it to a real Node client (``tests/node/client.js``).

The Node tests are skipped only when ``node`` or ``npm`` is not on PATH; a failed npm install
is an error, as in ``test_interop_node.py``.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import jitpc
import support
from nodesetup import JITPC_VERSION

pytestmark = pytest.mark.anyio

NODE = shutil.which("node")
NPM = shutil.which("npm")
SCRIPTS = Path(__file__).resolve().parent / "node"

needs_node = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason=f"node and npm must be on PATH for the interop tests against jitpc@{JITPC_VERSION}",
)

# -- from_wire, unit level -----------------------------------------------------------------------

STACK = "Error: Unknown method: nope\n    at Client._onmessage (index.js:135:34)"


@pytest.mark.parametrize(
    "wire",
    [
        {"message": "Unknown method: nope", "stack": STACK},  # what Node 2.2.7 sends
        {"message": "Unknown method: nope", "code": None, "stack": STACK},
    ],
)
def test_node_unknown_method_is_method_not_found(wire: dict[str, Any]) -> None:
    error = jitpc.RemoteError.from_wire(wire)
    assert type(error) is jitpc.MethodNotFound
    assert (error.message, error.code, error.data, error.stack) == (
        "Unknown method: nope",
        -32601,
        None,
        STACK,
    )
    # Re-raised by a Python handler, it is sent with the code it now has.
    assert error.to_wire() == {"message": "Unknown method: nope", "code": -32601, "stack": STACK}
    assert type(pickle.loads(pickle.dumps(error))) is jitpc.MethodNotFound


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ({"message": "Unknown method: nope", "code": "E_NOPE"}, "E_NOPE"),  # a code wins
        ({"message": "Unknown method: nope", "code": -32000}, -32000),
        ({"message": "Unknown method: nope", "code": 0}, 0),
        ({"message": "unknown method: nope"}, None),  # Node's message exactly, case included
        ({"message": "Unknown method:nope"}, None),
        ({"message": "Error: Unknown method: nope"}, None),
        ({"message": "boom", "stack": "Error: boom"}, None),
        ({"message": ["Unknown method: nope"]}, None),  # not a string
        ({}, None),
    ],
)
def test_other_errors_stay_remote_errors(wire: dict[str, Any], code: Any) -> None:
    error = jitpc.RemoteError.from_wire(wire)
    assert type(error) is jitpc.RemoteError
    assert error.code == code


def test_a_code_still_picks_the_class() -> None:
    error = jitpc.RemoteError.from_wire({"message": "Unknown method: x", "code": -32601})
    assert type(error) is jitpc.MethodNotFound
    assert type(jitpc.RemoteError.from_wire({"message": "x", "code": -32602})) is (
        jitpc.InvalidParams
    )


# -- against real Node processes -----------------------------------------------------------------


@asynccontextmanager
async def node_server(node_modules: Path, jitpc_id: str) -> AsyncIterator[None]:
    """``tests/node/server.js``, yielded once it listens; killed on exit."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(SCRIPTS / "server.js"),
        jitpc_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=support.python_env(NODE_PATH=str(node_modules)),
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), support.HANG) == b"listening\n"
        yield
    finally:
        await support.reap(proc)


async def run(*argv: str, stdin: bytes = b"", env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``argv`` to its end (bounded by HANG): (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), support.HANG)
    finally:
        await support.reap(proc)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@needs_node
async def test_request_to_node_for_an_unknown_method(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id):
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(jitpc.MethodNotFound) as info:
                await client.request("nope")
            assert isinstance(info.value, jitpc.RemoteError)
            assert (info.value.message, info.value.code) == ("Unknown method: nope", -32601)
            assert info.value.stack is not None
            assert info.value.stack.startswith("Error: Unknown method: nope\n")
            # An error thrown by a method Node has stays a plain RemoteError with its code.
            with pytest.raises(jitpc.RemoteError) as boom:
                await client.request("boom")
            assert (type(boom.value), boom.value.code) == (jitpc.RemoteError, "E_BOOM")
            assert await client.request("echo", "still connected") == "still connected"


@needs_node
async def test_cli_call_to_node_for_an_unknown_method(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id):
        code, out, err = await run(
            sys.executable, "-m", "jitpc", "call", jitpc_id, "nope", env=support.python_env()
        )
    assert (code, out) == (1, "")
    assert err.count("\n") == 1, err
    error = json.loads(err)
    assert error.keys() == {"message", "code", "stack"}
    assert (error["message"], error["code"]) == ("Unknown method: nope", -32601)
    assert error["stack"].startswith("Error: Unknown method: nope\n")


@needs_node
async def test_python_server_relays_it_to_a_node_client(node_modules: Path, jitpc_id: str) -> None:
    """A handler that lets Node's MethodNotFound propagate sends it with code -32601."""
    upstream_id = jitpc_id + "n"

    def on_client(client: jitpc.Client) -> None:
        async def relay(params: Any) -> Any:
            async with jitpc.connect(upstream_id) as upstream:
                return await upstream.request(params)

        client.respond("relay", relay)

    async with node_server(node_modules, upstream_id):
        server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
        assert server is not None
        async with server:
            assert NODE is not None
            steps = [
                {"op": "request", "method": "relay", "params": "whoami"},
                {"op": "request", "method": "relay", "params": "nope"},
            ]
            env = support.python_env(NODE_PATH=str(node_modules))
            code, out, err = await run(
                NODE,
                str(SCRIPTS / "client.js"),
                jitpc_id,
                stdin=json.dumps(steps).encode(),
                env=env,
            )
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"ok": "node"},
        {
            "error": {
                "message": "Unknown method: nope",
                "code": -32601,
                "isError": True,
                "stack": "string",
            }
        },
    ]
