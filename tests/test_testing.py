"""jitpc.testing, the pytest plugin: each fixture works and cleans up, the hang bound fires,
the checks pass and fail as they should. Each test runs a small test module in a pytest of its
own (``pytester``, in this process, so that what the inner run leaves is visible here)."""

from __future__ import annotations

import fnmatch
import inspect
import os
import textwrap
import threading
from pathlib import Path

import pytest

import jitpc
import jitpc.sync
import jitpc.testing

# Its own conftest: the backend; AFTER, checks that run once all of a test's fixtures have
# been torn down (an autouse fixture is set up first, so it is torn down last); a router.
CONFTEST = """
import pytest

import jitpc
from jitpc.testing import assert_nothing_left


class Add(jitpc.Method[int], method="add"):
    a: int
    b: int


router = jitpc.Router()


@router.method
def add(params: Add) -> int:
    return params.a + params.b


AFTER = []


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def after_teardown(jitpc_tmpdir):
    yield
    try:
        for check in AFTER:
            check()
        assert_nothing_left(jitpc_tmpdir)
    finally:
        AFTER.clear()
"""

# A daemon for jitpc_daemon: serves its id until told to stop, and says so in its log.
DAEMON = """
import asyncio
import sys

import jitpc


async def main() -> None:
    server = await jitpc.listen(sys.argv[1], spindown=False)
    assert server is not None
    print("serving", flush=True)
    await server.serve_forever()
    print("stopped", flush=True)


asyncio.run(main())
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run the test module ``source`` with the plugin, in this process."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\naddopts = -p jitpc.testing --strict-markers\nfilterwarnings = error\n"
    )
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def jitpc_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("jitpc."))


def test_the_module_docstring_example_passes(pytester: pytest.Pytester) -> None:
    doc = inspect.getdoc(jitpc.testing)
    assert doc is not None
    example = doc.split("A complete test module")[1].split("::\n", 1)[1]
    result = run(pytester, example)
    result.assert_outcomes(passed=2)


def test_a_zero_spindown_timeout_still_returns_a_served_client(pytester: pytest.Pytester) -> None:
    # With no wait for the factory's own client, the server would spin down before accepting it.
    result = run(
        pytester,
        """
        import pytest
        from conftest import Add, router
        from jitpc.testing import wait_spun_down

        @pytest.mark.anyio
        async def test_async(jitpc_client):
            client = await jitpc_client(router, spindown_timeout=0)
            assert await client.call(Add(a=1, b=2)) == 3
            await client.end()  # then the rule holds: no client, no server
            await wait_spun_down(jitpc_client.server_for(client))

        def test_sync(jitpc_sync_client):
            client = jitpc_sync_client(router, spindown_timeout=0)
            assert client.call(Add(a=1, b=2)) == 3
            client.close()
            jitpc_sync_client.run(wait_spun_down, jitpc_sync_client.server_for(client))
        """,
    )
    result.assert_outcomes(passed=2)


def test_tmpdir_is_short_private_and_the_temp_dir_and_removed_after(
    pytester: pytest.Pytester, jitpc_tmpdir: Path
) -> None:
    seen = pytester.path / "seen"
    result = run(
        pytester,
        f"""
        import os, stat, sys, tempfile
        from pathlib import Path
        import jitpc

        def test_it(jitpc_tmpdir, jitpc_id):
            path = str(jitpc_tmpdir)
            Path({str(seen)!r}).write_text(path)
            assert jitpc_tmpdir.name.startswith("jitpc-") and path.startswith("/tmp/")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
            assert [os.environ[n] for n in ("TMPDIR", "TMP", "TEMP")] == [path] * 3
            assert tempfile.gettempdir() == path
            assert jitpc.address(jitpc_id).socket == os.path.join(path, jitpc_id + ".sock")
            assert len(jitpc.address(jitpc_id).socket) < 100
        """,
    )
    result.assert_outcomes(passed=1)
    inner = Path(seen.read_text())
    assert inner != jitpc_tmpdir and not inner.exists()
    # And this test's own temp dir is back.
    assert os.environ["TMPDIR"] == str(jitpc_tmpdir)
    import tempfile

    assert tempfile.gettempdir() == str(jitpc_tmpdir)


def test_ids_are_fresh(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        IDS = []

        def test_one(jitpc_id):
            IDS.append(jitpc_id)

        def test_two(jitpc_id):
            IDS.append(jitpc_id)
            assert len(set(IDS)) == 2 and all(i.startswith("t") for i in IDS)
        """,
    )
    result.assert_outcomes(passed=2)


def test_client_factory_serves_a_router_and_ends_all_it_made(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from conftest import AFTER, Add, router

        @pytest.mark.anyio
        async def test_it(jitpc_client):
            greeted = []
            client = await jitpc_client(router, on_client=greeted.append, spindown=False)
            assert await client.call(Add(a=1, b=2)) == 3
            server = jitpc_client.server_for(client)
            assert jitpc_client.servers == [server] and server.id == client.server_id
            other = await jitpc_client.connect(client.server_id)
            assert await other.call(Add(a=2, b=2)) == 4 and len(greeted) == 2
            second = await jitpc_client()  # no router: a fresh id, only rpc.*
            assert second.server_id != client.server_id
            assert await second.request("rpc.ping") == {}
            made = [client, other, second, *jitpc_client.servers]
            AFTER.append(lambda: [thing.closed for thing in made] == [True] * 5 or 1 / 0)
        """,
    )
    result.assert_outcomes(passed=1)


def test_sync_client_factory_serves_from_a_thread_and_stops_it(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        from conftest import AFTER, Add, router
        from jitpc.testing import wait_spun_down

        def test_it(jitpc_sync_client):
            client = jitpc_sync_client(router, spindown_timeout=0.05)
            assert client.call(Add(a=1, b=2)) == 3
            server = jitpc_sync_client.server_for(client)
            client.close()  # the last client leaves: the server spins down
            jitpc_sync_client.run(wait_spun_down, server)
            kept = jitpc_sync_client(router, spindown=False, connect={"timeout": 5})
            assert kept.call(Add(a=2, b=2)) == 4
            made = [kept, *jitpc_sync_client.servers]
            AFTER.append(lambda: [thing.closed for thing in made] == [True] * 3 or 1 / 0)
        """,
    )
    result.assert_outcomes(passed=1)
    assert jitpc_threads() == []  # the server thread, and the sync portal, are gone


def test_the_hang_bound_fails_a_hung_test_and_says_where(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import anyio
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.mark.jitpc_timeout(0.1)
        async def test_hangs():
            await anyio.Event().wait()

        @pytest.mark.jitpc_timeout(seconds=0.1)
        async def test_hangs_too():
            await anyio.Event().wait()

        async def test_raises_its_own_timeout_error():
            raise TimeoutError("mine")

        async def test_passes():
            await anyio.lowlevel.checkpoint()
        """,
    )
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*TimeoutError: test_hangs hung: still running after 0.1 s, its jitpc_timeout*",
            "*TimeoutError: test_hangs_too hung: still running after 0.1 s*",
            "*TimeoutError: mine",
        ]
    )
    # The traceback shows where it waited.
    assert "await anyio.Event().wait()" in result.stdout.str()


def test_the_hang_bound_comes_from_the_ini_option_and_a_marker_overrides_it(
    pytester: pytest.Pytester,
) -> None:
    source = """
        import anyio
        import pytest

        pytestmark = pytest.mark.anyio

        async def test_hangs():
            await anyio.Event().wait()

        @pytest.mark.jitpc_timeout(0)
        async def test_unbounded():
            await anyio.lowlevel.checkpoint()
        """
    result = run(pytester, source, "-o", "jitpc_timeout=0.1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_hangs hung: still running after 0.1 s*"])
    result = run(pytester, source, "-o", "jitpc_timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jitpc_timeout ini option must be a number of seconds*"])


def test_a_bad_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.jitpc_timeout(-1)
        async def test_it():
            pass
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*jitpc_timeout must be 0 or more seconds, not -1*"])


def test_spin_down_helper_passes_and_fails(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from jitpc.testing import wait_spun_down

        pytestmark = pytest.mark.anyio

        async def test_spins_down(jitpc_client):
            client = await jitpc_client(spindown_timeout=0.05)
            await client.end()
            await wait_spun_down(jitpc_client.server_for(client))

        async def test_does_not(jitpc_client):
            client = await jitpc_client(spindown=False)
            await client.end()
            await wait_spun_down(jitpc_client.server_for(client), timeout=0.05)
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: <jitpc.Server id=* 0 clients> did not spin down within 0.05 s*"]
    )


def test_nothing_left_passes_a_clean_test_and_catches_leaks(pytester: pytest.Pytester) -> None:
    script = pytester.path / "daemon.py"
    script.write_text(DAEMON)
    result = run(
        pytester,
        f"""
        import asyncio
        import os
        import signal
        import sys
        import jitpc
        import pytest
        from conftest import AFTER

        pytestmark = pytest.mark.usefixtures("jitpc_nothing_left")
        DAEMON = {str(script)!r}

        @pytest.mark.anyio
        async def test_clean(jitpc_client, jitpc_id):
            client = await jitpc_client(spindown=False)
            await client.request("rpc.ping")
            async with await jitpc.listen(jitpc_id, spindown=False):
                pass

        def test_clean_sync(jitpc_sync_client):
            jitpc_sync_client(spindown=False).request("rpc.ping")

        @pytest.mark.anyio
        async def test_leaks_a_server(jitpc_id):
            await jitpc.listen(jitpc_id, spindown=False)  # closed with the loop, after the check

        @pytest.mark.anyio
        async def test_leaks_a_task(jitpc_id):
            asyncio.create_task(jitpc.connect(jitpc_id, connect_timeout=None).open())
            await asyncio.sleep(0)  # (cancelled with the loop, after the check)

        @pytest.mark.anyio
        async def test_leaks_a_daemon(jitpc_id):
            spawn = jitpc.spawn([sys.executable, DAEMON, jitpc_id])
            async with jitpc.connect(jitpc_id, spinup=spawn) as client:
                pid = (await client.request("rpc.status"))["pid"]
            AFTER.append(lambda: os.kill(pid, signal.SIGTERM))  # after the check

        def test_leaves_a_file(jitpc_tmpdir):
            (jitpc_tmpdir / "stray.txt").write_text("")
            AFTER.append((jitpc_tmpdir / "stray.txt").unlink)
        """,
    )
    result.assert_outcomes(passed=6, errors=4)
    text = result.stdout.str()
    for test, what in [
        ("test_leaks_a_server", "socket t*.sock (a server still listens, or did not clean up)"),
        ("test_leaks_a_server", "lock t*.lock, held (a server of that id still runs)"),
        ("test_leaks_a_task", "task <Task pending name=* coro=<Client.open()*"),
        ("test_leaks_a_daemon", "thread 'jitpc reaper *'"),
        ("test_leaks_a_daemon", "lock t*.lock, held (a server of that id still runs)"),
        ("test_leaves_a_file", "file stray.txt"),
    ]:
        section = text.split(f"ERROR at teardown of {test} ")[1]
        section = section.split("ERROR at teardown of")[0].split("short test summary")[0]
        assert "jitpc left behind:" in section, section
        assert fnmatch.filter(section.splitlines(), f"*{what}*"), (what, section)
    assert jitpc_threads() == []


def test_daemon_fixture_waits_until_it_listens_and_stops_it_after(
    pytester: pytest.Pytester,
) -> None:
    script = pytester.path / "daemon.py"
    script.write_text(DAEMON)
    pids = pytester.path / "pids"
    result = run(
        pytester,
        f"""
        import sys
        import jitpc.sync
        import pytest
        from conftest import AFTER

        DAEMON = [sys.executable, {str(script)!r}]

        def note(daemon):
            with open({str(pids)!r}, "a") as file:
                file.write(f"{{daemon.pid}}\\n")

        def test_sync(jitpc_daemon, jitpc_id):
            daemon = jitpc_daemon([*DAEMON, jitpc_id])
            note(daemon)
            assert (daemon.id, daemon.proc.pid, daemon.returncode) == (jitpc_id, daemon.pid, None)
            with jitpc.sync.connect(jitpc_id, connect_timeout=0) as client:
                assert client.request("rpc.status")["pid"] == daemon.pid
            # Teardown stops it gracefully (rpc.shutdown), and reaps it.
            AFTER.append(lambda: check(daemon))

        def check(daemon):
            assert (daemon.returncode, daemon.output()) == (0, "serving\\nstopped\\n")

        @pytest.mark.anyio
        async def test_async(jitpc_daemon):
            daemon = await jitpc_daemon.start([*DAEMON, "other"], id="other")
            note(daemon)
            assert daemon.stop() == 0 and daemon.output().endswith("stopped\\n")
        """,
    )
    result.assert_outcomes(passed=2)
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):  # gone, and reaped
            os.kill(pid, 0)


def test_daemon_fixture_fails_loudly_when_the_daemon_does_not_come_up(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "daemon.py").write_text(DAEMON)
    result = run(
        pytester,
        """
        import sys

        def test_dies(jitpc_daemon, tmp_path):
            (tmp_path / "d.py").write_text("print('boom'); raise SystemExit(3)")
            jitpc_daemon([sys.executable, str(tmp_path / "d.py")])

        def test_closes_its_pipe(jitpc_daemon, tmp_path):
            (tmp_path / "d.py").write_text(
                "import os, threading\\n"
                "os.close(int(os.environ['JITPC_READY_FD'].split(':')[0]))\\n"
                "threading.Event().wait()\\n"
            )
            jitpc_daemon([sys.executable, str(tmp_path / "d.py")])

        def test_stays_silent(jitpc_daemon, tmp_path):
            (tmp_path / "d.py").write_text("import threading; threading.Event().wait()")
            jitpc_daemon([sys.executable, str(tmp_path / "d.py")], timeout=0.2)

        def test_finds_the_id_served(jitpc_daemon, jitpc_sync_client):
            busy = jitpc_sync_client(spindown=False).server_id
            jitpc_daemon([sys.executable, "daemon.py", busy], id=busy)
        """,
    )
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*DaemonFailed: jitpc_daemon 't*' (pid *) exited before it said it listens; "
            "it exited with status 3. The end of its log (*.log):",
            "*    boom",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*closed its readiness pipe (JITPC_READY_FD) without saying it listens; it was killed*"]
    )
    result.stdout.fnmatch_lines(["*did not say it listens within 0.2 s; it was killed*"])
    result.stdout.fnmatch_lines(["*found another process serving 't*'*"])
