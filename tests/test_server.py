"""listen(): one server per id, spindown, client ids, crashes. Real sockets and processes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

import jitpc
from jitpc.testing import ClientFactory, DaemonFactory, wait_spun_down
from rawpeer import raw_peer
from support import (
    HANG,
    echo_daemon,
    peer_command,
    python_env,
    reap,
    sample_responders,
    server_process,
)

pytestmark = pytest.mark.anyio


def echo(client: jitpc.Client) -> None:
    client.respond("echo", lambda params: params)


async def test_processes_race_and_exactly_one_wins(jitpc_id: str) -> None:
    count = random.randint(2, 20)
    procs = [
        await asyncio.create_subprocess_exec(
            *peer_command("race_listen.py", jitpc_id),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=python_env(),
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), HANG) == b"ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outcomes = []
        for proc in procs:
            assert proc.stdout is not None
            outcomes.append(await asyncio.wait_for(proc.stdout.readline(), HANG))
        assert sorted(outcomes) == [b"lost\n"] * (count - 1) + [b"won\n"], count
        async with jitpc.connect(jitpc_id) as client:
            assert await client.request("echo", "hi") == "hi"
        assert await jitpc.listen(jitpc_id) is None
    finally:
        for proc in procs:
            await reap(proc)


async def test_second_listen_in_one_process_gets_none(jitpc_id: str) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    async with server:
        assert await jitpc.listen(jitpc_id) is None
        assert await jitpc.listen(jitpc_id) is None
    # Once closed, the id is free again.
    again = await jitpc.listen(jitpc_id, spindown=False)
    assert again is not None
    await again.close()


async def test_socket_file_is_private_and_removed_on_close(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    sock = jitpc_tmpdir / f"{jitpc_id}.sock"
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    mode = os.lstat(sock).st_mode
    assert stat.S_ISSOCK(mode) and mode & 0o777 == 0o600
    await server.close()
    assert not sock.exists()
    assert (jitpc_tmpdir / f"{jitpc_id}.lock").exists()  # the lock file stays


async def test_idle_server_spins_down_once(jitpc_id: str) -> None:
    calls: list[str] = []
    server = await jitpc.listen(
        jitpc_id, spindown=lambda: calls.append("spindown"), spindown_timeout=0.05
    )
    assert server is not None
    await wait_spun_down(server)
    assert server.closed
    assert calls == ["spindown"]
    # It released the id.
    again = await jitpc.listen(jitpc_id, spindown=False)
    assert again is not None
    await again.close()


async def test_async_spindown_hook_is_awaited(jitpc_id: str) -> None:
    done = asyncio.Event()

    async def hook() -> None:
        await asyncio.sleep(0)
        done.set()

    server = await jitpc.listen(jitpc_id, spindown=hook, spindown_timeout=0.01)
    assert server is not None
    await wait_spun_down(server)
    assert done.is_set()


async def test_server_with_a_client_outlives_the_timeout(jitpc_id: str) -> None:
    calls: list[str] = []
    timeout = 0.05
    server = await jitpc.listen(
        jitpc_id,
        on_client=lambda c: c.respond("wait", lambda s: asyncio.sleep(s, "waited")),
        spindown=lambda: calls.append("spindown"),
        spindown_timeout=timeout,
        first_client_timeout=HANG,  # the client may take longer than `timeout` to come
    )
    assert server is not None
    client = jitpc.connect(jitpc_id)
    # The server itself waits out several timeouts while the client is connected.
    assert await client.request("wait", timeout * 5) == "waited"
    assert not server.closed and calls == []
    await client.end()
    await wait_spun_down(server)
    assert calls == ["spindown"]


async def test_raising_spindown_hook_keeps_the_server_open(jitpc_id: str) -> None:
    errors: list[BaseException] = []
    reported = asyncio.Event()

    def hook() -> None:
        raise RuntimeError("not now")

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        reported.set()

    server = await jitpc.listen(
        jitpc_id, on_client=echo, spindown=hook, spindown_timeout=0.01, on_error=on_error
    )
    assert server is not None
    await reported.wait()
    assert [str(e) for e in errors] == ["not now"]
    assert not server.closed
    async with jitpc.connect(jitpc_id) as client:
        assert await client.request("echo", 1) == 1
    assert await jitpc.listen(jitpc_id) is None
    await server.close()


async def test_spindown_false_never_spins_down(jitpc_client: ClientFactory) -> None:
    client = await jitpc_client(on_client=echo, spindown=False)
    assert await client.request("echo", 1) == 1
    await client.end()
    assert not jitpc_client.server_for(client).closed


async def test_client_ids_are_small_and_reused(jitpc_client: ClientFactory) -> None:
    def on_client(client: jitpc.Client) -> None:
        client.respond("whoami", lambda _: client.id)

    a = await jitpc_client(on_client=on_client, spindown=False)
    b = await jitpc_client.connect(a.server_id)
    server = jitpc_client.server_for(a)
    id_a, id_b = await a.request("whoami"), await b.request("whoami")
    assert sorted([id_a, id_b]) == [0, 1]
    assert a.id == b.id == 0  # the connecting side is always 0
    served_a = server.client_by_id(id_a)
    assert served_a is not None and served_a.id == id_a
    assert [c.id for c in server.clients] == [0, 1]
    await a.end()
    await served_a.wait_closed()
    assert server.client_by_id(id_a) is None
    c = await jitpc_client.connect(a.server_id)
    assert await c.request("whoami") == id_a
    assert [c.id for c in server.clients] == [0, 1]


async def test_server_requests_and_notifies_its_client(
    jitpc_daemon: DaemonFactory, jitpc_id: str
) -> None:
    notes: list[Any] = []
    got_note = asyncio.Event()
    await jitpc_daemon.start(echo_daemon(jitpc_id), env=python_env())
    client = jitpc.connect(jitpc_id)

    @client.respond("double")
    async def double(params: Any) -> Any:
        return params * 2

    def note(params: Any) -> None:
        notes.append(params)
        got_note.set()

    client.respond("note", note)
    assert await client.request("ask", {"method": "double", "params": 21}) == 42
    with pytest.raises(jitpc.MethodNotFound):
        await client.request("ask", {"method": "absent"})
    await client.request("tell", {"method": "note", "params": {"n": 1}})
    await got_note.wait()
    assert notes == [{"n": 1}]
    await client.end()


async def test_killed_server_leaves_a_stale_socket_that_the_next_listen_takes(
    jitpc_id: str, jitpc_tmpdir: Path
) -> None:
    sock = jitpc_tmpdir / f"{jitpc_id}.sock"
    async with server_process(jitpc_id) as proc:
        client = jitpc.connect(jitpc_id)
        assert await client.request("pid") == proc.pid
        slow = asyncio.ensure_future(client.request("sleep", 3600))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    # The pending request fails promptly (not after the hour) with the closed error.
    with pytest.raises(jitpc.ClosedError):
        await slow
    assert client.closed
    with pytest.raises(jitpc.ClosedError):
        await client.request("echo", 1)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # stale
    server = await jitpc.listen(jitpc_id, on_client=echo, spindown=False)
    assert server is not None
    async with server, jitpc.connect(jitpc_id) as fresh:
        assert await fresh.request("echo", "again") == "again"


async def test_close_fails_pending_requests_of_its_clients(jitpc_id: str) -> None:
    started = asyncio.Event()

    async def hang(params: Any) -> Any:
        started.set()
        await asyncio.Event().wait()

    server = await jitpc.listen(
        jitpc_id, on_client=lambda c: c.respond("hang", hang), spindown=False
    )
    assert server is not None
    client = jitpc.connect(jitpc_id)
    pending = asyncio.ensure_future(client.request("hang"))
    await started.wait()
    await server.close()
    with pytest.raises(jitpc.ClosedError):
        await pending
    await client.wait_closed()


async def test_async_on_client_runs_before_the_clients_messages(
    jitpc_client: ClientFactory,
) -> None:
    async def setup(client: jitpc.Client) -> None:
        await asyncio.sleep(0.01)
        client.respond("ready", lambda _: True)

    client = await jitpc_client(on_client=setup, spindown=False)
    assert await client.request("ready") is True


async def test_user_data_and_statistics_of_clients(jitpc_client: ClientFactory) -> None:
    def tag(client: jitpc.Client) -> None:
        client.user_data = {"tag": client.id}
        client.respond("tag", lambda _: client.user_data)

    client = await jitpc_client(on_client=tag, spindown=False)
    assert await client.request("tag") == {"tag": 0}


async def test_a_dead_client_is_released_and_its_running_handler_cancelled(jitpc_id: str) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[object] = []
    cancelled: list[object] = []
    served: asyncio.Queue[jitpc.Client] = asyncio.Queue()

    def on_client(client: jitpc.Client) -> None:
        async def wait(params: Any) -> Any:
            started.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.append(params)
                raise
            finished.append(params)
            return params

        client.respond("wait", wait)
        served.put_nowait(client)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server:
        request = b'{"jsonrpc":"2.0","id":1,"method":"wait","params":"x"}\n'
        sock_path = os.path.join(os.environ["TMPDIR"], f"{jitpc_id}.sock")
        proc = await asyncio.create_subprocess_exec(
            *peer_command("raw_client.py", sock_path, request.hex()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=python_env(),
        )
        try:
            peer = await served.get()
            await started.wait()
            proc.kill()  # not a half-close: the whole connection is gone
            await proc.wait()
            await peer.wait_closed()  # released at once, not when the responder returns
            assert server.client_by_id(peer.id) is None and finished == []
        finally:
            await reap(proc)
        release.set()
        async with jitpc.connect(jitpc_id) as other:  # the id is free again
            assert await other.request("wait", "y") == "y"
        # Its answer could never be sent: the dead client's handler was cancelled.
        assert finished == ["y"] and cancelled == ["x"]


async def test_a_request_read_alone_is_answered_as_one_of_a_read_of_several(
    jitpc_id: str,
) -> None:
    # A read of one request is answered as its handler returns, written at once: the same
    # bytes as when the requests come together (the general path, where a coroutine's answer
    # may come after the others), and what a handler sends on the way still comes first.
    def on_client(client: jitpc.Client) -> None:
        sample_responders(client)

        def step(params: Any) -> Any:
            client.notify("progress", params)
            return params

        client.respond("step", step)

    lines = [
        b'{"jsonrpc":"2.0","id":%d,"method":"%b","params":{"n":%d}}\n' % (n, method, n)
        for n, method in enumerate((b"step", b"later", b"crash", b"unencodable", b"absent"), 1)
    ]
    server = await jitpc.listen(jitpc_id, spindown=False, on_client=on_client)
    assert server is not None
    try:
        async with raw_peer(jitpc_id) as peer:
            rounds: list[list[bytes]] = []
            for _ in range(2):  # the first looks each method up, the second finds it
                rounds.append([])
                for line in lines:
                    await peer.send(line)
                    rounds[-1].append(await peer.read_line())
                    if b'"step"' in line:
                        rounds[-1].append(await peer.read_line())
            first, alone = rounds
            await peer.send(b"".join(lines))
            together = [await peer.read_line() for _ in alone]
    finally:
        await server.close()
    assert alone == first
    assert alone[:3] == [
        b'{"jsonrpc":"2.0","method":"progress","params":{"n":1}}\n',
        b'{"jsonrpc":"2.0","id":1,"result":{"n":1}}\n',
        b'{"jsonrpc":"2.0","id":2,"result":{"n":2}}\n',
    ]
    codes = [json.loads(line)["error"]["code"] for line in alone[3:]]
    assert codes == [-32603, -32603, -32601]
    assert sorted(together) == sorted(alone)
    assert together.index(alone[0]) < together.index(alone[1])
