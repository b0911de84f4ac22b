"""Holes found by adversarial testing, closed: each test is a class of input, through a real
socket, and checks that the request it concerns ends exactly once and the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, field_serializer

import jitpc
from chaos import ChaosProxy, Mode
from jitpc._paths import address
from jitpc.testing import ClientFactory
from rawpeer import raw_peer
from support import HANG, echo_server, echoing, peer_command, python_env, reap

pytestmark = pytest.mark.anyio


def deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def cyclic() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


class Explodes:
    """Not JSON at all."""


class Touchy(BaseModel):
    x: int

    @field_serializer("x")
    def boom(self, x: int) -> int:
        raise RuntimeError("the serializer broke")


class Make(jitpc.Method[Touchy], method="make"):
    pass


serve = echo_server


# -- what we write, we can read --------------------------------------------------------------

# A message is level 1, its params or result level 2: a value nests at most 200 levels.
UNREADABLE = pytest.mark.parametrize(
    "value",
    [10**4300, deep(201), {"a": ["\ud800", deep(199)]}],
    ids=["4301-digit integer", "201 deep", "201 deep with a lone surrogate"],
)
AT_THE_LIMIT = pytest.mark.parametrize(
    "value",
    [10**4299, deep(200), {"a": ["\ud800", deep(198)]}, {"s": "[" * 5000}],
    ids=[
        "4300-digit integer",
        "200 deep",
        "200 deep with a lone surrogate",
        "brackets in a string",
    ],
)


class Big(BaseModel):
    n: int


class MakeBig(jitpc.Method[Big], method="make_big"):
    digits: int


@UNREADABLE
async def test_params_the_server_could_not_read_are_refused_at_the_sender(
    jitpc_client: ClientFactory, value: Any
) -> None:
    seen: list[Any] = []
    client = await jitpc_client(on_client=echoing(record=seen.append), spindown=False)
    with pytest.raises(TypeError, match="cannot encode as JSON a reader takes"):
        await client.request("record", value)
    with pytest.raises(TypeError, match="cannot encode as JSON a reader takes"):
        client.notify("record", value)
    await client.request("record", "after")
    assert seen == ["after"]  # nothing else was sent


@AT_THE_LIMIT
async def test_values_at_the_limit_go_both_ways(jitpc_client: ClientFactory, value: Any) -> None:
    client = await jitpc_client(on_client=echoing(), spindown=False)
    assert await client.request("echo", value) == value


@UNREADABLE
async def test_a_result_the_client_could_not_read_is_answered_minus_32603(
    jitpc_client: ClientFactory, value: Any
) -> None:
    async def async_responder(params: Any) -> Any:
        return value

    client = await jitpc_client(
        on_client=echoing(sync=lambda p: value, async_=async_responder), spindown=False
    )
    for method in ("sync", "async_"):
        with pytest.raises(jitpc.InternalError, match="result cannot be encoded"):
            await client.request(method)
    assert await client.request("echo", "after") == "after"


async def test_a_typed_value_the_reader_refuses_is_refused_both_ways(jitpc_id: str) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    @server.method
    def make_big(params: MakeBig) -> Big:
        return Big(n=10 ** (params.digits - 1))

    async with server:
        async with jitpc.connect(jitpc_id) as client:
            assert (await client.call(MakeBig(digits=4300))).n == 10**4299
            with pytest.raises(jitpc.InternalError, match="more than 4,300 digits"):
                await client.call(MakeBig(digits=4301))
            with pytest.raises(TypeError, match="more than 4,300 digits"):
                await client.call(MakeBig(digits=10**4300))
            assert (await client.call(MakeBig(digits=1))).n == 1


@pytest.mark.parametrize(
    "answer",
    [
        b'{"jsonrpc":"2.0","id":%d,"result":' + b"9" * 5001 + b"}\n",
        b'{"jsonrpc":"2.0","id":%d,"result":' + b"[" * 230 + b"]" * 230 + b"}\n",
        b'{"result":' + b"[" * 230 + b"]" * 230 + b',"id":%d}\n',
    ],
    ids=["5001-digit integer", "230 deep", "230 deep, Node's framing"],
)
async def test_an_answer_the_client_cannot_read_fails_its_request(
    jitpc_id: str, answer: bytes
) -> None:
    # Another writer (Node writes any depth) may still send what jitpc's reader refuses.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            if request["method"] == "unreadable":
                writer.write(answer % request["id"])
            else:
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]}
                writer.write(json.dumps(reply).encode() + b"\n")
        writer.close()

    fake = await asyncio.start_unix_server(handle, address(jitpc_id).socket)
    async with fake:
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(jitpc.ProtocolError, match="cannot be read"):
                await client.request("unreadable")
            assert await client.request("echo", "after") == "after"


async def test_params_the_server_cannot_read_fail_with_a_parse_error(jitpc_id: str) -> None:
    # From another writer: the -32700 carries the request's id.
    line = b'{"jsonrpc":"2.0","id":7,"method":"echo","params":' + b"[" * 230 + b"]" * 230
    async with await serve(jitpc_id):
        async with raw_peer(jitpc_id) as peer:
            await peer.send(line + b"}\n")
            reply = await peer.read_reply()
            assert reply["id"] == 7 and reply["error"]["code"] == -32700
            await peer.send(b'{"jsonrpc":"2.0","id":8,"method":"echo","params":"after"}\n')
            assert (await peer.read_reply())["result"] == "after"


async def test_the_depth_limit_holds_on_the_fallback_parser_too(jitpc_id: str) -> None:
    # A lone surrogate sends a line to the second parser; it must not accept more depth.
    line = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":["\\ud800",' + b"[" * 300
    line += b"]" * 300 + b"]}\n"
    async with await serve(jitpc_id):
        async with raw_peer(jitpc_id) as peer:
            await peer.send(line)
            reply = await peer.read_reply()
            assert reply["id"] == 1 and reply["error"]["code"] == -32700


# -- one bad value never kills a connection ----------------------------------------------------


async def test_a_result_that_cannot_be_encoded_is_answered_minus_32603(
    jitpc_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def async_cyclic(params: Any) -> Any:
        return cyclic()

    def typed(client: jitpc.Client) -> None:
        pass

    router = jitpc.Router()

    @router.method
    def make(params: Make) -> Touchy:
        return Touchy(x=1)

    async with (
        await serve(
            jitpc_id,
            sync_cyclic=lambda p: cyclic(),
            async_cyclic=async_cyclic,
            unknown_type=lambda p: Explodes(),
            nested_model=lambda p: {"x": Touchy(x=1)},
        ) as server,
    ):
        server.mount(router)
        async with jitpc.connect(jitpc_id) as client:
            for method in ("sync_cyclic", "async_cyclic", "unknown_type", "nested_model"):
                with pytest.raises(jitpc.InternalError, match="cannot be encoded"):
                    await client.request(method)
            with pytest.raises(jitpc.InternalError, match="cannot be encoded"):
                await client.call(Make())
            # The same connection, and the others' requests, go on.
            assert await client.request("echo", "after") == "after"
    # Reported, but no exception escaped a protocol callback or a task.
    assert not [r for r in caplog.records if r.name == "asyncio"]


async def test_params_that_cannot_be_encoded_raise_type_error_at_the_caller(
    jitpc_client: ClientFactory,
) -> None:
    client = await jitpc_client(on_client=echoing(), spindown=False)
    for bad in (cyclic(), Explodes(), Touchy(x=1)):
        with pytest.raises(TypeError):
            await client.request("echo", bad)
        with pytest.raises(TypeError):
            client.notify("echo", bad)
    assert await client.request("echo", "after") == "after"


# -- quiet under abuse -------------------------------------------------------------------------


async def test_a_flood_of_garbage_and_unsolicited_answers_does_not_flood_the_log(
    jitpc_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    flood = b"".join(
        b"not json %d\n" % n + b'{"jsonrpc":"2.0","id":%d,"error":{"code":1,"message":"x"}}\n' % n
        for n in range(5000)
    )
    async with await serve(jitpc_id):
        with caplog.at_level(logging.DEBUG, logger="jitpc"):
            async with raw_peer(jitpc_id) as peer:
                await peer.send(flood + b'{"jsonrpc":"2.0","id":"last","method":"echo"}\n')
                replies = [await peer.read_reply() for _ in range(5001)]
                assert replies[-1] == {"jsonrpc": "2.0", "id": "last", "result": None}
    warnings = [r for r in caplog.records if r.name == "jitpc" and r.levelno >= logging.WARNING]
    # 10,000 bad messages: a few lines, and one that counts what was left unsaid.
    assert 0 < len(warnings) <= 25, len(warnings)
    assert any("more" in r.getMessage() for r in warnings)


# -- the sync facade's word, and a blocking spindown hook ---------------------------------------


async def test_a_client_arriving_while_a_blocking_spindown_hook_runs_keeps_the_server_up(
    jitpc_id: str,
) -> None:
    in_hook = threading.Event()
    release = threading.Event()
    arrived = asyncio.Event()
    calls: list[str] = []

    def hook() -> None:  # synchronous, and it blocks
        calls.append("hook")
        in_hook.set()
        release.wait(HANG)

    def on_client(client: jitpc.Client) -> None:
        client.respond("echo", lambda p: p)
        arrived.set()

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=hook, spindown_timeout=0.01)
    assert server is not None
    async with server:
        await asyncio.get_running_loop().run_in_executor(None, in_hook.wait, HANG)
        async with jitpc.connect(jitpc_id) as client:
            await client.open()
            await arrived.wait()  # accepted while the hook still blocks
            release.set()
            assert await client.request("echo", "kept up") == "kept up"
        assert not server.closed and calls == ["hook"]


# -- backpressure never deadlocks ---------------------------------------------------------------


@pytest.mark.parametrize(("size", "count"), [(256 << 10, 256), (1 << 20, 64), (64 << 10, 1024)])
async def test_two_peers_answering_each_other_with_large_results_at_once_make_progress(
    jitpc_id: str, size: int, count: int
) -> None:
    """Both ends have far more than 4 MiB of answers unsent to the other at the same time
    (64 MiB each way); neither may stop reading for good, since each needs the other's
    answers. (256 KiB x 256 stalled for good before the rule: see _update_reading.)"""
    async with server_process_of("mutual_server.py", jitpc_id, size, count):
        async with jitpc.connect(jitpc_id) as client:
            client.respond("big", lambda n: "x" * n)
            ours = [client.request("big", size) for _ in range(count)]
            results = await asyncio.gather(client.request("ask_many"), *ours)
            assert results[0] == count * size
            assert all(len(r) == size for r in results[1:])


@pytest.mark.parametrize("mode", ["delay", "coalesce"])
async def test_two_peers_answering_each_other_through_the_chaos_proxy(
    jitpc_id: str, mode: Mode
) -> None:
    """The same, with a proxy that holds and re-cuts the bytes (and has backpressure of its
    own) between the two."""
    size, count = 256 << 10, 256
    where = tempfile.mkdtemp(prefix="p", dir="/tmp")
    target = address(jitpc_id).socket
    async with server_process_of("mutual_server.py", jitpc_id, size, count):
        proxy = ChaosProxy(os.path.join(where, f"{jitpc_id}.sock"), target, mode)
        await proxy.start()
        try:
            saved = os.environ["TMPDIR"]
            os.environ["TMPDIR"] = where  # the client resolves the proxy's socket
            try:
                client = jitpc.connect(jitpc_id)
                await client.open()
            finally:
                os.environ["TMPDIR"] = saved
            async with client:
                client.respond("big", lambda n: "x" * n)
                ours = [client.request("big", size) for _ in range(count)]
                results = await asyncio.gather(client.request("ask_many"), *ours)
                assert results[0] == count * size
                assert all(len(r) == size for r in results[1:])
        finally:
            await proxy.close()
            shutil.rmtree(where, ignore_errors=True)


@contextlib.asynccontextmanager
async def server_process_of(script: str, *args: Any) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        *peer_command(script, *args), stdout=asyncio.subprocess.PIPE, env=python_env()
    )
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"listening\n"
        yield
    finally:
        await reap(proc)
