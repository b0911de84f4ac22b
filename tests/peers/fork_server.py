"""A jitpc server whose handlers fork workers: ``fork_server.py LOOP ID [CTL_FD ALIVE_FD]``.

``LOOP`` is ``asyncio`` or ``uvloop``, the event loop it runs on.

``CTL_FD`` and ``ALIVE_FD`` are pipe ends the test passes down: a worker writes one byte to
``ALIVE_FD`` as it starts (jitpc's after-fork work is done by then), blocks reading ``CTL_FD``
until the test closes the other end, and holds ``ALIVE_FD`` open while it lives (the server
closes both once it has forked, so the test's read end of ``ALIVE_FD`` reaches its end exactly
when the worker has exited). A worker's stdio is /dev/null, so that the server's output ends
with the server.

Prints ``listening``, then ``gone`` each time a client's connection ends; closes when its last
client has gone (``closed``), and exits, which a ``multiprocessing`` worker delays until it
ends. Methods: ``fork`` forks a worker with ``os.fork()``, ``mp`` starts one with
multiprocessing's 'fork' context (both return its pid); ``hang`` prints ``hanging`` and never
returns.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from typing import Any

import jitpc


def linger(ctl: int, alive: int) -> None:
    """The worker: nothing of jitpc's, only the pipes the test controls."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.write(alive, b"+")
    os.read(ctl, 1)  # b"" once the test closes its end


async def main(server_id: str, ctl: int, alive: int) -> int:
    """``ctl`` and ``alive`` are -1 when no pipes were given (a server that never forks)."""
    forked = False

    def forget_pipes() -> None:
        nonlocal forked
        forked = True
        os.close(ctl)
        os.close(alive)

    def fork(_params: Any) -> int:
        assert not forked, "one worker per server"
        pid = os.fork()
        if pid == 0:
            try:
                linger(ctl, alive)
            finally:
                os._exit(0)
        forget_pipes()
        return pid

    def mp(_params: Any) -> int:
        assert not forked, "one worker per server"
        worker = multiprocessing.get_context("fork").Process(target=linger, args=(ctl, alive))
        worker.start()
        forget_pipes()
        assert worker.pid is not None
        return worker.pid

    async def hang(_params: Any) -> None:
        print("hanging", flush=True)
        await asyncio.Event().wait()

    async def watch(client: jitpc.Client) -> None:
        await client.wait_closed()
        print("gone", flush=True)
        if not server.clients:
            await server.close()

    tasks: set[asyncio.Task[None]] = set()

    def on_client(client: jitpc.Client) -> None:
        client.respond("fork", fork)
        client.respond("mp", mp)
        client.respond("hang", hang)
        task = asyncio.ensure_future(watch(client))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    found = await jitpc.listen(server_id, on_client=on_client, spindown=False)
    if found is None:
        print("busy", flush=True)
        return 3
    server = found
    print("listening", flush=True)
    await server.wait_closed()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    loop, server_id, *fds = sys.argv[1:]
    ctl, alive = (int(fds[0]), int(fds[1])) if fds else (-1, -1)
    if loop == "uvloop":
        import uvloop

        sys.exit(uvloop.run(main(server_id, ctl, alive)))
    sys.exit(asyncio.run(main(server_id, ctl, alive)))
