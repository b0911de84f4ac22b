"""Typed methods: pydantic models validated at both ends, over real sockets."""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
import typing
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, NoReturn, Optional, assert_type

import pytest
import typing_extensions
from pydantic import BaseModel, ConfigDict, Field

import jitpc
from jitpc.testing import ClientFactory

pytestmark = pytest.mark.anyio


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


def typed_router(logs: list[str] | None = None) -> jitpc.Router:
    router = jitpc.Router()
    counts: dict[str, int] = {}

    @router.method
    def inc(params: Inc) -> Counter:
        counts[params.key] = counts.get(params.key, 0) + 1
        return Counter(key=params.key, count=counts[params.key])

    @router.method
    async def peek(params: Peek) -> Counter:
        await asyncio.sleep(0)
        return Counter(key=params.key, count=counts.get(params.key, 0))

    @router.method
    def whoami(params: Whoami, client: jitpc.Client) -> int:
        return client.id

    @router.method
    def echo_rich(params: EchoRich) -> Rich:
        return params.value

    @router.method
    def log(params: Log) -> None:
        if logs is not None:
            logs.append(params.line)

    @router.method
    def fail(params: Fail) -> Counter:
        if params.how == "raise":
            raise KeyError("no such counter")
        if params.how == "rpc":
            raise jitpc.RPCError(-32001, "quota exceeded", {"limit": 10})
        return {"key": "k", "count": "not a number"}  # type: ignore[return-value]

    return router


async def typed_server(jitpc_id: str, logs: list[str] | None = None) -> jitpc.Server:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    server.mount(typed_router(logs))
    return server


async def test_typed_calls_return_validated_models(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(typed_router(), spindown=False)
    counter = await client.call(Inc(key="a"))
    assert_type(counter, Counter)
    assert counter == Counter(key="a", count=1)
    assert await client.call(Inc(key="a")) == Counter(key="a", count=2)
    assert await client.call(Peek(key="a")) == Counter(key="a", count=2)
    assert await client.call(Whoami()) == 0
    # The method name defaults to the class name.
    assert await client.request("Peek", {"key": "a"}) == {"key": "a", "count": 2}


async def test_rich_types_round_trip_exactly(jitpc_client: ClientFactory) -> None:
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
    client = await jitpc_client(typed_router(), spindown=False)
    echoed = await client.call(EchoRich(value=value))
    assert echoed == value
    assert type(echoed.color) is Color and type(echoed.uid) is uuid.UUID
    other = value.model_copy(update={"either": 7, "maybe": Counter(key="m", count=0)})
    assert await client.call(EchoRich(value=other)) == other
    # On the wire it is plain JSON.
    raw = await client.request("echo-rich", {"value": value.model_dump(mode="json")})
    assert raw == value.model_dump(mode="json")


async def test_invalid_params_come_back_as_invalid_params(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(typed_router(), spindown=False)
    with pytest.raises(jitpc.InvalidParams) as info:
        await client.request("inc", {"key": 5})
    assert info.value.code == -32602
    assert info.value.data == [
        {"loc": ["key"], "type": "string_type", "msg": "Input should be a valid string"}
    ]
    # The first error is in the message too: Node jitpc drops data.
    assert info.value.message == "invalid params for 'inc': key: Input should be a valid string"
    with pytest.raises(jitpc.InvalidParams) as missing:
        await client.request("inc")
    assert [e["type"] for e in missing.value.data] == ["missing"]
    assert missing.value.message == "invalid params for 'inc': key: Field required"
    with pytest.raises(jitpc.InvalidParams) as not_a_dict:
        await client.request("inc", ["a"])
    assert not_a_dict.value.message == (
        "invalid params for 'inc': Input should be a valid dictionary or instance of Inc"
    )
    with pytest.raises(jitpc.InvalidParams) as several:
        await client.request("echo-rich", {"value": {"nested": {}}})
    errors = several.value.data
    assert len(errors) > 2
    assert several.value.message == (
        f"invalid params for 'echo-rich': {'.'.join(map(str, errors[0]['loc']))}: "
        f"{errors[0]['msg']} (+{len(errors) - 1} more)"
    )
    assert errors[0]["loc"] == ["value", "when"]
    assert await client.call(Inc(key="a")) == Counter(key="a", count=1)


async def test_unknown_method_and_handler_errors(jitpc_client: ClientFactory) -> None:
    class Nope(jitpc.Method[Counter], method="nope"):
        pass

    client = await jitpc_client(typed_router(), spindown=False)
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
    jitpc_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await jitpc_client(typed_router(), spindown=False)
    with caplog.at_level(logging.ERROR, logger="jitpc"):
        with pytest.raises(jitpc.InternalError, match="failed validation") as info:
            await client.call(Fail(how="bad-result"))
    assert [e["loc"] for e in info.value.data] == [["count"]]
    assert info.value.message == (
        "the server's result for 'fail' failed validation: count: Input should be a valid "
        "integer, unable to parse string as an integer"
    )
    assert any("does not fit its result type" in r.getMessage() for r in caplog.records)


async def test_client_validates_results(jitpc_client: ClientFactory) -> None:
    def untyped(client: jitpc.Client) -> None:
        client.respond("inc", lambda params: {"key": params["key"], "count": "many"})

    client = await jitpc_client(on_client=untyped, spindown=False)
    with pytest.raises(jitpc.ResultValidationError) as info:
        await client.call(Inc(key="a"))
    assert info.value.result == {"key": "a", "count": "many"}
    assert [e["loc"] for e in info.value.errors] == [["count"]]
    assert isinstance(info.value, ValueError)


async def test_typed_notifications(jitpc_client: ClientFactory) -> None:
    logs: list[str] = []
    client = await jitpc_client(typed_router(logs), spindown=False)
    client.notify(Log(line="one"))
    client.notify(Log(line="two"))
    client.notify("log", {"line": 3})  # invalid: dropped, nothing to answer
    # Messages are handled in order, so a round trip means both were handled.
    await client.call(Whoami())
    assert logs == ["one", "two"]
    await client.call(Log(line="three"))  # may also be called; the answer is null
    assert logs == ["one", "two", "three"]


async def test_router_on_several_servers_and_on_a_client(
    jitpc_id: str,
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

    first = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    second = await jitpc.listen(jitpc_id + "b", spindown=False)
    assert first is not None and second is not None
    first.mount(shared)
    second.mount(shared)
    async with first, second:
        a, b = jitpc.connect(jitpc_id), jitpc.connect(jitpc_id + "b")
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


async def test_server_answers_rpc_discover(jitpc_id: str) -> None:
    async with await typed_server(jitpc_id) as server, jitpc.connect(jitpc_id) as client:
        doc = await client.request("rpc.discover")
        assert doc == server.openrpc()
        assert doc["info"]["title"] == jitpc_id
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


# -- Return annotations: what registration accepts -----------------------------------------------


class SubCounter(Counter):
    note: str = ""


class Total(jitpc.Method[list[Counter]], method="total"):
    pass


class Circle(BaseModel):
    kind: Literal["circle"] = "circle"
    radius: float


class Square(BaseModel):
    kind: Literal["square"] = "square"
    side: float


class Draw(jitpc.Method[Annotated[Circle | Square, Field(discriminator="kind")]], method="draw"):
    shape: str


class Find(jitpc.Method[Counter | None], method="find"):
    key: str


class Ratio(jitpc.Method[float], method="ratio"):
    pass


class Index(jitpc.Method[dict[str, list[Counter]]], method="index"):
    pass


class Pairs(jitpc.Method[tuple[int, ...]], method="pairs"):
    pass


class Pair(jitpc.Method[tuple[int, int]], method="pair"):
    pass


T = typing.TypeVar("T")


class Page(BaseModel, typing.Generic[T]):
    items: list[T]


class Browse(jitpc.Method[Page[Counter]], method="browse"):
    pass


class Point(typing_extensions.TypedDict):  # pydantic needs this one before Python 3.12
    x: int


class Where(jitpc.Method[Point], method="where"):
    pass


def total_list(params: Total) -> typing.List[Counter]:  # noqa: UP006
    return []


def total_sub(params: Total) -> list[SubCounter]:
    return [SubCounter(key="s", count=1, note="extra")]


def inc_sub(params: Inc) -> SubCounter:
    return SubCounter(key=params.key, count=1)


def draw_circle(params: Draw) -> Circle:
    return Circle(radius=1)


async def draw_either(params: Draw) -> Circle | Square:
    return Square(side=2) if params.shape == "square" else Circle(radius=1)


def draw_annotated(params: Draw) -> Annotated[Circle | Square, Field(discriminator="kind")]:
    return Circle(radius=1)


def find_some(params: Find) -> Counter:
    return Counter(key=params.key, count=1)


def find_none(params: Find) -> None:
    return None


def find_optional(params: Find) -> Optional[SubCounter]:  # noqa: UP045
    return None


def ratio_int(params: Ratio) -> int:
    return 1


def index_sub(params: Index) -> dict[str, list[SubCounter]]:
    return {}


def pairs_fixed(params: Pairs) -> tuple[int, int]:
    return (1, 2)


def browse_sub(params: Browse) -> Page[SubCounter]:
    return Page[SubCounter](items=[])


def where_dict(params: Where) -> dict[str, Any]:
    return {"x": 1}


def inc_any(params: Inc) -> Any:
    return Counter(key=params.key, count=1)


def inc_never(params: Inc) -> NoReturn:
    raise jitpc.RPCError(-32001, "no")


def inc_unannotated(params: Inc):  # type: ignore[no-untyped-def]  # unchecked, validated per call
    return Counter(key=params.key, count=1)


def inc_awaitable(params: Inc) -> Awaitable[Counter]:
    return find_async(params)


async def find_async(params: Inc) -> SubCounter:
    return SubCounter(key=params.key, count=1)


ACCEPTED: list[Callable[..., object]] = [
    total_list,
    total_sub,
    inc_sub,
    draw_circle,
    draw_either,
    draw_annotated,
    find_some,
    find_none,
    find_optional,
    ratio_int,
    index_sub,
    pairs_fixed,
    browse_sub,
    where_dict,
    inc_any,
    inc_never,
    inc_unannotated,
    inc_awaitable,
]


@pytest.mark.parametrize("handler", ACCEPTED, ids=lambda h: h.__name__)
def test_registration_accepts_compatible_return_types(handler: Callable[..., object]) -> None:
    router = jitpc.Router()
    router.add_method(handler)
    assert len(router.methods) == 1


def inc_str(params: Inc) -> str:
    return ""


def inc_maybe(params: Inc) -> Counter | None:
    return None


def inc_none(params: Inc) -> None:
    return None


def total_strings(params: Total) -> list[str]:
    return []


def total_one(params: Total) -> Counter:
    raise NotImplementedError


def total_sequence(params: Total) -> Sequence[Counter]:
    return []


def whoami_float(params: Whoami) -> float:
    return 0.5


def log_counter(params: Log) -> Counter:
    raise NotImplementedError


def pair_short(params: Pair) -> tuple[int]:
    return (1,)


async def draw_text(params: Draw) -> str:
    return ""


def browse_strings(params: Browse) -> Page[str]:
    raise NotImplementedError


REJECTED: list[tuple[Callable[..., object], str]] = [
    (inc_str, "returns str, but Inc declares the result type Counter"),
    (inc_maybe, r"returns Counter \| None, but Inc declares the result type Counter"),
    (inc_none, "returns None, but Inc declares"),
    (total_strings, r"returns list\[str\], but Total declares the result type list\[Counter\]$"),
    (total_one, "returns Counter, but Total"),
    (total_sequence, r"returns Sequence\[Counter\], but Total"),
    (whoami_float, "returns float, but Whoami declares the result type int"),
    (log_counter, "returns Counter, but Log declares the result type None"),
    (pair_short, r"returns tuple\[int\], but Pair"),
    (draw_text, r"returns str, but Draw declares the result type Circle \| Square$"),
    (browse_strings, r"returns Page\[str\], but Browse declares the result type Page\[Counter\]$"),
]


@pytest.mark.parametrize(
    ("handler", "message"), REJECTED, ids=[handler.__name__ for handler, _ in REJECTED]
)
def test_registration_rejects_clear_mismatches(
    handler: Callable[..., object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        jitpc.Router().add_method(handler)


async def test_compatible_handlers_answer_with_the_result_type(jitpc_client: ClientFactory) -> None:
    router = jitpc.Router()
    for handler in (total_sub, draw_either, find_optional, ratio_int, inc_awaitable):
        router.add_method(handler)
    client = await jitpc_client(router, spindown=False)
    # SubCounter's extra field goes on the wire; Counter ignores it.
    assert await client.call(Total()) == [Counter(key="s", count=1)]
    assert await client.call(Draw(shape="square")) == Square(side=2)
    assert await client.call(Draw(shape="circle")) == Circle(radius=1)
    assert await client.call(Find(key="a")) is None
    assert await client.call(Ratio()) == 1.0
    assert await client.call(Inc(key="a")) == Counter(key="a", count=1)


# -- Params evolve safely: unknown params fields are refused, unknown result fields ignored -----


class IncV2(jitpc.Method[Counter], method="inc"):
    """A newer client's Inc: the server's Inc does not know ``by``."""

    key: str
    by: int = 1


class Lenient(jitpc.Method[Counter], method="lenient"):
    model_config = ConfigDict(extra="ignore")
    key: str


class Open(jitpc.Method[Counter], method="open"):
    model_config = ConfigDict(extra="allow")
    key: str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str


class EchoInc(jitpc.Method[Inc], method="echo-inc"):
    """A params model as a result type: it ignores unknown fields there."""

    value: Inc


class EchoIncs(jitpc.Method[list[Inc]], method="echo-incs"):
    pass


class GetStrict(jitpc.Method[Strict], method="get-strict"):
    pass


async def test_unknown_params_fields_are_invalid_params(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(typed_router(), spindown=False)
    with pytest.raises(jitpc.InvalidParams) as info:
        await client.call(IncV2(key="a", by=2))
    assert info.value.code == -32602
    assert info.value.data == [
        {"loc": ["by"], "type": "extra_forbidden", "msg": "Extra inputs are not permitted"}
    ]
    assert info.value.message == ("invalid params for 'inc': by: Extra inputs are not permitted")
    with pytest.raises(jitpc.InvalidParams) as untyped:
        await client.request("inc", {"key": "a", "x": 1, "y": 2})
    assert [(e["loc"], e["type"]) for e in untyped.value.data] == [
        (["x"], "extra_forbidden"),
        (["y"], "extra_forbidden"),
    ]
    assert untyped.value.message.endswith("x: Extra inputs are not permitted (+1 more)")
    # Nothing ran.
    assert await client.call(Inc(key="a")) == Counter(key="a", count=1)


async def test_a_params_model_may_ignore_or_allow_unknown_fields(jitpc_id: str) -> None:
    seen: list[dict[str, Any] | None] = []
    server = await typed_server(jitpc_id)

    @server.method
    def lenient(params: Lenient) -> Counter:
        seen.append(params.model_extra)
        return Counter(key=params.key, count=0)

    @server.method
    def open_(params: Open) -> Counter:
        seen.append(params.model_extra)
        return Counter(key=params.key, count=len(params.model_extra or {}))

    async with server, jitpc.connect(jitpc_id) as client:
        assert await client.request("lenient", {"key": "a", "new": 1}) == {
            "key": "a",
            "count": 0,
        }
        assert await client.request("open", {"key": "a", "new": 1}) == {"key": "a", "count": 1}
        # A model that allows extras sends them too.
        assert await client.call(Open(key="b", more="x")) == Counter(key="b", count=1)  # type: ignore[call-arg]
    assert seen == [None, {"new": 1}, {"more": "x"}]


async def test_results_with_unknown_fields_validate(jitpc_client: ClientFactory) -> None:
    def newer_server(client: jitpc.Client) -> None:
        client.respond("inc", lambda params: {"key": params["key"], "count": 1, "added": True})
        client.respond("echo-inc", lambda params: {**params["value"], "added": True})
        client.respond("echo-incs", lambda params: [{"key": "a", "added": 1}, {"key": "b"}])
        client.respond("get-strict", lambda params: {"key": "a", "added": True})

    client = await jitpc_client(on_client=newer_server, spindown=False)
    assert await client.call(Inc(key="a")) == Counter(key="a", count=1)
    # A Method model inside a result ignores them too...
    echoed = await client.call(EchoInc(value=Inc(key="k")))
    assert echoed == Inc(key="k") and type(echoed) is Inc
    assert await client.call(EchoIncs()) == [Inc(key="a"), Inc(key="b")]
    # ... while a result model that forbids them says so.
    with pytest.raises(jitpc.ResultValidationError) as info:
        await client.call(GetStrict())
    assert [e["type"] for e in info.value.errors] == ["extra_forbidden"]
    # As params, Inc still refuses them.
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Inc.model_validate({"key": "a", "added": True})


async def test_a_handler_result_with_unknown_fields_validates(jitpc_client: ClientFactory) -> None:
    router = jitpc.Router()

    @router.method
    def echo_inc(params: EchoInc) -> Inc:
        return {**params.value.model_dump(), "added": True}  # type: ignore[return-value]

    client = await jitpc_client(router, spindown=False)
    assert await client.call(EchoInc(value=Inc(key="k"))) == Inc(key="k")
