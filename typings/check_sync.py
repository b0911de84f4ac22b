"""Type-level cases for the blocking facade, ``jitpc.sync``: what must type-check, and what
must be rejected.

Never run; mypy checks it (with warn_unused_ignores, a rejection that stops happening fails).
"""

from __future__ import annotations

from typing import Any, assert_type

from pydantic import BaseModel

import jitpc
import jitpc.sync


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    key: str


class Log(jitpc.Method[None], method="log"):
    line: str


def check_connect_and_call() -> None:
    c = jitpc.sync.connect("id", spinup=lambda: None, timeout=5.0)
    assert_type(c, jitpc.sync.Client)
    assert_type(c.call(Inc(key="a")), Counter)
    assert_type(c.call(Inc(key="a"), timeout=1), Counter)
    assert_type(c.request("m"), Any)
    assert_type(c.request("m", {"a": 1}, timeout=0.5), Any)
    assert_type(c.notify("m"), None)
    assert_type(c.notify("m", [1]), None)
    assert_type(c.notify(Log(line="hi")), None)
    assert_type(c.open(), None)
    assert_type(c.closed, bool)
    assert_type(c.close(), None)
    with jitpc.sync.connect("id") as client:
        assert_type(client, jitpc.sync.Client)


def check_connect_timeout_and_reconnect() -> None:
    c = jitpc.sync.connect("id", connect_timeout=2.5, reconnect=True)
    assert_type(c, jitpc.sync.Client)
    assert_type(jitpc.sync.connect("id", connect_timeout=None, reconnect=False), jitpc.sync.Client)
    assert_type(jitpc.sync.connect("id", connect_timeout=0), jitpc.sync.Client)
    assert_type(
        jitpc.sync.Client("id", spinup=lambda: None, connect_timeout=1, reconnect=True, timeout=5),
        jitpc.sync.Client,
    )
    assert_type(c.open(timeout=1), None)
    assert_type(c.close(timeout=0.5), None)


def check_versions() -> None:
    c = jitpc.sync.connect("id", version="2", methods=[Inc, Log], on_mismatch="restart")
    assert_type(c, jitpc.sync.Client)
    jitpc.sync.Client("id", version=None, methods=(), on_mismatch="error")
    jitpc.sync.connect("id", version=2)  # type: ignore[arg-type]
    jitpc.sync.connect("id", on_mismatch="loop")  # type: ignore[arg-type]
    jitpc.sync.connect("id", methods=[Counter])  # type: ignore[list-item]


def check_rejections(c: jitpc.sync.Client) -> None:
    c.call(Counter(key="a", count=1))  # type: ignore[arg-type]
    c.call("inc")  # type: ignore[arg-type]
    c.notify(Inc(key="a"))  # type: ignore[arg-type]
    c.request("m", timeout="soon")  # type: ignore[arg-type]
    jitpc.sync.connect(42)  # type: ignore[arg-type]
    jitpc.sync.connect("id", spinup=1)  # type: ignore[arg-type]
    jitpc.sync.connect("id", connect_timeout="7s")  # type: ignore[arg-type]
    jitpc.sync.connect("id", reconnect=None)  # type: ignore[arg-type]
    jitpc.sync.connect("id", None)  # type: ignore[call-arg]
    jitpc.sync.Client("id", retry=True)  # type: ignore[call-arg]
    c.close(timeout="soon")  # type: ignore[arg-type]
    c.respond("m", thread="yes")  # type: ignore[call-overload]
    c.respond("m", lambda params: params, True)  # type: ignore[call-overload]


def check_respond_keeps_the_handler_type(c: jitpc.sync.Client) -> None:
    @c.respond("double")
    def double(params: Any) -> int:
        return 2

    assert_type(double(None), int)
    assert_type(c.respond("x", double)(None), int)

    @c.respond("slow", thread=True)
    def slow(params: Any) -> str:
        return "done"

    assert_type(slow(None), str)
    assert_type(c.respond("y", double, thread=True)(None), int)
    assert_type(c.respond("z", thread=False)(slow)(None), str)
