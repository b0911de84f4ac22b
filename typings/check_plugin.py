"""Cases only the jitpc.mypy plugin catches: a handler's result must be its model's ``R``."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

import jitpc


class Counter(BaseModel):
    key: str


class Inc(jitpc.Method[Counter], method="inc"):
    key: str


class Total(jitpc.Method[list[Counter]]):
    pass


class Find(jitpc.Method[Counter | None], method="find"):
    key: str


class Count(jitpc.Method[int], method="count"):
    pass


def check_handler_results(server: jitpc.Server, router: jitpc.Router) -> None:
    @server.method
    def good(params: Inc) -> Counter:
        return Counter(key=params.key)

    @server.method
    async def good_async(params: Inc, client: jitpc.Client) -> Counter:
        return Counter(key=params.key)

    @server.method  # type: ignore[jitpc-method]
    def wrong_model(params: Inc) -> Inc:
        return params

    @router.method  # type: ignore[jitpc-method]
    async def wrong_async(params: Inc) -> str:
        return ""

    @router.method  # type: ignore[jitpc-method]
    def no_params_model(params: Counter) -> Counter:
        return params


def check_thread_handlers_and_add_method(server: jitpc.Server, router: jitpc.Router) -> None:
    @server.method(thread=True)
    def blocking(params: Inc) -> Counter:
        return Counter(key=params.key)

    @router.method(thread=True)  # type: ignore[jitpc-method]
    def blocking_wrong(params: Inc) -> str:
        return ""

    def plain(params: Inc) -> Inc:
        return params

    server.add_method(plain)  # type: ignore[jitpc-method]
    router.add_method(plain, name="other")  # type: ignore[jitpc-method]
    server.add_method(blocking, name="again", thread=True)


def check_clear_mismatches(server: jitpc.Server, router: jitpc.Router) -> None:
    @server.method  # type: ignore[jitpc-method]
    def maybe(params: Inc) -> Counter | None:  # None is not a Counter
        return None

    @server.method  # type: ignore[jitpc-method]
    def strings(params: Total) -> list[str]:
        return []

    @router.method  # type: ignore[jitpc-method]
    def one(params: Total) -> Counter:
        raise NotImplementedError

    @router.method  # type: ignore[jitpc-method]
    def wider(params: Total) -> Sequence[Counter]:  # a supertype, not a subtype
        return []

    @router.method  # type: ignore[jitpc-method]
    def text(params: Find) -> str:
        return ""

    @router.method  # type: ignore[jitpc-method]
    def ratio(params: Count) -> float:
        return 0.5

    @router.method  # type: ignore[jitpc-method]
    def count_text(params: Count) -> list[int]:
        return []

    async def late(params: Inc) -> str:
        return ""

    server.add_method(late)  # type: ignore[jitpc-method]
    register = router.method(thread=True)

    def wrong(params: Inc) -> None:
        return None

    register(wrong)  # type: ignore[jitpc-method]
