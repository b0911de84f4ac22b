"""Shared test setup: an event loop per async test, a private short TMPDIR, unique ids.

Async tests are plain ``async def test_...`` functions; they run on a fresh event loop (the
default asyncio loop, or uvloop with ``--loop=uvloop``). Every test gets its own short temp dir
as ``TMPDIR``, where its servers put their lock and socket files (Unix socket paths are limited
to about 104-108 bytes, so pytest's long ``tmp_path`` will not do).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodesetup import ensure_node_jitpc


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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    with asyncio.Runner(loop_factory=loop_factory(pyfuncitem.config)) as runner:
        runner.run(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture(autouse=True)
def jitpc_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short, private TMPDIR for this test's lock and socket files."""
    path = tempfile.mkdtemp(prefix="j", dir="/tmp")
    monkeypatch.setenv("TMPDIR", path)
    monkeypatch.delenv("TMP", raising=False)
    monkeypatch.delenv("TEMP", raising=False)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """Node jitpc 2.2.7, the reference peer, installed once (``nodesetup``): skipped without
    node and npm on PATH; an install failure fails the tests."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm must be on PATH for the tests against Node jitpc")
    return ensure_node_jitpc()


@pytest.fixture
def server_id() -> str:
    """A fresh id, unique to this test."""
    return "t" + uuid.uuid4().hex[:12]
