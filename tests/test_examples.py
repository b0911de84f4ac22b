"""The examples, run as a user runs them: subprocesses of this interpreter, output checked.

Every test runs in its own TMPDIR (``jitpc_tmpdir``), which the examples and the daemons they
start inherit; at its end, every jitpc server left there is stopped and waited for
(``no_daemon_left``). Waits are for events (a line printed, a lock released, a process gone),
each bounded by ``HANG``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import jitpc
from support import HANG, ROOT, python_env

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="waits on Linux OFD locks and pidfds"
)

EXAMPLES = ROOT / "examples"

# Blocks until no process holds the locks named in argv: until their servers have closed.
WAIT_FOR_LOCKS = """
import fcntl, os, struct, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("@hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
    os.close(fd)
"""


def run(
    *argv: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end: its exit status, stdout and stderr."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=HANG,
        env=python_env() if env is None else env,
        cwd=ROOT,
    )
    if check:
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done


def example(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` with this interpreter."""
    return run(sys.executable, str(EXAMPLES / script), *args, check=check)


def jitpc_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "jitpc", *args, check=check)


def servers() -> list[dict[str, object]]:
    """``jitpc ls --json``: the servers in this test's TMPDIR."""
    entries = json.loads(jitpc_cli("ls", "--json").stdout)
    assert isinstance(entries, list)
    return entries


def wait_exited(pid: int) -> None:
    """Wait until the process ``pid`` (not our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], HANG)
        assert ready, f"process {pid} still runs"
    finally:
        os.close(fd)


def stop_daemons(tmpdir: Path) -> None:
    """Stop every jitpc server in ``tmpdir`` and wait until each has exited."""
    entries = servers()
    for entry in entries:
        # 0: stopped; 2: it had just closed. --force: SIGTERM, then SIGKILL if it must.
        jitpc_cli("stop", str(entry["id"]), "--force", check=False)
    locks = [str(lock) for lock in tmpdir.glob("*.lock")]
    run(sys.executable, "-c", WAIT_FOR_LOCKS, *locks)
    for entry in entries:
        if isinstance(entry["pid"], int):
            wait_exited(entry["pid"])


@pytest.fixture(autouse=True)
def no_daemon_left(jitpc_tmpdir: Path) -> Iterator[None]:
    yield
    stop_daemons(jitpc_tmpdir)


# -- the typed counter daemon, spun up on demand (make demo) ----------------------------------


def test_demo_spins_up_its_server_and_reuses_it(jitpc_tmpdir: Path) -> None:
    def run_demo() -> str:
        return example("counter_client.py", "demo").stdout

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
    # Until it spins down by itself (5 s without clients) and exits.
    run(sys.executable, "-c", WAIT_FOR_LOCKS, str(jitpc_tmpdir / "demo.lock"))
    assert not (jitpc_tmpdir / "demo.sock").exists()  # it cleaned up
    # Its log (jitpc.spawn's default) names the server and client of jitpc's records.
    log = (jitpc_tmpdir / "demo.log").read_text()
    assert "INFO [demo client None] jitpc server 'demo' listening at " in log, log
    assert "INFO [demo client None] jitpc server 'demo' closing (0 clients)" in log, log


# -- a CLI tool on the blocking client ----------------------------------------------------------


def notes(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return example("notes_cli.py", *args, check=check)


@pytest.fixture
def notes_file(jitpc_tmpdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = jitpc_tmpdir / "notes.json"
    monkeypatch.setenv("NOTES_FILE", str(path))
    return path


def test_notes_cli_starts_its_daemon_which_keeps_the_notes(notes_file: Path) -> None:
    assert notes("add", "buy", "milk").stdout == "  1  buy milk\n"
    [daemon] = servers()  # started on demand, detached
    assert (daemon["id"], daemon["state"], daemon["version"]) == ("notes", "serving", "1")
    assert notes("add", "call mom").stdout == "  2  call mom\n"
    assert notes("list").stdout == "  1  buy milk\n  2  call mom\n"
    assert notes("list", "--grep", "milk").stdout == "  1  buy milk\n"
    assert notes("rm", "1").stdout == "  1  buy milk\n"
    assert json.loads(notes_file.read_text()) == [{"id": 2, "text": "call mom"}]
    assert [entry["pid"] for entry in servers()] == [daemon["pid"]]  # one daemon served all

    stopped = notes("stop")
    assert stopped.stdout == f"notes daemon (pid {daemon['pid']}) stopping\n"
    assert isinstance(daemon["pid"], int)
    wait_exited(daemon["pid"])
    assert notes("stop").stdout == "no notes daemon is running\n"
    # The next command starts a new daemon, which reads the file.
    assert notes("list").stdout == "  2  call mom\n"
    assert [entry["pid"] for entry in servers()] != [daemon["pid"]]


def test_notes_cli_errors_and_exit_statuses(notes_file: Path) -> None:
    unknown = notes("rm", "7", check=False)
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (1, "", "notes: no note 7\n")
    usage = notes("rm", "seven", check=False)
    assert usage.returncode == 2
    assert "notes rm: error: argument id: invalid int value: 'seven'" in usage.stderr


def test_notes_cli_reports_a_daemon_that_fails_to_start(notes_file: Path) -> None:
    notes_file.write_text("{not json")
    failed = notes("list", check=False)
    assert failed.returncode == 3, failed
    first, *log = failed.stderr.splitlines()
    assert first.startswith("notes: cannot reach the notes daemon: the jitpc daemon for 'notes'")
    assert "exited with status 1 before it served" in first
    assert "Invalid JSON" in "\n".join(log)  # its log's end: the daemon's traceback


def test_notes_cli_times_out(notes_file: Path) -> None:
    # A socket that takes connections and never answers: the CLI's first call (the version
    # check) waits until its --timeout.
    path = jitpc.address("notes").socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(path)
        hung.listen()
        late = notes("--timeout", "0.5", "list", check=False)
    os.unlink(path)
    assert (late.returncode, late.stdout) == (4, "")
    assert late.stderr == "notes: no answer from the notes daemon within 0.5 s\n"


# -- a server calling back into its client --------------------------------------------------------


def test_progress_reports_while_the_server_builds() -> None:
    built = example("progress_client.py", "app", "--steps", "3", "--id", "builds")
    assert built.stdout.splitlines() == [
        "[1/3] step 1",
        "[2/3] step 2",
        "[3/3] step 3",
        "built app.tar in 3 steps",
    ]


def test_progress_client_cancels_the_build_on_ctrl_c_and_timeout(jitpc_tmpdir: Path) -> None:
    # 10,000 steps of 0.1 s: only a cancel ends such a build within the test.
    build = [str(EXAMPLES / "progress_client.py"), "app", "--steps", "10000", "--id", "builds"]
    with subprocess.Popen(
        [sys.executable, *build],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    ) as client:
        assert client.stdout is not None
        assert select.select([client.stdout], [], [], HANG)[0], "no progress"
        assert client.stdout.readline() == "[1/10000] step 1\n"  # the build runs
        client.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = client.communicate(timeout=HANG)
    assert (client.returncode, err) == (130, "cancelled\n")

    late = run(sys.executable, *build, "--timeout", "0.5", check=False)
    assert (late.returncode, late.stderr) == (1, "no result within 0.5 s: cancelled\n")

    # A graceful stop waits for the requests in flight (here: up to 600 s, past --timeout):
    # it succeeds at once only because both builds were cancelled when their clients gave up.
    jitpc_cli("stop", "builds", "--grace", "600", "--timeout", str(HANG))
    log = (jitpc_tmpdir / "builds.log").read_text()
    assert log.count("client 0: build cancelled after ") == 2, log


# -- a Node client talking to the Python daemon -------------------------------------------------


def test_node_client_shares_the_notes_daemon(node_modules: Path, notes_file: Path) -> None:
    node = shutil.which("node")
    assert node is not None
    env = python_env(NODE_PATH=str(node_modules), PYTHON=sys.executable)
    script = str(EXAMPLES / "node_client.js")
    # Node starts the Python daemon (its spinup hook), and the Python CLI uses it.
    assert run(node, script, "from", "Node", env=env).stdout.splitlines() == [
        'added {"id":1,"text":"from Node"}',
        "1: from Node",
        'remove {"id":"one"}: error -32602: invalid params for \'remove\': id: Input should '
        "be a valid integer, unable to parse string as an integer",
        'remove {"id":999}: error 1: no note 999',
    ]
    [daemon] = servers()
    assert notes("add", "from Python").stdout == "  2  from Python\n"
    # And the other way round: Node finds the daemon running.
    assert "2: from Python" in run(node, script, env=env).stdout.splitlines()
    assert [entry["pid"] for entry in servers()] == [daemon["pid"]]


# -- a pytest suite for a jitpc-based tool, on jitpc.testing ---------------------------------------


def test_the_notes_tools_own_suite_passes() -> None:
    # Its pytest.ini (-p jitpc.testing) applies, not this suite's; it runs its async tests on
    # asyncio's loop and on uvloop's, whichever --loop this run has.
    suite = run(sys.executable, "-m", "pytest", "examples/testing", "-p", "no:cacheprovider")
    assert "rootdir: " + str(EXAMPLES / "testing") in suite.stdout, suite.stdout
    assert re.fullmatch(r"=+ 6 passed in \S+ =+", suite.stdout.splitlines()[-1]), suite.stdout
