"""Shared test setup, on jitpc's own pytest plugin (``jitpc.testing``) and anyio's.

Async tests are marked ``anyio`` (``pytestmark`` per module) and run on a fresh event loop: the
default asyncio loop, or uvloop with ``--loop=uvloop`` (anyio's ``anyio_backend`` fixture, set
here). Every test gets the plugin's short private temp dir as ``TMPDIR`` (``jitpc_tmpdir``),
where its servers put their lock and socket files, and a fresh id from ``jitpc_id``; the
plugin's hang bound (60 s) stands in for a per-test ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodesetup import ensure_node_jitpc
from support import start_peer, stop_peer

pytest_plugins = ["jitpc.testing", "pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=os.environ.get("JITPC_TEST_LOOP", "asyncio"),
        help="event loop the async tests run on",
    )


def loop_factory(config: pytest.Config) -> Callable[[], asyncio.AbstractEventLoop]:
    if config.getoption("--loop") == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


@pytest.fixture(scope="session")
def anyio_backend(pytestconfig: pytest.Config) -> object:
    """The async tests' loop, as anyio's plugin takes it: asyncio's, or uvloop (``--loop``)."""
    if pytestconfig.getoption("--loop") == "uvloop":
        return ("asyncio", {"loop_factory": loop_factory(pytestconfig)})
    return "asyncio"


@pytest.fixture
def jitpc_loop_factory(pytestconfig: pytest.Config) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop of the plugin's own server thread (``jitpc_sync_client``): ``--loop``'s too."""
    return loop_factory(pytestconfig)


@pytest.fixture(autouse=True)
def _isolated(jitpc_tmpdir: Path) -> None:
    """Every test, sync or async, runs in a temp dir of its own (the suite relies on it)."""


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """Node jitpc 2.2.7, the reference peer, installed once (``nodesetup``): skipped without
    node and npm on PATH; an install failure fails the tests."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm must be on PATH for the tests against Node jitpc")
    return ensure_node_jitpc()


@pytest.fixture
def sync_server(jitpc_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """``tests/peers/sync_server.py``: its ``hang`` never returns and records its cancellation
    (test_sync and test_sync_blocking; test_fork has its own)."""
    proc = start_peer("sync_server.py", jitpc_id)
    try:
        yield proc
    finally:
        stop_peer(proc)
