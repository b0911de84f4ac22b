"""Cancellation end to end: a request given up on one side is cancelled on the other.

The caller's side: a cancelled or timed-out request sends ``$/cancelRequest`` for its id and
forgets it. The serving side: the handler's task is cancelled (or, waiting at the in-flight cap,
never started) and answered -32800 exactly once. Real sockets throughout; the raw peer shows the
exact bytes where the answer matters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import jitpc
from jitpc._connection import MAX_IN_FLIGHT
from jitpc.testing import ClientFactory
from rawpeer import raw_peer
from support import echo_server, echoing

pytestmark = pytest.mark.anyio


class Gate:
    """A handler that waits until released, recording how each call ended."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[Any] = asyncio.Queue()
        self.release = asyncio.Event()
        self.cancelled: list[Any] = []
        self.finished: list[Any] = []
        self.ended = asyncio.Event()

    async def __call__(self, params: Any) -> Any:
        self.started.put_nowait(params)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(params)
            self.ended.set()
            raise
        self.finished.append(params)
        self.ended.set()
        return params


serve = echo_server


def cancel_line(id_: Any) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": id_}}
    ).encode()


def request_line(id_: Any, method: str, params: Any = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


async def test_a_timed_out_request_cancels_its_handler_and_the_client_goes_on(
    jitpc_id: str,
) -> None:
    gate = Gate()
    async with await serve(jitpc_id, wait=gate) as server:
        async with jitpc.connect(jitpc_id) as client:
            with pytest.raises(TimeoutError):
                await client.request("wait", "a", timeout=0.05)
            await gate.ended.wait()
            assert gate.cancelled == ["a"] and gate.finished == []
            # The -32800 answer was discarded; the connection serves on.
            assert await client.request("echo", 1) == 1
            status = await client.request("rpc.status")
            assert status["in_flight"] == 0 and status["clients"] == 1
        assert not server.closed


async def test_cancelling_the_awaiting_task_cancels_the_handler(
    jitpc_client: ClientFactory,
) -> None:
    gate = Gate()
    client = await jitpc_client(on_client=echoing(wait=gate), spindown=False)
    task = asyncio.create_task(client.request("wait", "b"))
    assert await gate.started.get() == "b"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gate.ended.wait()
    assert gate.cancelled == ["b"]


async def test_the_serving_side_answers_a_cancel_once_with_minus_32800(jitpc_id: str) -> None:
    gate = Gate()
    async with await serve(jitpc_id, wait=gate):
        async with raw_peer(jitpc_id) as peer:
            await peer.send(request_line(7, "wait", "x") + b"\n")
            assert await gate.started.get() == "x"
            # Cancelled twice, and once for an id that runs nothing: one answer only.
            await peer.send(
                cancel_line(7) + b"\n" + cancel_line(7) + b"\n" + cancel_line(99) + b"\n"
            )
            reply = await peer.read_reply()
            assert reply["id"] == 7 and reply["error"]["code"] == -32800
            await peer.send(request_line(8, "echo", "after") + b"\n")
            assert await peer.read_reply() == {"jsonrpc": "2.0", "id": 8, "result": "after"}
            assert gate.cancelled == ["x"]


async def test_a_cancel_after_the_answer_changes_nothing(jitpc_id: str) -> None:
    async with await serve(jitpc_id):
        async with raw_peer(jitpc_id) as peer:
            await peer.send(request_line(1, "echo", 1) + b"\n" + cancel_line(1) + b"\n")
            assert await peer.read_reply() == {"jsonrpc": "2.0", "id": 1, "result": 1}
            await peer.send(request_line(2, "echo", 2) + b"\n")
            # Nothing for the late cancel came in between.
            assert await peer.read_reply() == {"jsonrpc": "2.0", "id": 2, "result": 2}


async def test_a_request_waiting_at_the_cap_is_never_started_when_cancelled(
    jitpc_id: str,
) -> None:
    gate = Gate()
    async with await serve(jitpc_id, wait=gate):
        async with raw_peer(jitpc_id) as peer:
            lines = [request_line(n, "wait", n) for n in range(1, MAX_IN_FLIGHT + 3)]
            queued = MAX_IN_FLIGHT + 1  # the first past the cap: it waits for a free slot
            lines += [cancel_line(queued), request_line("p", "rpc.ping")]
            await peer.send(b"\n".join(lines) + b"\n")
            # Answered at once, ahead of everything waiting: the cancel and the health probe.
            replies = [await peer.read_reply(), await peer.read_reply()]
            assert {r["id"]: r.get("error", {}).get("code") for r in replies} == {
                queued: -32800,
                "p": None,
            }
            assert gate.started.qsize() == MAX_IN_FLIGHT
            gate.release.set()
            answered = [await peer.read_reply() for _ in range(MAX_IN_FLIGHT + 1)]
            assert sorted(r["id"] for r in answered) == [
                n for n in range(1, MAX_IN_FLIGHT + 3) if n != queued
            ]
            assert queued not in gate.finished and gate.cancelled == []


async def test_a_handler_can_shield_its_work_from_cancellation(jitpc_client: ClientFactory) -> None:
    done: list[str] = []
    finished = asyncio.Event()
    release = asyncio.Event()
    started = asyncio.Event()

    async def work() -> None:
        await release.wait()
        done.append("work")
        finished.set()

    async def guarded(params: Any) -> Any:
        started.set()
        await asyncio.shield(work())
        return "unreachable once cancelled"

    client = await jitpc_client(on_client=echoing(guarded=guarded), spindown=False)
    task = asyncio.create_task(client.request("guarded"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await client.request("echo", "served meanwhile") == "served meanwhile"
    release.set()
    await finished.wait()
    assert done == ["work"]


async def test_a_hung_handler_does_not_keep_a_server_up_once_its_client_is_gone(
    jitpc_id: str,
) -> None:
    gate = Gate()

    def on_client(client: jitpc.Client) -> None:
        client.respond("wait", gate)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown_timeout=0.05)
    assert server is not None
    client = jitpc.connect(jitpc_id)
    task = asyncio.create_task(client.request("wait", "hung"))
    await gate.started.get()
    client.destroy()
    with pytest.raises(jitpc.ClosedError):
        await task
    await server.wait_closed()  # it spun down: the handler did not hold it
    assert gate.cancelled == ["hung"]


async def test_10000_cancellations_under_load_leave_the_connection_usable_and_leak_nothing(
    jitpc_id: str,
) -> None:
    hang = Gate()
    async with await serve(jitpc_id, hang=hang) as server:
        async with jitpc.connect(jitpc_id) as client:
            baseline = len(asyncio.all_tasks())

            async def give_up(n: int) -> str:
                try:
                    await client.request("hang", n, timeout=0 if n % 2 else 0.001)
                except TimeoutError:
                    return "timeout"
                return "answered"

            outcomes: list[Any] = []
            for start in range(0, 10_000, 500):
                # Load beside the cancellations: echoes that must all come back right.
                outcomes += await asyncio.gather(
                    *(give_up(n) for n in range(start, start + 500)),
                    *(client.request("echo", n) for n in range(start, start + 100)),
                )
            assert outcomes.count("timeout") == 10_000
            echoes = [o for o in outcomes if o not in ("timeout", "answered")]
            assert sorted(echoes) == [n for s in range(0, 10_000, 500) for n in range(s, s + 100)]
            # A round trip after the cancels: the server has read all of them, and handles
            # this one after (in order on the connection).
            assert await client.request("echo", "still usable") == "still usable"
            while (await client.request("rpc.status"))["in_flight"]:
                pass  # each turn is a round trip: cancelled tasks finish in between
            assert hang.finished == []
            (serving,) = server.clients
            connection = serving._connection
            assert connection is not None
            assert (connection._tasks, connection._running, connection._peer_cancelled) == (
                {},
                {},
                set(),
            )
            ours = client._connection
            assert ours is not None and ours._peer.outstanding == 0
            assert len(ours._peer._cancelled) <= 4096  # bounded, whatever the peer answers
            assert len(asyncio.all_tasks()) == baseline
