"""Typed methods: pydantic models validated at both ends, over real sockets."""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
import uuid
from typing import assert_type

import pytest
from pydantic import BaseModel

import jitpc
from support import HANG


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    """Add one to a counter."""

    key: str


class Peek(jitpc.Method[Counter]):
    key: str


class Log(jitpc.Method[None], method="log"):
    line: str


class Whoami(jitpc.Method[int], method="whoami"):
    pass


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Rich(BaseModel):
    when: datetime.datetime
    day: datetime.date
    uid: uuid.UUID
    color: Color
    nested: Counter
    either: int | str
    maybe: Counter | None = None
    items: list[Counter] = []


class EchoRich(jitpc.Method[Rich], method="echo-rich"):
    value: Rich


class Fail(jitpc.Method[Counter], method="fail"):
    how: str


class Ask(jitpc.Method[str], method="ask"):
    question: str


def build_server(server: jitpc.Server, logs: list[str] | None = None) -> None:
    counts: dict[str, int] = {}

    @server.method
    def inc(params: Inc) -> Counter:
        counts[params.key] = counts.get(params.key, 0) + 1
        return Counter(key=params.key, count=counts[params.key])

    @server.method
    async def peek(params: Peek) -> Counter:
        await asyncio.sleep(0)
        return Counter(key=params.key, count=counts.get(params.key, 0))

    @server.method
    def whoami(params: Whoami, client: jitpc.Client) -> int:
        return client.id

    @server.method
    def echo_rich(params: EchoRich) -> Rich:
        return params.value

    @server.method
    def log(params: Log) -> None:
        if logs is not None:
            logs.append(params.line)

    @server.method
    def fail(params: Fail) -> Counter:
        if params.how == "raise":
            raise KeyError("no such counter")
        if params.how == "rpc":
            raise jitpc.RPCError(-32001, "quota exceeded", {"limit": 10})
        return {"key": "k", "count": "not a number"}  # type: ignore[return-value]


async def typed_server(server_id: str, logs: list[str] | None = None) -> jitpc.Server:
    server = await jitpc.listen(server_id, spindown=False)
    assert server is not None
    build_server(server, logs)
    return server


async def test_typed_calls_return_validated_models(server_id: str) -> None:
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id), jitpc.connect(server_id) as client:
            counter = await client.call(Inc(key="a"))
            assert_type(counter, Counter)
            assert counter == Counter(key="a", count=1)
            assert await client.call(Inc(key="a")) == Counter(key="a", count=2)
            assert await client.call(Peek(key="a")) == Counter(key="a", count=2)
            assert await client.call(Whoami()) == 0
            # The method name defaults to the class name.
            assert await client.request("Peek", {"key": "a"}) == {"key": "a", "count": 2}


async def test_rich_types_round_trip_exactly(server_id: str) -> None:
    value = Rich(
        when=datetime.datetime(2026, 11, 26, 12, 30, 5, 123456, tzinfo=datetime.UTC),
        day=datetime.date(2026, 2, 28),
        uid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        color=Color.BLUE,
        nested=Counter(key="n", count=-3),
        either="text",
        maybe=None,
        items=[Counter(key="x", count=1), Counter(key="y", count=2)],
    )
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id), jitpc.connect(server_id) as client:
            echoed = await client.call(EchoRich(value=value))
            assert echoed == value
            assert type(echoed.color) is Color and type(echoed.uid) is uuid.UUID
            other = value.model_copy(update={"either": 7, "maybe": Counter(key="m", count=0)})
            assert await client.call(EchoRich(value=other)) == other
            # On the wire it is plain JSON.
            raw = await client.request("echo-rich", {"value": value.model_dump(mode="json")})
            assert raw == value.model_dump(mode="json")


async def test_invalid_params_come_back_as_invalid_params(server_id: str) -> None:
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id), jitpc.connect(server_id) as client:
            with pytest.raises(jitpc.InvalidParams) as info:
                await client.request("inc", {"key": 5})
            assert info.value.code == -32602
            assert info.value.data == [
                {"loc": ["key"], "type": "string_type", "msg": "Input should be a valid string"}
            ]
            with pytest.raises(jitpc.InvalidParams) as missing:
                await client.request("inc")
            assert [e["type"] for e in missing.value.data] == ["missing"]
            with pytest.raises(jitpc.InvalidParams):
                await client.request("inc", ["a"])
            assert await client.call(Inc(key="a")) == Counter(key="a", count=1)


async def test_unknown_method_and_handler_errors(server_id: str) -> None:
    class Nope(jitpc.Method[Counter], method="nope"):
        pass

    async with asyncio.timeout(HANG):
        async with await typed_server(server_id), jitpc.connect(server_id) as client:
            with pytest.raises(jitpc.MethodNotFound):
                await client.call(Nope())
            with pytest.raises(jitpc.InternalError, match="no such counter") as internal:
                await client.call(Fail(how="raise"))
            assert internal.value.code == -32603
            with pytest.raises(jitpc.RemoteError) as chosen:
                await client.call(Fail(how="rpc"))
            assert (chosen.value.code, chosen.value.message, chosen.value.data) == (
                -32001,
                "quota exceeded",
                {"limit": 10},
            )


async def test_bad_result_is_an_internal_error_and_logged(
    server_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id), jitpc.connect(server_id) as client:
            with caplog.at_level(logging.ERROR, logger="jitpc"):
                with pytest.raises(jitpc.InternalError, match="failed validation") as info:
                    await client.call(Fail(how="bad-result"))
    assert [e["loc"] for e in info.value.data] == [["count"]]
    assert any("does not fit its result type" in r.getMessage() for r in caplog.records)


async def test_client_validates_results(server_id: str) -> None:
    def untyped(client: jitpc.Client) -> None:
        client.respond("inc", lambda params: {"key": params["key"], "count": "many"})

    async with asyncio.timeout(HANG):
        server = await jitpc.listen(server_id, on_client=untyped, spindown=False)
        assert server is not None
        async with server, jitpc.connect(server_id) as client:
            with pytest.raises(jitpc.ResultValidationError) as info:
                await client.call(Inc(key="a"))
            assert info.value.result == {"key": "a", "count": "many"}
            assert [e["loc"] for e in info.value.errors] == [["count"]]
            assert isinstance(info.value, ValueError)


async def test_typed_notifications(server_id: str) -> None:
    logs: list[str] = []
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id, logs), jitpc.connect(server_id) as client:
            client.notify(Log(line="one"))
            client.notify(Log(line="two"))
            client.notify("log", {"line": 3})  # invalid: dropped, nothing to answer
            # Messages are handled in order, so a round trip means both were handled.
            await client.call(Whoami())
            assert logs == ["one", "two"]
            await client.call(Log(line="three"))  # may also be called; the answer is null
            assert logs == ["one", "two", "three"]


async def test_router_on_several_servers_and_on_a_client(
    server_id: str,
) -> None:
    shared = jitpc.Router()

    @shared.method
    def inc(params: Inc) -> Counter:
        return Counter(key=params.key, count=100)

    answers = jitpc.Router()

    @answers.method
    async def ask(params: Ask, client: jitpc.Client) -> str:
        return f"{params.question}? yes (client {client.id})"

    asked = asyncio.Queue[str]()

    async def on_client(client: jitpc.Client) -> None:
        async def ask_back() -> None:
            asked.put_nowait(await client.call(Ask(question="ready")))

        task = asyncio.ensure_future(ask_back())
        client.user_data = task

    async with asyncio.timeout(HANG):
        first = await jitpc.listen(server_id, on_client=on_client, spindown=False)
        second = await jitpc.listen(server_id + "b", spindown=False)
        assert first is not None and second is not None
        first.mount(shared)
        second.mount(shared)
        async with first, second:
            a, b = jitpc.connect(server_id), jitpc.connect(server_id + "b")
            a.mount(answers)
            assert (await a.call(Inc(key="x"))).count == 100
            assert (await b.call(Inc(key="x"))).count == 100
            assert await asked.get() == "ready? yes (client 0)"
            await a.end()
            await b.end()


def test_handlers_are_checked_when_registered() -> None:
    router = jitpc.Router()

    def no_annotation(params):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(TypeError, match="jitpc.Method"):
        router.add_method(no_annotation)  # type: ignore[jitpc-method]

    def wrong_model(params: Counter) -> Counter:
        return params

    with pytest.raises(TypeError, match="jitpc.Method"):
        router.add_method(wrong_model)  # type: ignore[jitpc-method]

    def wrong_result(params: Inc) -> Rich:
        raise NotImplementedError

    with pytest.raises(TypeError, match="returns Rich, but Inc declares the result type Counter"):
        router.add_method(wrong_result)  # type: ignore[jitpc-method]

    def good(params: Inc) -> Counter:
        return Counter(key=params.key, count=0)

    assert router.method(good) is good
    with pytest.raises(ValueError, match="already registered"):
        router.method(good)
    router.add_method(good, name="inc2")
    assert router.methods == ["inc", "inc2"]

    with pytest.raises(TypeError, match="must name its result type"):

        class Unparametrised(jitpc.Method):  # type: ignore[type-arg]
            pass


def test_openrpc_document_from_a_router() -> None:
    router = jitpc.Router()

    @router.method
    def inc(params: Inc) -> Counter:
        raise NotImplementedError

    @router.method
    def log(params: Log) -> None:
        """Write a line to the log."""

    doc = router.openrpc(title="counters", version="1.0.0")
    assert doc["openrpc"].startswith("1.3")
    assert doc["info"] == {"title": "counters", "version": "1.0.0"}
    by_name = {m["name"]: m for m in doc["methods"]}
    assert set(by_name) == {"inc", "log"}
    assert by_name["inc"]["params"] == [
        {"name": "key", "required": True, "schema": {"title": "Key", "type": "string"}}
    ]
    assert by_name["inc"]["result"]["schema"] == {"$ref": "#/components/schemas/Counter"}
    assert by_name["inc"]["summary"] == "Add one to a counter."
    assert "result" not in by_name["log"]  # a notification
    assert by_name["log"]["summary"] == "Write a line to the log."
    assert set(doc["components"]["schemas"]["Counter"]["properties"]) == {"key", "count"}


class Late(jitpc.Method[int], method="late"):
    """Registered after a first rpc.discover."""


async def test_server_answers_rpc_discover(server_id: str) -> None:
    async with asyncio.timeout(HANG):
        async with await typed_server(server_id) as server, jitpc.connect(server_id) as client:
            doc = await client.request("rpc.discover")
            assert doc == server.openrpc()
            assert doc["info"]["title"] == server_id
            assert {m["name"] for m in doc["methods"]} == {
                "inc",
                "Peek",
                "whoami",
                "echo-rich",
                "log",
                "fail",
            }
            assert "Rich" in doc["components"]["schemas"]
            assert await client.request("rpc.discover") == doc

            # A method added later is in the next answer.
            @server.method
            def late(params: Late) -> int:
                return 1

            again = await client.request("rpc.discover")
            assert {m["name"] for m in again["methods"]} == {
                *(m["name"] for m in doc["methods"]),
                "late",
            }
            assert again == server.openrpc()


def test_the_known_plain_result_types_stay_bounded() -> None:
    # A program that makes result types at run time must not grow the set without end, and
    # past the cap, results are still told apart correctly.
    from jitpc._connection import PLAIN_TYPES, is_awaitable

    class Later:
        def __await__(self) -> object:
            return iter(())

    saved = set(PLAIN_TYPES)
    try:
        for i in range(5000):
            assert not is_awaitable(type(f"Result{i}", (), {})())
        assert len(PLAIN_TYPES) <= 4096
        assert is_awaitable(Later())
        assert not is_awaitable(type("Plain", (), {})())
    finally:
        PLAIN_TYPES.intersection_update(saved)  # leave the other tests a set of normal size
