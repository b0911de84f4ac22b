"""Type-level cases for typed methods; they hold with and without the jitpc.mypy plugin."""

from __future__ import annotations

from typing import Any, assert_type

from pydantic import BaseModel

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


async def check_call(client: jitpc.Client) -> None:
    assert_type(await client.call(Inc(key="a")), Counter)
    assert_type(await client.call(Total()), list[Counter])
    assert_type(await client.call(Log(line="x")), None)
    await client.call(Counter(key="a", count=1))  # type: ignore[arg-type]
    await client.call("inc")  # type: ignore[arg-type]
    Inc(key=1)  # type: ignore[arg-type]


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
