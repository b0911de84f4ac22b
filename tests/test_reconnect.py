"""reconnect=True: one client across its server's lifetimes (spindown, crash), and the old
behaviour without it.

The servers are ``peers/reconnect_server.py`` processes, started by the client's own spinup
hook; every request goes through the ledger (``ledger.py``), so each is checked to have ended
exactly once and never to have run twice: a request in flight when its server died is never
resent to the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import jitpc
from ledger import Child, Children, Ledger, children

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


class Hello(jitpc.Method[str], method="hello"):
    pid: int


def greeter() -> jitpc.Router:
    """The client's router: it answers the greeting every new server sends."""
    router = jitpc.Router()

    @router.method
    def hello(params: Hello) -> str:
        return f"hi {params.pid}"

    return router


@pytest.fixture
def ledger(jitpc_tmpdir: Path) -> Ledger:
    return Ledger(jitpc_tmpdir / "executions.log")


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


class Spinner:
    """A spinup hook: starts a ``reconnect_server.py`` process, returns once it listens."""

    def __init__(self, kids: Children, jitpc_id: str, log: Path, *options: str) -> None:
        self.kids = kids
        self.server_id = jitpc_id
        self.log = log
        self.options = options
        self.servers: list[Child] = []

    async def __call__(self) -> None:
        child = await self.kids.server(
            self.server_id, self.log, *self.options, script="reconnect_server.py"
        )
        self.servers.append(child)


def client_with_responders(jitpc_id: str, spinner: Spinner, *, reconnect: bool) -> jitpc.Client:
    client = jitpc.connect(jitpc_id, spinup=spinner, reconnect=reconnect)
    client.mount(greeter())
    client.respond("mirror", lambda params: {"mirrored": params})
    return client


async def served(client: jitpc.Client, ledger: Ledger, spinner: Spinner, group: str) -> Child:
    """Check that the newest server answers the client, and that the client's router and
    responder answer that server; return it."""
    kind, result = await ledger.request(client, "run", group=group)
    server = spinner.servers[-1]
    assert (kind, result["pid"]) == ("result", server.pid), (kind, result)
    await server.line(f'greeted "hi {server.pid}"')  # the router, asked by the server itself
    kind, result = await ledger.request(
        client, "ask", {"method": "mirror", "params": [group]}, group=group
    )
    assert (kind, result["result"]) == ("result", {"mirrored": [group]}), (kind, result)
    return server


async def test_reconnect_after_the_server_spun_down(jitpc_id: str, ledger: Ledger) -> None:
    async with children() as kids:
        spinner = Spinner(kids, jitpc_id, ledger.log, "--spindown", "0.2")
        client = client_with_responders(jitpc_id, spinner, reconnect=True)
        first = await served(client, ledger, spinner, "first")

        client.notify("drop")  # the server ends our connection, and spins down once idle
        await first.line("gone 0")
        await first.line("spindown")
        assert await first.wait() == 0
        assert not client.closed

        second = await served(client, ledger, spinner, "second")
        assert second.pid != first.pid and len(spinner.servers) == 2

        await client.end()  # closed for good: no more reconnecting
        assert client.closed
        assert (await ledger.request(client, "run", group="ended"))[0] == "closed"
        assert len(spinner.servers) == 2
    ledger.assert_exactly_once(unaffected={"first", "second"})


async def test_reconnect_after_the_server_was_killed(jitpc_id: str, ledger: Ledger) -> None:
    async with children() as kids:
        spinner = Spinner(kids, jitpc_id, ledger.log)
        client = client_with_responders(jitpc_id, spinner, reconnect=True)
        first = await served(client, ledger, spinner, "first")

        pending = [
            asyncio.ensure_future(ledger.request(client, "hold", group="in-flight"))
            for _ in range(3)
        ]
        for _ in pending:
            await first.line(starts("holding "))
        first.signal(signal.SIGKILL)
        endings = await asyncio.gather(*pending)
        assert [kind for kind, _ in endings] == ["closed"] * len(pending), endings
        assert await first.wait() == -signal.SIGKILL
        assert not client.closed

        # A notification connects again too, spinup included; the request shares that connect.
        ledger.notify(client, "note", group="second")
        second = await served(client, ledger, spinner, "second")
        assert second.pid != first.pid and len(spinner.servers) == 2

        client.destroy()  # closed for good: no more reconnecting
        assert client.closed
        assert (await ledger.request(client, "run", group="ended"))[0] == "closed"
        with pytest.raises(jitpc.ClosedError):
            client.notify("note")
        assert len(spinner.servers) == 2
    ledger.assert_exactly_once(unaffected={"first", "second"}, delivered=True)
    # The requests in flight ran once, on the server that died: none was resent.
    assert [runs for _, _, runs in ledger.group("in-flight")] == [1, 1, 1]
    in_flight = {e.pid for e in ledger.events() if e.token.startswith("in-flight.")}
    assert in_flight == {first.pid}


async def test_reconnect_tries_again_after_a_failed_connect(jitpc_id: str) -> None:
    client = jitpc.connect(jitpc_id, connect_timeout=0, reconnect=True)
    with pytest.raises(jitpc.ConnectError):
        await client.request("echo", 1)
    assert not client.closed
    server = await jitpc.listen(
        jitpc_id, on_client=lambda c: c.respond("echo", lambda p: p), spindown=False
    )
    assert server is not None
    async with server, client:
        assert await client.request("echo", 2) == 2
    assert client.closed


async def test_reconnect_while_the_old_connection_still_answers_a_half_closed_peer(
    jitpc_id: str,
) -> None:
    """A peer that ends its side (end-of-stream; a Node peer's end() does that) has ended the
    connection for our requests, though we still owe it an answer: a new request does not fail
    with "ending", it goes out on a new connection, and the old one delivers what it owes.

    The peer here is a bare socket server, to half-close exactly when the test wants."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await accepted.put((reader, writer))

    def message(line: bytes) -> Any:
        assert line.endswith(b"\n"), line
        return json.loads(line)

    entered = asyncio.Event()
    release = asyncio.Event()

    async def wait(params: Any) -> Any:
        entered.set()
        await release.wait()
        return "answered"

    path = os.path.join(os.environ["TMPDIR"], f"{jitpc_id}.sock")
    client = jitpc.connect(jitpc_id, reconnect=True)
    client.respond("wait", wait)
    listener = await asyncio.start_unix_server(on_connection, path)
    try:
        unanswered = asyncio.ensure_future(client.request("never"))
        old_reader, old_writer = await accepted.get()
        assert message(await old_reader.readline())["method"] == "never"
        old_writer.write(b'{"jsonrpc":"2.0","id":1,"method":"wait"}\n')
        old_writer.write_eof()
        with pytest.raises(jitpc.ClosedError):
            await unanswered  # failed at the end of stream: the client has seen it
        await entered.wait()
        assert not client.closed

        again = asyncio.ensure_future(client.request("echo", "again"))
        connected = asyncio.ensure_future(accepted.get())
        await asyncio.wait({again, connected}, return_when=asyncio.FIRST_COMPLETED)
        if again.done():
            connected.cancel()
            again.result()  # it ended before it connected: show how
            raise AssertionError(f"answered without a new connection: {again.result()}")
        new_reader, new_writer = connected.result()
        request = message(await new_reader.readline())
        assert (request["method"], request["params"]) == ("echo", "again")
        new_writer.write(b'{"jsonrpc":"2.0","id":%d,"result":"again"}\n' % request["id"])
        assert await again == "again"

        release.set()
        answer = message(await old_reader.readline())
        assert (answer["id"], answer["result"]) == (1, "answered")
        assert await old_reader.read() == b""  # then the old connection closes
    finally:
        client.destroy()
        for writer in writers:
            writer.close()
        listener.close()
        await asyncio.gather(
            listener.wait_closed(),
            *(w.wait_closed() for w in writers),
            return_exceptions=True,
        )


@pytest.mark.parametrize("how", ["spindown", "kill"])
async def test_without_reconnect_the_client_closes_with_its_connection(
    jitpc_id: str, ledger: Ledger, how: str
) -> None:
    async with children() as kids:
        spinner = Spinner(kids, jitpc_id, ledger.log, "--spindown", "0.2")
        client = client_with_responders(jitpc_id, spinner, reconnect=False)
        server = await served(client, ledger, spinner, "before")
        if how == "spindown":
            client.notify("drop")
            await client.wait_closed()
            await server.line("spindown")
            assert await server.wait() == 0
        else:
            pending = asyncio.ensure_future(ledger.request(client, "hold", group="in-flight"))
            await server.line(starts("holding "))
            server.signal(signal.SIGKILL)
            assert (await pending)[0] == "closed"
            await client.wait_closed()
            assert await server.wait() == -signal.SIGKILL
        assert client.closed
        assert (await ledger.request(client, "run", group="after"))[0] == "closed"
        with pytest.raises(jitpc.ClosedError):
            client.notify("note")
        assert len(spinner.servers) == 1  # no spinup once closed
    ledger.assert_exactly_once(unaffected={"before"})
