"""``jitpc.sync`` across ``os.fork()``: ``fork_sync.py ID check`` or ``fork_sync.py ID linger CTL_FD
ALIVE_FD``. ``ID`` is served by ``sync_server.py`` (check) or ``fork_server.py`` (linger).

Both modes first call the server through a sync client, so that the portal thread runs, then
fork without exec.

``check``: the child, in turn, prints one line per outcome: what its inherited client does
(``inherited ClosedError``, ``inherited closed True``), what a client made before the fork but
never used does (``unused ok``), what a new client does (``new ok``, ``timeout TimeoutError``,
``cancelled cancelled``: the timed-out request was cancelled on the server), and a connect
that fails in the child (``connect ConnectError``). It then exits normally: atexit handlers and
finalizers run. The parent waits for it, prints ``child exited 0``, calls the server again on
its own client (``parent ok``) and exits 0.

``linger``: the child keeps the pipes the test passes (see ``fork_server.py``: it writes a
byte to ``ALIVE_FD`` and blocks reading ``CTL_FD``); the parent prints ``forked`` and waits
until it is killed.
"""

from __future__ import annotations

import os
import sys

import jitpc
import jitpc.sync

#: Only catches hangs (as tests/support.HANG).
HANG = 60.0


def child(server_id: str, inherited: jitpc.sync.Client, unused: jitpc.sync.Client) -> None:
    try:
        inherited.request("echo", 1, timeout=HANG)
    except jitpc.ClosedError as exc:
        assert "fork" in str(exc), exc
        print("inherited ClosedError", flush=True)
    print(f"inherited closed {inherited.closed}", flush=True)
    inherited.close()  # quietly: the connection belongs to the parent

    with unused:
        assert unused.request("echo", "u", timeout=HANG) == "u"
        print("unused ok", flush=True)

    with jitpc.sync.connect(server_id, timeout=HANG) as client:
        assert client.request("echo", "n") == "n"
        print("new ok", flush=True)
        try:
            client.request("hang", "t", timeout=0.05)
        except TimeoutError as exc:
            print(f"timeout {type(exc).__name__}", flush=True)
        print(f"cancelled {client.request('cancelled', 't')}", flush=True)

    spun: list[str] = []
    missing = jitpc.sync.connect(
        server_id + "x", spinup=lambda: spun.append("spun"), connect_timeout=0.05
    )
    try:
        missing.request("echo", timeout=HANG)
    except jitpc.ConnectError:
        print(f"connect ConnectError {spun}", flush=True)
    missing.close()


def main(server_id: str, mode: str, *fds: str) -> int:
    client = jitpc.sync.connect(server_id, timeout=HANG)
    unused = jitpc.sync.connect(server_id, timeout=HANG)
    assert client.request("rpc.ping") == {}  # the portal runs
    pid = os.fork()
    if mode == "linger":
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.write(int(fds[1]), b"+")
            os.read(int(fds[0]), 1)  # b"" once the test closes its end
            os._exit(0)
        os.close(int(fds[0]))
        os.close(int(fds[1]))
        print("forked", flush=True)
        sys.stdin.read()
        return 0
    if pid == 0:
        child(server_id, client, unused)
        return 0  # a normal exit
    _, status = os.waitpid(pid, 0)
    print(f"child exited {os.waitstatus_to_exitcode(status)}", flush=True)
    assert client.request("echo", "after") == "after"
    client.close()
    print("parent ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
