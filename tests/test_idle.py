"""Idle rules: ``idle_timeout`` (no requests, even with clients connected) and
``first_client_timeout`` (the wait for the first client). In-process, with small timeouts: the
server's own timers are under test, and the tests order events by hooks and events, not by
sleeping; a second server's spindown serves as the clock where one is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

import jitpc
from jitpc._server import IDLE_CHECKS
from jitpc.testing import ClientFactory, wait_spun_down
from support import HANG

pytestmark = pytest.mark.anyio

#: Short enough for a quick test; its exact value never decides an outcome.
IDLE = 0.02


def echo(client: jitpc.Client) -> None:
    client.respond("echo", lambda params: params)


class Hook:
    """A spindown hook that tells when each call starts, and returns when the test says."""

    def __init__(self) -> None:
        self.calls = 0
        self._started: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def __call__(self) -> None:
        self.calls += 1
        done = asyncio.get_running_loop().create_future()
        self._started.put_nowait(done)
        await done

    async def running(self) -> asyncio.Future[None]:
        """Wait for the next call to start; set the result of what it returns to end it."""
        return await self._started.get()


def count_checks(server: jitpc.Server) -> Callable[[int], Awaitable[None]]:
    """A way to wait until the server's idle check has run ``n`` more times (failing if the
    server closes first)."""
    done: list[asyncio.Event] = []
    counts = [0]
    active = server._active

    def counted() -> bool:
        counts[0] += 1
        for event in done:
            event.set()
        return active()

    server._active = counted  # type: ignore[method-assign]

    async def wait(n: int) -> None:
        target = counts[0] + n
        closed = asyncio.ensure_future(server.wait_closed())
        try:
            while counts[0] < target:
                event = asyncio.Event()
                done.append(event)
                checked = asyncio.ensure_future(event.wait())
                await asyncio.wait((checked, closed), return_when=asyncio.FIRST_COMPLETED)
                checked.cancel()
                done.remove(event)
                assert not server.closed, f"closed after {counts[0]} checks"
        finally:
            closed.cancel()

    return wait


async def test_idle_timeout_spins_down_with_an_idle_client_connected(
    jitpc_client: ClientFactory,
) -> None:
    calls: list[str] = []

    async def hook() -> None:
        calls.append("spindown")

    client = await jitpc_client(on_client=echo, spindown=hook, idle_timeout=IDLE)  # sends nothing
    server = jitpc_client.server_for(client)
    await wait_spun_down(server)
    assert calls == ["spindown"]
    await client.wait_closed()  # closed by the server: nothing was pending
    with pytest.raises(jitpc.ClosedError):
        await client.request("echo", 2)


async def test_a_request_while_the_hook_runs_keeps_it_up_until_idle_again(
    jitpc_client: ClientFactory,
) -> None:
    hook = Hook()
    client = await jitpc_client(on_client=echo, spindown=hook, idle_timeout=IDLE)
    server = jitpc_client.server_for(client)
    first = await hook.running()
    assert await client.request("echo", "late") == "late"
    first.set_result(None)
    second = await hook.running()  # idle again: the hook runs a second time
    assert hook.calls == 2 and not server.closed and not client.closed
    second.set_result(None)
    await wait_spun_down(server)
    await client.wait_closed()


async def test_a_client_arriving_while_the_hook_runs_keeps_it_up(
    jitpc_client: ClientFactory,
) -> None:
    hook = Hook()
    served: asyncio.Queue[jitpc.Client] = asyncio.Queue()
    first = await jitpc_client(on_client=served.put_nowait, spindown=hook, idle_timeout=IDLE)
    server = jitpc_client.server_for(first)
    call = await hook.running()
    late = await jitpc_client.connect(first.server_id)
    await served.get()
    await served.get()  # the server has set up both
    call.set_result(None)
    (await hook.running()).set_result(None)  # idle again, both still idle: closes
    await wait_spun_down(server)
    await late.wait_closed()
    assert hook.calls == 2


async def test_a_notification_while_the_hook_runs_counts_too(jitpc_client: ClientFactory) -> None:
    hook = Hook()
    got = asyncio.Event()

    def on_client(client: jitpc.Client) -> None:
        client.respond("note", lambda _: got.set())

    client = await jitpc_client(on_client=on_client, spindown=hook, idle_timeout=IDLE)
    server = jitpc_client.server_for(client)
    first = await hook.running()
    client.notify("note")
    await got.wait()
    first.set_result(None)
    second = await hook.running()
    assert hook.calls == 2 and not server.closed
    second.set_result(None)
    await wait_spun_down(server)


async def test_health_probes_are_not_activity(jitpc_client: ClientFactory) -> None:
    hook = Hook()
    client = await jitpc_client(spindown=hook, idle_timeout=IDLE)
    server = jitpc_client.server_for(client)
    first = await hook.running()
    assert await client.request("rpc.ping") == {}
    assert (await client.request("rpc.status"))["clients"] == 1
    first.set_result(None)
    await wait_spun_down(server)
    assert hook.calls == 1


async def test_a_request_in_flight_keeps_it_up(jitpc_id: str) -> None:
    release = asyncio.Event()
    handling = asyncio.Event()
    calls: list[bool] = []  # per hook call: whether the request was being handled

    async def work(_params: Any) -> str:
        handling.set()
        await release.wait()
        return "done"

    async def hook() -> None:
        calls.append(handling.is_set() and not release.is_set())
        await handling.wait()  # if it runs before the request comes, the request keeps it up

    server = await jitpc.listen(
        jitpc_id,
        on_client=lambda c: c.respond("work", work),
        spindown=hook,
        idle_timeout=IDLE,
    )
    assert server is not None
    checks = count_checks(server)
    client = jitpc.connect(jitpc_id)
    pending = asyncio.ensure_future(client.request("work"))
    await handling.wait()
    await checks(3 * IDLE_CHECKS)  # three idle_timeouts' worth of checks
    assert not server.closed
    release.set()
    assert await pending == "done"
    await wait_spun_down(server)  # idle once it has answered
    assert calls[-1:] == [False] and True not in calls


async def test_a_raising_hook_keeps_it_up_and_waits_for_activity(jitpc_id: str) -> None:
    calls: list[str] = []
    reported = asyncio.Event()

    async def hook() -> None:
        calls.append("spindown")
        if len(calls) == 1:
            raise RuntimeError("not now")

    server = await jitpc.listen(
        jitpc_id,
        on_client=echo,
        spindown=hook,
        idle_timeout=IDLE,
        on_error=lambda _: reported.set(),
    )
    assert server is not None
    checks = count_checks(server)
    client = jitpc.connect(jitpc_id)
    await client.open()
    await reported.wait()
    await checks(2 * IDLE_CHECKS)
    assert calls == ["spindown"] and not server.closed  # not retried while still idle
    assert await client.request("echo", 1) == 1
    await wait_spun_down(server)  # idle again after that request: the hook runs again
    assert calls == ["spindown", "spindown"]


async def test_a_client_that_leaves_hands_over_to_the_no_client_rule(jitpc_id: str) -> None:
    calls: list[str] = []

    async def hook() -> None:
        calls.append("spindown")

    server = await jitpc.listen(
        jitpc_id,
        on_client=echo,
        spindown=hook,
        spindown_timeout=IDLE,
        idle_timeout=HANG,
        first_client_timeout=HANG,
    )
    assert server is not None
    async with jitpc.connect(jitpc_id) as client:
        assert await client.request("echo", 1) == 1
    await wait_spun_down(server)  # by spindown_timeout, long before idle_timeout
    assert calls == ["spindown"]


async def test_a_reconnecting_client_spins_a_server_up_again(jitpc_id: str) -> None:
    servers: list[jitpc.Server] = []
    answered = [asyncio.Event(), asyncio.Event()]  # one per server

    async def spinup() -> None:
        gate = answered[len(servers)]

        async def hook() -> None:
            await gate.wait()  # until its request was answered (it keeps the server up)

        server = await jitpc.listen(jitpc_id, on_client=echo, spindown=hook, idle_timeout=IDLE)
        assert server is not None
        servers.append(server)

    async with jitpc.connect(jitpc_id, spinup=spinup, reconnect=True) as client:
        assert await client.request("echo", 1) == 1
        connection = client._connection
        assert connection is not None
        answered[0].set()
        await wait_spun_down(servers[0])  # idle: closed with the client connected
        await connection.wait_closed()  # (else the next request may go on it, and fail)
        assert not client.closed
        assert await client.request("echo", 2) == 2  # connects again, spinup included
        assert len(servers) == 2 and servers[0].closed and not servers[1].closed
    answered[1].set()
    await servers[1].close()


async def stopwatch(jitpc_id: str, seconds: float) -> None:
    """Wait until a server with this ``spindown_timeout`` and no client has spun down: the
    servers' own clock, which orders its timers by their deadlines."""
    clock = await jitpc.listen(jitpc_id + "-clock", spindown_timeout=seconds)
    assert clock is not None
    await wait_spun_down(clock)


async def test_first_client_timeout_longer_than_spindown_timeout(jitpc_id: str) -> None:
    server = await jitpc.listen(
        jitpc_id, on_client=echo, spindown_timeout=IDLE, first_client_timeout=HANG
    )
    assert server is not None
    await stopwatch(jitpc_id, 2 * IDLE)
    assert not server.closed  # still waiting for its first client
    async with jitpc.connect(jitpc_id) as client:
        assert await client.request("echo", 1) == 1
    await wait_spun_down(server)  # after the first client, spindown_timeout applies


async def test_first_client_timeout_shorter_than_spindown_timeout(jitpc_id: str) -> None:
    came = asyncio.Event()

    async def hook() -> None:
        await came.wait()  # if it runs before the client comes, the client keeps it up

    server = await jitpc.listen(
        jitpc_id, on_client=echo, spindown_timeout=HANG, first_client_timeout=0
    )
    assert server is not None
    await wait_spun_down(server)
    again = await jitpc.listen(
        jitpc_id,
        on_client=echo,
        spindown=hook,
        spindown_timeout=HANG,
        first_client_timeout=IDLE,
    )
    assert again is not None
    async with jitpc.connect(jitpc_id) as client:
        assert await client.request("echo", 1) == 1
        came.set()
    await stopwatch(jitpc_id, 2 * IDLE)
    assert not again.closed  # once a client has come, the wait is spindown_timeout
    await again.close()


@pytest.mark.parametrize(
    "options",
    [
        {"idle_timeout": 0},
        {"idle_timeout": -1},
        {"first_client_timeout": -1},
        {"spindown": False, "idle_timeout": 1},
        {"spindown": False, "first_client_timeout": 1},
    ],
)
async def test_unusable_options_are_refused_before_taking_the_id(
    jitpc_id: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await jitpc.listen(jitpc_id, **options)
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    await server.close()


class Count(BaseModel):
    n: int


class Counted(jitpc.Method[Count], method="counted"):
    n: int


async def test_a_typed_request_read_whole_while_the_hook_runs_keeps_it_up(
    jitpc_client: ClientFactory,
) -> None:
    # Typed requests that come one per read skip the general dispatch (they are validated
    # whole from their bytes): they must still count as activity.
    router = jitpc.Router()

    @router.method
    def counted(params: Counted) -> Count:
        return Count(n=params.n)

    hook = Hook()
    client = await jitpc_client(router, spindown=hook, idle_timeout=IDLE)
    server = jitpc_client.server_for(client)
    assert (await client.call(Counted(n=1))).n == 1  # looked up: the fast path is ready
    first = await hook.running()
    assert (await client.call(Counted(n=2))).n == 2
    assert (await client.call(Counted(n=3))).n == 3
    first.set_result(None)
    second = await hook.running()  # idle again: the hook runs a second time
    assert hook.calls == 2 and not server.closed and not client.closed
    second.set_result(None)
    await wait_spun_down(server)
    await client.wait_closed()
