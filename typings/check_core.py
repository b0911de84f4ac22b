"""Type-level cases for the untyped core: what must type-check, and what must be rejected.

Never run; mypy checks it (with warn_unused_ignores, a rejection that stops happening fails).
"""

from __future__ import annotations

from typing import Any, assert_type

import jitpc


async def check_listen_and_connect() -> None:
    server = await jitpc.listen("id", spindown=False, spindown_timeout=1.0)
    assert_type(server, jitpc.Server | None)
    server.close()  # type: ignore[union-attr]
    if server is not None:
        assert_type(server.client_by_id(0), jitpc.Client | None)
        assert_type(server.clients, list[jitpc.Client])
        async with server:
            pass

    client = jitpc.connect("id", spinup=lambda: None)
    assert_type(client, jitpc.Client)
    assert_type(await client.request("m", {"a": 1}), Any)
    assert_type(client.notify("m"), None)
    assert_type(client.id, int)
    jitpc.connect("id", spinup=1)  # type: ignore[arg-type]
    async with jitpc.connect("id") as c:
        assert_type(c, jitpc.Client)
    await jitpc.listen(42)  # type: ignore[arg-type]


async def check_deadlines_and_reconnect() -> None:
    client = jitpc.connect("id", connect_timeout=15, reconnect=True)
    jitpc.connect("id", connect_timeout=None)
    jitpc.connect("id", connect_timeout="15")  # type: ignore[arg-type]
    jitpc.connect("id", reconnect=1)  # type: ignore[arg-type]
    assert_type(await client.request("m", timeout=0.5), Any)
    await client.request("m", None, 0.5)  # type: ignore[call-arg]
    assert_type(await client.end(timeout=2), None)
    assert_type(await client.end(), None)


def check_thread_responders(client: jitpc.Client) -> None:
    @client.respond("slow", thread=True)
    def slow(params: Any) -> int:
        return 1

    assert_type(slow(None), int)
    assert_type(client.respond("x", slow, thread=True)(None), int)
    client.respond("x", slow, True)  # type: ignore[call-overload]


async def check_spinup_may_be_async() -> None:
    async def start() -> None: ...

    jitpc.connect("id", spinup=start)


def check_respond_keeps_the_handler_type(client: jitpc.Client) -> None:
    @client.respond("double")
    def double(params: Any) -> int:
        return 2

    assert_type(double(None), int)  # the decorator returns the handler unchanged
    assert_type(client.respond("x", double)(None), int)


def check_errors() -> None:
    try:
        pass
    except jitpc.RemoteError as exc:
        assert_type(exc.code, Any)
        assert_type(exc.message, str)
        assert_type(exc.data, Any)
        assert_type(exc.stack, str | None)
    except jitpc.ConnectError as exc:
        assert_type(exc.path, str)
        assert_type(exc.server_id, str)
    except OSError:  # ConnectError and ClosedError are ConnectionErrors too
        pass


class Ping(jitpc.Method[int], method="ping"):
    n: int


async def check_versions() -> None:
    client = jitpc.connect("id", version="1.2", methods=[Ping], on_mismatch="restart")
    assert_type(client, jitpc.Client)
    jitpc.connect("id", version=None, methods=(Ping,), on_mismatch="error")
    jitpc.connect("id", methods={Ping})
    jitpc.connect("id", version=2)  # type: ignore[arg-type]
    jitpc.connect("id", on_mismatch="retry")  # type: ignore[arg-type]
    jitpc.connect("id", methods=[int])  # type: ignore[list-item]
    jitpc.connect("id", methods=Ping)  # type: ignore[arg-type]
    jitpc.connect("id", methods=[Ping(n=1)])  # type: ignore[list-item]
    try:
        await client.open()
    except jitpc.VersionMismatch as exc:
        assert_type(exc.expected, str | None)
        assert_type(exc.found, str | None)
        assert_type(exc.methods, tuple[str, ...])
        assert_type(exc.server_id, str)  # a ConnectError
