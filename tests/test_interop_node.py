"""Interop with the Node package ``jitpc`` 2.2.7, the implementation this port must talk to.

Real processes and real sockets: Node peers are the scripts in ``tests/node/``, run with
``NODE_PATH`` pointing at a copy of jitpc@2.2.7 that ``nodesetup`` installs under ``.node/``.
Each child inherits the test's private ``TMPDIR``, so both sides compute the same socket and
lock paths. Tests wait for events (a line a child prints, a response), never for time.

Skipped only when ``node`` or ``npm`` is not on PATH; a failed npm install is an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import jitpc
from nodesetup import JITPC_VERSION
from support import HANG, peer_command, python_env

NODE = shutil.which("node")
NPM = shutil.which("npm")
SCRIPTS = Path(__file__).resolve().parent / "node"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        NODE is None or NPM is None,
        reason=f"node and npm must be on PATH for the interop tests against jitpc@{JITPC_VERSION}",
    ),
]

#: JSON values sent through both implementations and expected back unchanged.
VALUES: list[Any] = [
    {"a": 1, "b": [1, 2.5, -3, None, True, False], "nested": {"x": {"y": []}, "empty": {}}},
    [1, "two", 3.5, None, {"four": 4}, [[]]],
    "a plain string",
    "",
    # Multi-byte UTF-8 (2, 3 and 4 bytes), the separators JavaScript once disliked, escapes.
    "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f389 \u2028\u2029 "
    '"quoted" back\\slash new\nline tab\t nul\u0000 \x7f',
    {"\u00e9\U0001f389 key": "\u2603"},
    0,
    -17,
    2**53,
    3.25,
    -1e-300,
    1.7976931348623157e308,
    True,
    False,
]
#: About 1.2 MB of UTF-8 in 4- and 2-byte characters: many reads, with characters split between
#: chunks on both sides.
BIG = "\U0001f389\u00e9" * 200_000


class Child:
    """A child process whose stdout speaks in lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self) -> str:
        """The next line the child prints; fails if it exits first."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), HANG)
        if not raw:
            rc, _, err = await self.finish()
            raise AssertionError(f"{self.name} exited ({rc}) before printing a line:\n{err}")
        return raw.decode().rstrip("\n")

    def close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    async def finish(self) -> tuple[int, str, str]:
        """Close stdin and wait for the child to exit by itself: (exit code, rest of stdout,
        stderr)."""
        self.close_stdin()
        out, err = await asyncio.wait_for(self.proc.communicate(), HANG)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    async def reap(self) -> None:
        """Kill the child if it still runs, and collect it and its pipes."""
        self.close_stdin()
        if self.proc.returncode is None:
            with suppress(ProcessLookupError):
                self.proc.kill()
        await asyncio.wait_for(self.proc.communicate(), HANG)


def node_env(node_modules: Path) -> dict[str, str]:
    env = dict(os.environ)  # with the test's TMPDIR
    env["NODE_PATH"] = str(node_modules)
    return env


@asynccontextmanager
async def spawn(name: str, *argv: str, env: dict[str, str]) -> AsyncIterator[Child]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    child = Child(proc, name)
    try:
        yield child
    finally:
        await child.reap()


def node_server(
    node_modules: Path, jitpc_id: str, *options: str
) -> AbstractAsyncContextManager[Child]:
    """``async with node_server(...) as child``: the Node server script (see server.js)."""
    assert NODE is not None
    argv = (NODE, str(SCRIPTS / "server.js"), jitpc_id, *options)
    return spawn("node server", *argv, env=node_env(node_modules))


async def finish_node_server(child: Child) -> None:
    """Tell a listening Node server to close (stdin ends) and check it exits cleanly."""
    rc, out, err = await child.finish()
    assert (rc, out) == (0, "closed\n"), err


async def run_node_client(node_modules: Path, jitpc_id: str, steps: list[Any]) -> list[Any]:
    """Run the Node client script over ``steps``; return what it printed, one value per step."""
    assert NODE is not None
    argv = (NODE, str(SCRIPTS / "client.js"), jitpc_id)
    async with spawn("node client", *argv, env=node_env(node_modules)) as child:
        feed = json.dumps(steps).encode()
        out, err = await asyncio.wait_for(child.proc.communicate(feed), HANG)
        assert child.proc.returncode == 0, err.decode()
    # Not str.splitlines(): that would also split at U+2028 inside JSON strings.
    results = [json.loads(line) for line in out.split(b"\n") if line]
    assert len(results) == len(steps), (results, err.decode())
    return results


def request(method: str, *params: Any) -> dict[str, Any]:
    """A client.js step; no ``params`` argument means params left out (undefined)."""
    step: dict[str, Any] = {"op": "request", "method": method}
    if params:
        (step["params"],) = params
    return step


def notify(method: str, *params: Any) -> dict[str, Any]:
    step = request(method, *params)
    step["op"] = "notify"
    return step


def wait(method: str) -> dict[str, Any]:
    return {"op": "wait", "method": method}


def node_error(message: str, code: Any = None) -> dict[str, Any]:
    """What client.js prints for an error, but ``stack`` (see :func:`without_stack`)."""
    error: dict[str, Any] = {"message": message, "isError": True}
    if code is not None:
        error["code"] = code
    return error


def stale_socket(jitpc_id: str) -> bool:
    """Whether the id's socket file is still there (after its server was killed)."""
    path = Path(os.environ["TMPDIR"]) / f"{jitpc_id}.sock"
    return stat.S_ISSOCK(path.lstat().st_mode)


def without_stack(result: Any) -> Any:
    """A client.js result without the error's ``stack``, which the protocol leaves optional."""
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        error = dict(result["error"])
        error.pop("stack", None)
        return {"error": error}
    return result


# -- 1. a Node client calls a Python server ------------------------------------------------------


async def test_node_client_gets_python_results(node_modules: Path, jitpc_id: str) -> None:
    received: list[Any] = []

    def on_client(client: jitpc.Client) -> None:
        def echo(params: Any) -> Any:
            received.append(params)
            return params

        async def echo_later(params: Any) -> Any:
            await asyncio.sleep(0)
            return params

        client.respond("echo", echo)
        client.respond("echo_later", echo_later)
        client.respond("nothing", lambda params: None)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        steps = [request("echo", value) for value in VALUES]
        steps += [
            request("echo_later", VALUES[0]),
            request("nothing", {"ignored": True}),
            request("echo"),  # no params at all: Python sees None, Node gets null back
            request("echo", BIG),
        ]
        results = await run_node_client(node_modules, jitpc_id, steps)

    assert results == [{"ok": value} for value in VALUES] + [
        {"ok": VALUES[0]},
        {"ok": None},
        {"ok": None},
        {"ok": BIG},
    ]
    assert received == [*VALUES, None, BIG]


async def test_node_client_gets_python_errors(node_modules: Path, jitpc_id: str) -> None:
    def on_client(client: jitpc.Client) -> None:
        def boom(params: Any) -> Any:
            raise jitpc.RemoteError("boom", "E_BOOM")

        async def boom_later(params: Any) -> Any:
            await asyncio.sleep(0)
            raise jitpc.RemoteError("boom later", "E_LATER")

        def bad(params: Any) -> Any:
            raise ValueError("bad value")

        def invalid(params: Any) -> Any:
            raise jitpc.InvalidParams("wrong params", data={"field": "x"})

        client.respond("boom", boom)
        client.respond("boom_later", boom_later)
        client.respond("bad", bad)
        client.respond("invalid", invalid)
        client.respond("echo", lambda params: params)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        steps = [
            request("boom"),
            request("boom_later", 1),
            request("bad", [1]),
            request("invalid", {}),
            request("nope", "x"),
            request("echo", "still connected"),
        ]
        results = await run_node_client(node_modules, jitpc_id, steps)

    assert [without_stack(result) for result in results] == [
        {"error": node_error("boom", "E_BOOM")},
        {"error": node_error("boom later", "E_LATER")},
        {"error": node_error("bad value", -32603)},
        {"error": node_error("wrong params", -32602)},
        {"error": node_error("Unknown method: nope", -32601)},
        {"ok": "still connected"},
    ]


async def test_node_client_notifications_reach_python_server(
    node_modules: Path, jitpc_id: str
) -> None:
    logged: list[Any] = []
    requests_seen: list[Any] = []

    def on_client(client: jitpc.Client) -> None:
        client.respond("log", logged.append)
        client.respond("logged", lambda params: list(logged))

        def count(params: Any) -> int:
            requests_seen.append(params)
            return len(requests_seen)

        client.respond("count", count)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        steps = [
            notify("log", "one"),
            notify("log", {"two": 2, "\u00e9": "\U0001f389"}),
            notify("log"),  # no params
            notify("count", "a notification gets no response, but it runs"),
            notify("not_answered", 1),  # no responder: nothing happens, nothing is sent
            request("logged"),
            request("count", "a request"),
        ]
        results = await run_node_client(node_modules, jitpc_id, steps)

    expected_log = ["one", {"two": 2, "\u00e9": "\U0001f389"}, None]
    assert results == [
        {"sent": "log"},
        {"sent": "log"},
        {"sent": "log"},
        {"sent": "count"},
        {"sent": "not_answered"},
        {"ok": expected_log},
        {"ok": 2},
    ]
    assert logged == expected_log
    assert requests_seen == ["a notification gets no response, but it runs", "a request"]


async def test_python_server_requests_and_notifies_node_client(
    node_modules: Path, jitpc_id: str
) -> None:
    loop = asyncio.get_running_loop()
    first_requests: list[asyncio.Task[Any]] = []

    def on_client(client: jitpc.Client) -> None:
        # Unprompted, as soon as the Node client connects.
        first_requests.append(loop.create_task(client.request("add", [20, 22])))
        client.notify("note", {"hello": "from python", "n": 1})

        async def callback(params: Any) -> Any:
            return await client.request("add", params)

        async def callback_error(params: Any) -> Any:
            try:
                await client.request(params)
            except jitpc.RemoteError as exc:
                return {
                    "type": type(exc).__name__,
                    "message": exc.message,
                    "code": exc.code,
                    "stack": exc.stack.splitlines()[0] if exc.stack else exc.stack,
                }
            raise AssertionError("the Node client did not fail")

        def tell(params: Any) -> str:
            client.notify("note", params)
            return "told"

        client.respond("callback", callback)
        client.respond("callback_error", callback_error)
        client.respond("tell", tell)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        steps = [
            wait("note"),
            wait("add"),
            request("callback", [2, 3]),
            request("callback", ["con", "cat"]),
            request("callback_error", "fail"),
            request("callback_error", "nope"),
            request("tell", ["second", "\u2603"]),
            wait("note"),
        ]
        results = await run_node_client(node_modules, jitpc_id, steps)
        first = await asyncio.wait_for(first_requests[0], HANG)

    assert first == 42
    assert results == [
        {"got": {"hello": "from python", "n": 1}},
        {"got": [20, 22]},
        {"ok": 5},
        {"ok": "concat"},
        {
            "ok": {
                "type": "RemoteError",
                "message": "client says no",
                "code": "E_NODE_CLIENT",
                "stack": "Error: client says no",
            }
        },
        {
            "ok": {
                "type": "MethodNotFound",
                "message": "Unknown method: nope",
                "code": -32601,
                "stack": "Error: Unknown method: nope",
            }
        },
        {"ok": "told"},
        {"got": ["second", "\u2603"]},
    ]


# -- 2. a Python client calls a Node server ------------------------------------------------------


async def test_python_client_gets_node_results(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            for value in VALUES:
                assert await client.request("echo", value) == value
            assert await client.request("echo") is None  # params undefined -> result undefined
            assert await client.request("undef", 1) is None  # {"error":null,"id":N}: no result
            assert await client.request("nul") is None
            assert await client.request("whoami") == "node"
            assert await client.request("pid") == node.pid
            assert await client.request("echo", BIG) == BIG
            # Concurrent requests on one connection are matched by id.
            many = await asyncio.gather(*(client.request("echo", i) for i in range(50)))
            assert many == list(range(50))
        await finish_node_server(node)


async def test_python_client_gets_node_errors(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(jitpc.RemoteError) as boom:
                await client.request("boom", {"x": 1})
            assert type(boom.value) is jitpc.RemoteError
            assert (boom.value.message, boom.value.code) == ("boom", "E_BOOM")
            assert isinstance(boom.value.stack, str)
            assert boom.value.stack.startswith("Error: boom\n    at ")
            assert boom.value.data is None

            with pytest.raises(jitpc.RemoteError) as nope:
                await client.request("nope")
            # Node's code-less "Unknown method" error is read as MethodNotFound.
            assert type(nope.value) is jitpc.MethodNotFound
            assert (nope.value.message, nope.value.code) == ("Unknown method: nope", -32601)
            assert isinstance(nope.value.stack, str)
            assert nope.value.stack.startswith("Error: Unknown method: nope\n")

            # The connection is still good.
            assert await client.request("echo", "after errors") == "after errors"
        await finish_node_server(node)


async def test_python_client_gets_node_error_without_message(
    node_modules: Path, jitpc_id: str
) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            # On the wire: {"result":null,"error":{},"id":1}. A Node client rejects.
            with pytest.raises(jitpc.RemoteError):
                await client.request("throw_string")
        await finish_node_server(node)


async def test_python_client_gets_node_lone_surrogate(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        client = jitpc.connect(jitpc_id)
        await client.open()
        # Connected, each request goes out as its task first runs: in the order made here.
        loop = asyncio.get_running_loop()
        lone = loop.create_task(client.request("lone_surrogate"))
        echo = loop.create_task(client.request("echo", 1))
        try:
            # Node answers in order: once the echo is back, the first request must have ended.
            assert await asyncio.wait_for(echo, HANG) == 1
            assert lone.done()
            assert lone.result() == "x\ud800y"  # what a Node client gets too
        finally:
            client.destroy()
            with suppress(jitpc.JitpcError):
                await lone
        await finish_node_server(node)


async def test_python_notifications_reach_node_server(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            client.notify("record", "one")  # before connecting: sent once connected
            client.notify("record", {"two": [2], "\u00e9": "\U0001f389"})
            client.notify("record")  # no params: Node sees undefined, records null
            client.notify("unknown_method", 1)  # Node answers nothing, and stays connected
            recorded = await client.request("recorded")
            assert recorded == ["one", {"two": [2], "\u00e9": "\U0001f389"}, None]
        # A second connection sees the same server state.
        async with jitpc.connect(jitpc_id) as client:
            client.notify("record", 4)
            assert await client.request("recorded") == [*recorded, 4]
        await finish_node_server(node)


async def test_node_server_requests_and_notifies_python_client(
    node_modules: Path, jitpc_id: str
) -> None:
    loop = asyncio.get_running_loop()
    notes: asyncio.Queue[Any] = asyncio.Queue()

    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            client.respond("add", lambda params: params[0] + params[1])

            async def add_later(params: Any) -> Any:
                await asyncio.sleep(0)
                return {"sum": params[0] + params[1]}

            def refuse(params: Any) -> Any:
                raise jitpc.RemoteError("py says no", "E_PY")

            def crash(params: Any) -> Any:
                raise ValueError("py crashed")

            client.respond("add_later", add_later)
            client.respond("refuse", refuse)
            client.respond("crash", crash)
            client.respond("note", notes.put_nowait)

            assert await client.request("ask", {"method": "add", "params": [2, 3]}) == 5
            assert await client.request("ask", {"method": "add_later", "params": [1, 1]}) == {
                "sum": 2
            }
            ask = {"method": "add", "params": ["\u00e9", "\U0001f389"]}
            assert await client.request("ask", ask) == "\u00e9\U0001f389"

            # A Python error travels to Node (an Error with that code) and back.
            with pytest.raises(jitpc.RemoteError) as refused:
                await client.request("ask", {"method": "refuse"})
            assert (refused.value.message, refused.value.code) == ("py says no", "E_PY")
            with pytest.raises(jitpc.InternalError) as crashed:
                await client.request("ask", {"method": "crash"})
            assert (crashed.value.message, crashed.value.code) == ("py crashed", -32603)
            with pytest.raises(jitpc.MethodNotFound) as missing:
                await client.request("ask", {"method": "missing"})
            assert missing.value.message == "Unknown method: missing"

            # Node notifies us; the notification comes before the response.
            told = loop.create_future()
            client.respond("note", told.set_result)
            assert await client.request("tell", {"method": "note", "params": [1, "\u2603"]})
            assert told.done()
            assert told.result() == [1, "\u2603"]
            client.respond("note", notes.put_nowait)
            await client.request("tell", {"method": "note"})  # no params: None
            assert await asyncio.wait_for(notes.get(), HANG) is None
        await finish_node_server(node)


# -- 3. a Node server and a Python server contend for one id -------------------------------------


def serve_whoami(client: jitpc.Client) -> None:
    client.respond("whoami", lambda params: "python")


async def whoami(jitpc_id: str) -> Any:
    async with jitpc.connect(jitpc_id) as client:
        return await client.request("whoami")


#: Event-loop iterations the Python side lets pass before it contends, round by round (about
#: 0 to 30 ms). Node takes from a few hundred microseconds to a few milliseconds to get from
#: "racing" to its lock attempt, so the early rounds tend to go to Python and the late ones to
#: Node; the test accepts either winner in every round.
RACE_HEAD_STARTS = (0, 100, 300, 1000, 3000, 10000)


async def test_node_and_python_servers_race_for_one_id(node_modules: Path) -> None:
    winners = []
    for round_, head_start in enumerate(RACE_HEAD_STARTS):
        jitpc_id = f"race{round_}-{os.getpid()}"
        async with node_server(node_modules, jitpc_id, "--go") as node:
            assert await node.line() == "ready"
            assert node.proc.stdin is not None
            node.proc.stdin.write(b"go\n")
            # Node prints "racing" just before it calls listen(): contend now.
            assert await node.line() == "racing"
            for _ in range(head_start):
                await asyncio.sleep(0)  # not a wait for anything: only shifts who goes first
            python = await jitpc.listen(jitpc_id, on_client=serve_whoami, spindown=False)
            node_outcome = await node.line()
            assert node_outcome in ("listening", "busy")
            node_won = node_outcome == "listening"
            assert node_won is (python is None), f"round {round_}: both or neither won"
            winner = "node" if node_won else "python"
            winners.append(winner)
            # Clients of both kinds reach the winner.
            assert await whoami(jitpc_id) == winner
            steps = [request("whoami")]
            assert await run_node_client(node_modules, jitpc_id, steps) == [{"ok": winner}]
            if python is not None:
                await python.close()
                rc, out, err = await node.finish()
                assert (rc, out) == (0, ""), err  # it exited by itself after "busy"
            else:
                await finish_node_server(node)
    assert len(winners) == len(RACE_HEAD_STARTS)


async def test_python_server_holds_id_against_node(node_modules: Path, jitpc_id: str) -> None:
    python = await jitpc.listen(jitpc_id, on_client=serve_whoami, spindown=False)
    assert python is not None
    async with python:
        async with node_server(node_modules, jitpc_id) as node:
            assert await node.line() == "busy"
            rc, out, err = await node.finish()
            assert (rc, out) == (0, ""), err
        assert await whoami(jitpc_id) == "python"
        steps = [request("whoami")]
        assert await run_node_client(node_modules, jitpc_id, steps) == [{"ok": "python"}]
    # Released: now Node gets the id.
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        assert await whoami(jitpc_id) == "node"
        await finish_node_server(node)


async def test_node_server_holds_id_against_python(node_modules: Path, jitpc_id: str) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        assert await jitpc.listen(jitpc_id, on_client=serve_whoami) is None
        assert await jitpc.listen(jitpc_id, on_client=serve_whoami) is None
        assert await whoami(jitpc_id) == "node"
        await finish_node_server(node)
    # Released: now Python gets the id.
    python = await jitpc.listen(jitpc_id, on_client=serve_whoami, spindown=False)
    assert python is not None
    async with python:
        assert await whoami(jitpc_id) == "python"


async def test_python_takes_over_from_crashed_node_server(
    node_modules: Path, jitpc_id: str
) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        node.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(node.proc.wait(), HANG) == -signal.SIGKILL
    assert stale_socket(jitpc_id)
    python = await jitpc.listen(jitpc_id, on_client=serve_whoami, spindown=False)
    assert python is not None
    async with python:
        assert await whoami(jitpc_id) == "python"


async def test_node_takes_over_from_crashed_python_server(
    node_modules: Path, jitpc_id: str
) -> None:
    argv = peer_command("echo_server.py", jitpc_id, "off")
    async with spawn("python server", *argv, env=python_env()) as py:
        assert await py.line() == "listening"
        py.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(py.proc.wait(), HANG) == -signal.SIGKILL
    assert stale_socket(jitpc_id)
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        assert await whoami(jitpc_id) == "node"
        await finish_node_server(node)


# -- 4. spinup starts a Node server --------------------------------------------------------------


async def test_python_client_spinup_starts_node_server(node_modules: Path, jitpc_id: str) -> None:
    assert NODE is not None
    argv = (NODE, str(SCRIPTS / "server.js"), jitpc_id)
    started: list[Child] = []

    async with AsyncExitStack() as stack:

        async def spinup() -> None:
            node = await stack.enter_async_context(
                spawn("node server", *argv, env=node_env(node_modules))
            )
            started.append(node)
            assert await node.line() == "listening"

        async with jitpc.connect(jitpc_id, spinup=spinup) as client:
            assert await client.request("whoami") == "node"
            assert len(started) == 1
            assert await client.request("pid") == started[0].pid
            assert await client.request("echo", VALUES[0]) == VALUES[0]
        await finish_node_server(started[0])
    assert len(started) == 1


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    key: str
    by: int = 1


async def test_node_client_calls_a_typed_python_server(node_modules: Path, jitpc_id: str) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    @server.method
    def inc(params: Inc) -> Counter:
        return Counter(key=params.key, count=params.by)

    async with server:
        steps = [
            request("inc", {"key": "a", "by": 5}),
            request("inc", {"key": 7}),
            request("inc"),
            request("rpc.discover"),
        ]
        results = await run_node_client(node_modules, jitpc_id, steps)

    assert results[0] == {"ok": {"key": "a", "count": 5}}
    invalid = without_stack(results[1])["error"]
    # Node drops an error's data: the first validation error is in the message too.
    assert (invalid["message"], invalid["code"]) == (
        "invalid params for 'inc': key: Input should be a valid string",
        -32602,
    )
    missing = without_stack(results[2])["error"]
    assert (missing["message"], missing["code"]) == (
        "invalid params for 'inc': key: Field required",
        -32602,
    )
    assert [m["name"] for m in results[3]["ok"]["methods"]] == ["inc"]


class NodeHang(jitpc.Method[int], method="hang"):
    pass


async def test_a_node_server_ignores_the_cancel_and_leaving_async_with_is_prompt(
    node_modules: Path, jitpc_id: str
) -> None:
    async with node_server(node_modules, jitpc_id) as node:
        assert await node.line() == "listening"
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(TimeoutError):
                await client.request("hang", timeout=0.05)
            # Node answered the $/cancelRequest notification with nothing, and kept the
            # connection: the client goes on.
            assert await client.request("echo", "after") == "after"
            with pytest.raises(TimeoutError):
                await client.call(NodeHang(), timeout=0.05)
        # Left at once, though Node's handler never returns.
        assert client.closed
        await finish_node_server(node)
