"""Versions reported, and stopping gracefully: ``listen(version=)``, ``rpc.status`` /
``rpc.discover``, ``Server.shutdown()`` and ``rpc.shutdown`` (issue 12 items 3 and 4, the
server's side)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import jitpc
from jitpc._method import fingerprint
from jitpc.testing import ClientFactory, DaemonFactory
from support import HANG, echo_daemon, python_env

pytestmark = pytest.mark.anyio


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    """Count one more."""

    key: str


class IncByNumber(jitpc.Method[Counter], method="inc"):
    """The same method, a different params shape."""

    key: int


class Log(jitpc.Method[None], method="log"):
    line: str


def test_a_fingerprint_follows_the_wire_shape_not_the_prose() -> None:
    class Described(jitpc.Method[Counter], method="inc"):
        """Other words, other title."""

        key: str

    class Renamed(jitpc.Method[Counter], method="increment"):
        key: str

    assert fingerprint(Described) == fingerprint(Inc)
    assert fingerprint(IncByNumber) != fingerprint(Inc)
    assert fingerprint(Renamed) != fingerprint(Inc)
    assert len(fingerprint(Log)) == 16 and fingerprint(Log) != fingerprint(Inc)


@pytest.mark.parametrize("version", ["2.1.0+abc", None])
async def test_the_version_and_schemas_are_reported(
    jitpc_client: ClientFactory, version: str | None
) -> None:
    router = jitpc.Router()

    @router.method
    def inc(params: Inc) -> Counter:
        return Counter(key=params.key, count=1)

    client = await jitpc_client(router, spindown=False, version=version)
    assert jitpc_client.server_for(client).version == version
    status = await client.request("rpc.status")
    assert status["version"] == version
    assert status["schemas"] == {"inc": fingerprint(Inc)}
    discovered = await client.request("rpc.discover")
    assert discovered["info"]["version"] == (version or "0.0.0")

    @router.method
    def log(params: Log) -> None:
        pass

    status = await client.request("rpc.status")  # methods added later are reported
    assert status["schemas"] == {"inc": fingerprint(Inc), "log": fingerprint(Log)}


async def test_listen_refuses_a_version_that_is_not_a_string(jitpc_id: str) -> None:
    with pytest.raises(TypeError, match="version"):
        await jitpc.listen(jitpc_id, version=2)  # type: ignore[arg-type]


async def test_shutdown_from_a_handler_answers_it_first_and_lets_the_others_finish(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(_params: Any) -> str:
        started.set()
        await release.wait()
        return "finished"

    def stop(_params: Any) -> str:
        server.shutdown(grace=HANG)
        release.set()  # (after the call: what runs now must still be let finish)
        return "stopping"

    server.on_client(lambda client: (client.respond("slow", slow), client.respond("stop", stop)))
    async with jitpc.connect(jitpc_id) as client:
        pending = asyncio.ensure_future(client.request("slow"))
        await started.wait()
        assert await client.request("stop") == "stopping"
        assert await pending == "finished"
        with pytest.raises(jitpc.ConnectError):  # no new client meanwhile
            await jitpc.connect(jitpc_id, connect_timeout=0).request("rpc.ping")
    await server.wait_closed()
    assert server.closed
    assert sorted(os.listdir(jitpc_tmpdir)) == [f"{jitpc_id}.lock"]  # the socket is gone
    again = await jitpc.listen(jitpc_id, spindown=False)  # and the id free
    assert again is not None
    await again.close()


async def test_past_the_grace_what_still_runs_is_cancelled(jitpc_client: ClientFactory) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(_params: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    client = await jitpc_client(on_client=lambda c: c.respond("hang", hang), spindown=False)
    server = jitpc_client.server_for(client)
    pending = asyncio.ensure_future(client.request("hang"))
    await started.wait()
    server.shutdown(grace=0.05)
    server.shutdown(grace=HANG)  # idempotent: the first grace holds
    with pytest.raises(jitpc.ClosedError):
        await pending
    await cancelled.wait()
    await server.wait_closed()


async def test_shutdown_refuses_a_negative_grace(jitpc_id: str) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    async with server:
        with pytest.raises(ValueError, match="grace"):
            server.shutdown(grace=-1)
        assert not server.closed


async def test_close_during_a_shutdown_closes_at_once(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(
        on_client=lambda c: c.respond("hang", lambda p: asyncio.Event().wait()), spindown=False
    )
    server = jitpc_client.server_for(client)
    pending = asyncio.ensure_future(client.request("hang"))
    await client.request("rpc.ping")
    server.shutdown(grace=HANG)
    await server.close()
    with pytest.raises(jitpc.ClosedError):
        await pending


@pytest.mark.parametrize("params", [{"grace": -1}, {"grace": "soon"}, [1], "x"])
async def test_rpc_shutdown_with_bad_params_is_refused(
    jitpc_client: ClientFactory, params: Any
) -> None:
    client = await jitpc_client(spindown=False)
    with pytest.raises(jitpc.InvalidParams, match="grace"):
        await client.request("rpc.shutdown", params)
    assert await client.request("rpc.ping") == {}
    assert not jitpc_client.server_for(client).closed


async def test_rpc_shutdown_stops_a_daemon_process(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    daemon = await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    async with jitpc.connect(jitpc_id) as client:
        pending = asyncio.ensure_future(client.request("sleep", 0.2))
        await client.request("rpc.ping")  # the sleep is being handled
        answer = await client.request("rpc.shutdown", {"grace": HANG})
        assert answer == {"pid": daemon.pid}
        assert await pending == 0.2
    assert await anyio.to_thread.run_sync(daemon.wait) == 0
    again = await jitpc.listen(jitpc_id, spindown=False)
    assert again is not None
    await again.close()
