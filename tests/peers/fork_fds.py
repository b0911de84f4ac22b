"""What of jitpc's a forked child still holds, descriptor by descriptor: ``fork_fds.py LOOP ID``.

Serves ``ID`` with a client of its own connected (both ends of a connection in one process),
then forks four times, each time just after a raw connection arrives and 0 to 3 loop turns
later: so some fork comes after the loop accepted a connection and before it was made (and
tracked). Each child lists the descriptors it holds that are jitpc's: the lock file, and the
sockets bound or connected to the socket path, the raw ones aside. For each fork it prints
``fork K stray N HELD`` (``N``: the accepted connections not made yet at the fork; ``HELD``:
the child's list, as JSON), then ``parent ok`` once its server and client still work.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys

import jitpc
from jitpc import _fork
from jitpc._paths import address


def descriptors() -> list[int]:
    return [
        int(name) for name in os.listdir("/proc/self/fd" if sys.platform == "linux" else "/dev/fd")
    ]


def sockets_at(path: str) -> dict[int, str]:
    """This process's sockets bound or connected to ``path``, and which side."""
    found = {}
    for fd in descriptors():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX:
                if sock.getsockname() == path:
                    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    found[fd] = "listening" if listening else "accepted"
                elif sock.getpeername() == path:
                    found[fd] = "connecting"
        except OSError:
            pass
        finally:
            sock.detach()
    return found


def held(path: str, lock: tuple[int, int], mine: set[int]) -> list[str]:
    """What of jitpc's this (child) process holds."""
    result = [f"{fd} {side}" for fd, side in sockets_at(path).items() if fd not in mine]
    for fd in descriptors():
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == lock:
            result.append(f"{fd} lock")
    return result


def tracked() -> set[int]:
    holders = list(_fork._holders) + [holder for holder, _ in _fork._transports.values()]
    return {holder.fileno() for holder in holders}


def fork_and_report(turns: int, path: str, lock: tuple[int, int], raws: set[int]) -> None:
    """Fork in a step of the loop, as a handler would; print what the child reports holding."""
    accepted = {fd for fd, side in sockets_at(path).items() if side == "accepted"}
    stray = len(accepted - tracked())
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            os.write(report_w, json.dumps(held(path, lock, raws | {report_w})).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        found = json.loads(report.read())
    os.waitpid(pid, 0)
    print(f"fork {turns} stray {stray} {json.dumps(found)}", flush=True)


async def main(server_id: str) -> int:
    addr = address(server_id)
    server = await jitpc.listen(server_id, spindown=False)
    assert server is not None
    lock = (os.stat(addr.lock).st_dev, os.stat(addr.lock).st_ino)
    raws: list[socket.socket] = []
    async with server, jitpc.connect(server_id) as client:
        await client.request("rpc.ping")
        for turns in range(4):
            raw = socket.socket(socket.AF_UNIX)
            raws.append(raw)
            raw.connect(addr.socket)  # queued until the loop accepts it
            for _ in range(turns):
                await asyncio.sleep(0)
            fork_and_report(turns, addr.socket, lock, {r.fileno() for r in raws})
        assert await client.request("rpc.ping") == {}
        print("parent ok", flush=True)
    for raw in raws:
        raw.close()
    return 0


if __name__ == "__main__":
    loop, server_id = sys.argv[1:]
    if loop == "uvloop":
        import uvloop

        sys.exit(uvloop.run(main(server_id)))
    sys.exit(asyncio.run(main(server_id)))
