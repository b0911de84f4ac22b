"""The README's demo: a client that spins up its own detached server and calls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import HANG, ROOT, python_env

# Blocks until the lock is free, i.e. until the detached server has spun down and exited.
WAIT_FOR_LOCK = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("@hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="waits on the Linux OFD lock")
def test_demo_spins_up_its_server_and_reuses_it(jitpc_tmpdir: Path) -> None:
    def run_demo() -> str:
        return subprocess.run(
            [sys.executable, str(ROOT / "examples" / "counter_client.py"), "demo"],
            capture_output=True,
            text=True,
            check=True,
            timeout=HANG,
            env=python_env(),
        ).stdout

    first = run_demo()
    assert first.splitlines() == [
        "inc -> Counter(key='demo', count=1)",
        "inc -> Counter(key='demo', count=2)",
        "inc -> Counter(key='demo', count=3)",
        "get -> Counter(key='demo', count=3)",
        "inc by 0 -> InvalidParams -32602: [{'loc': ['by'], 'type': 'greater_than_equal', "
        "'msg': 'Input should be greater than or equal to 1'}]",
        "nope -> MethodNotFound(message='Unknown method: nope', code=-32601)",
    ]
    # The detached server outlived the first client and serves the second.
    assert "inc -> Counter(key='demo', count=4)" in run_demo()
    lock = jitpc_tmpdir / "demo.lock"
    subprocess.run([sys.executable, "-c", WAIT_FOR_LOCK, str(lock)], check=True, timeout=HANG)
    assert not (jitpc_tmpdir / "demo.sock").exists()  # it spun down and cleaned up
    # Its log (jitpc.spawn's default) names the server and client of jitpc's records.
    log = (jitpc_tmpdir / "demo.log").read_text()
    assert "INFO [demo client None] jitpc server 'demo' listening at " in log, log
    assert "INFO [demo client None] jitpc server 'demo' closing (0 clients)" in log, log
