"""Type-level cases for typed methods; they hold with and without the jitpc.mypy plugin."""

from __future__ import annotations

import typing
from collections.abc import Awaitable
from typing import Annotated, Any, Generic, Literal, NoReturn, Optional, TypeVar, assert_type

from pydantic import BaseModel, ConfigDict, Field

import jitpc


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    key: str


class Log(jitpc.Method[None], method="log"):
    line: str


class Total(jitpc.Method[list[Counter]]):
    pass


class Lenient(jitpc.Method[Counter], method="lenient"):
    model_config = ConfigDict(extra="ignore")  # pydantic's own config overrides the default
    key: str


class SubCounter(Counter):
    note: str = ""


class Circle(BaseModel):
    kind: Literal["circle"] = "circle"
    radius: float


class Square(BaseModel):
    kind: Literal["square"] = "square"
    side: float


Shape = Annotated[Circle | Square, Field(discriminator="kind")]


class Draw(jitpc.Method[Shape], method="draw"):
    pass


class Find(jitpc.Method[Counter | None], method="find"):
    key: str


class Ratio(jitpc.Method[float], method="ratio"):
    pass


class Index(jitpc.Method[dict[str, list[Counter]]], method="index"):
    pass


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]


class Browse(jitpc.Method[Page[Counter]], method="browse"):
    pass


async def check_call(client: jitpc.Client) -> None:
    assert_type(await client.call(Inc(key="a")), Counter)
    assert_type(await client.call(Total()), list[Counter])
    assert_type(await client.call(Log(line="x")), None)
    await client.call(Counter(key="a", count=1))  # type: ignore[arg-type]
    await client.call("inc")  # type: ignore[arg-type]
    Inc(key=1)  # type: ignore[arg-type]
    assert_type(await client.call(Draw()), Circle | Square)
    assert_type(await client.call(Find(key="a")), Counter | None)
    assert_type(await client.call(Lenient(key="a")), Counter)


async def check_result_type_is_enforced(client: jitpc.Client) -> str:
    wrong: str = await client.call(Inc(key="a"))  # type: ignore[arg-type]
    return wrong


def check_notify(client: jitpc.Client) -> None:
    client.notify(Log(line="x"))
    client.notify("log", {"line": "x"})
    client.notify(Inc(key="a"))  # type: ignore[arg-type]


def check_decorators(server: jitpc.Server, router: jitpc.Router) -> None:
    @server.method
    def inc(params: Inc) -> Counter:
        return Counter(key=params.key, count=1)

    @router.method
    async def log(params: Log, client: jitpc.Client) -> None:
        return None

    assert_type(inc(Inc(key="a")), Counter)  # the decorator returns the handler unchanged
    server.mount(router)
    server.add_method(inc, name="inc2")

    @server.method(thread=True)
    def blocking(params: Inc) -> Counter:
        return Counter(key=params.key, count=1)

    @router.method(thread=True)
    def blocking_too(params: Inc) -> Counter:
        return Counter(key=params.key, count=1)

    assert_type(blocking(Inc(key="a")), Counter)
    server.add_method(blocking, name="inc3", thread=True)
    server.method(thread="yes")  # type: ignore[call-overload]
    server.method(blocking, thread=True)  # type: ignore[call-overload]


def check_accepted_result_forms(server: jitpc.Server, router: jitpc.Router) -> None:
    # Each is R or a subtype of it: accepted by mypy, the plugin and the registration check.
    @server.method
    def total(params: Total) -> typing.List[Counter]:  # noqa: UP006
        return []

    @server.method
    def sub_total(params: Total) -> list[SubCounter]:  # covariant: a result is handed over
        return []

    @server.method
    def sub_counter(params: Inc) -> SubCounter:
        return SubCounter(key=params.key, count=1)

    @router.method
    def circle(params: Draw) -> Circle:
        return Circle(radius=1)

    @router.method
    async def shape(params: Draw) -> Annotated[Circle | Square, Field(discriminator="kind")]:
        return Square(side=1)

    @router.method
    def found(params: Find) -> Counter:
        return Counter(key=params.key, count=1)

    @router.method
    def not_found(params: Find) -> None:
        return None

    @router.method
    def maybe(params: Find) -> Optional[SubCounter]:  # noqa: UP045
        return None

    @server.method(thread=True)
    def ratio(params: Ratio) -> int:  # int for float, as mypy promotes it
        return 1

    @router.method
    def index(params: Index) -> dict[str, list[SubCounter]]:
        return {}

    @router.method
    def browse(params: Browse) -> Page[SubCounter]:
        return Page[SubCounter](items=[])

    @router.method
    def refuse(params: Inc) -> NoReturn:
        raise jitpc.RPCError(-32001, "no")

    def later(params: Inc) -> Awaitable[Counter]:
        return sub_async(params)

    async def sub_async(params: Inc) -> SubCounter:
        return SubCounter(key=params.key, count=1)

    server.add_method(later, name="later")
    router.add_method(sub_async, name="sub-async")


async def check_timeouts(client: jitpc.Client) -> None:
    assert_type(await client.call(Inc(key="a"), timeout=1.5), Counter)
    assert_type(await client.call(Inc(key="a"), timeout=None), Counter)
    await client.call(Inc(key="a"), 1.5)  # type: ignore[call-arg]
    await client.call(Inc(key="a"), timeout="1")  # type: ignore[arg-type]


def check_errors() -> None:
    try:
        pass
    except jitpc.ResultValidationError as exc:
        assert_type(exc.errors, list[dict[str, Any]])
        assert_type(exc.result, Any)
    raise jitpc.RPCError(-32001, "quota exceeded", {"limit": 10})
