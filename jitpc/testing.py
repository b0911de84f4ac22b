"""jitpc.testing: a pytest plugin for testing jitpc servers and clients, on anyio's plugin.

Enable it with ``pytest -p jitpc.testing``, or ``pytest_plugins = ["jitpc.testing"]`` in your
top-level ``conftest.py`` (it is never loaded on its own); it needs the ``jitpc[testing]`` extra
(pytest and anyio). Async tests are anyio's: mark them ``@pytest.mark.anyio`` (or set
``anyio_mode = auto``). jitpc runs on asyncio, so choose that backend with anyio's
``anyio_backend`` fixture, in a conftest::

    @pytest.fixture
    def anyio_backend():
        return "asyncio"  # or, on uvloop: ("asyncio", {"loop_factory": uvloop.new_event_loop})

What it gives:

* Isolation: :func:`jitpc_tmpdir`, a fresh short private temp dir that holds every jitpc file of
  the test (``TMPDIR`` points there), and :func:`jitpc_id`, a fresh id.
* Factories whose every server, client and process ends after the test, within bounds:
  :func:`jitpc_client` (a router served in-process, and a connected client),
  :func:`jitpc_sync_client` (the same for plain ``def`` tests, with ``jitpc.sync``) and
  :func:`jitpc_daemon` (a daemon process, waited for until it listens, then stopped;
  :class:`DaemonFailed`, quoting its log, if it does not come up). :func:`jitpc_loop_factory`
  chooses the event loop of the plugin's own server thread.
* Checks: :func:`wait_spun_down` (a server spins down within a bound),
  :func:`wait_nothing_left` / :func:`assert_nothing_left` and the :func:`jitpc_nothing_left`
  fixture (no jitpc task, thread, socket or held lock is left).
* A hang bound: every anyio test runs under ``anyio.fail_after``: the ``jitpc_timeout`` ini
  option (seconds, default 60; 0 turns it off), or ``@pytest.mark.jitpc_timeout(seconds)`` for
  one test. A test still running then is cancelled and fails with a ``TimeoutError`` that says
  so, chained to the cancellation's traceback (where the test was waiting).

A complete test module (``test_counter.py``; run ``pytest -p jitpc.testing``)::

    import pytest

    import jitpc
    from jitpc.testing import ClientFactory, wait_spun_down

    pytestmark = pytest.mark.anyio


    class Inc(jitpc.Method[int], method="inc"):
        n: int


    router = jitpc.Router()


    @router.method
    def inc(params: Inc) -> int:
        return params.n + 1


    @pytest.fixture
    def anyio_backend() -> str:
        return "asyncio"


    async def test_inc_then_spin_down(jitpc_client: ClientFactory) -> None:
        client = await jitpc_client(router, spindown_timeout=0.1)
        assert await client.call(Inc(n=1)) == 2
        await client.end()  # the last client leaves: the server spins down
        await wait_spun_down(jitpc_client.server_for(client))


    @pytest.mark.jitpc_timeout(5)
    async def test_status(jitpc_client: ClientFactory) -> None:
        client = await jitpc_client(router, version="1")
        assert (await client.request("rpc.status"))["version"] == "1"
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

import anyio
import pytest

if TYPE_CHECKING:
    # Only for the annotations: importing jitpc (or asyncio) when the plugin loads would cost
    # every pytest run that never uses it.
    import asyncio

    from typing_extensions import Unpack

    import jitpc
    import jitpc.sync
    from jitpc._connect import Spinup
    from jitpc._server import OnClient, OnError, SpindownHook
    from jitpc._steps import OnMismatch

__all__ = [
    "BOUND",
    "DEFAULT_TIMEOUT",
    "END_TIMEOUT",
    "ClientFactory",
    "ConnectOptions",
    "Daemon",
    "DaemonFactory",
    "DaemonFailed",
    "ListenOptions",
    "SyncClientFactory",
    "SyncConnectOptions",
    "assert_nothing_left",
    "jitpc_client",
    "jitpc_daemon",
    "jitpc_id",
    "jitpc_loop_factory",
    "jitpc_nothing_left",
    "jitpc_sync_client",
    "jitpc_tmpdir",
    "wait_nothing_left",
    "wait_spun_down",
]

T = TypeVar("T")

#: The default hang bound of an async test, in seconds (the ``jitpc_timeout`` ini option).
DEFAULT_TIMEOUT = 60.0
#: The bound of each of the plugin's own waits: a listen, a connect, a close, a daemon's start.
BOUND = 30.0
#: Seconds a client ending at teardown may take before it is destroyed.
END_TIMEOUT = 5.0
#: Lines of a daemon's log quoted when it fails.
LOG_LINES = 40

# Files jitpc leaves by design (docs/daemons.md, Lifetimes): not "left behind" unless a lock
# is held.
_REMNANTS = ("*.lock", "*.log", "*.log.1")
# The worker pool's threads live on, idle, by design: not left behind.
_POOL_THREAD = "jitpc worker"


def _new_id() -> str:
    return "t" + uuid.uuid4().hex[:12]


# -- configuration: the hang bound ----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``jitpc_timeout`` ini option (the hang bound)."""
    parser.addini(
        "jitpc_timeout",
        "jitpc.testing: seconds an async (anyio) test may run before it is cancelled and fails "
        f"(default {DEFAULT_TIMEOUT:g}; 0 turns the bound off)",
        default=str(DEFAULT_TIMEOUT),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``jitpc_timeout`` marker, and check the ini option (a usage error if it
    is not a number of seconds, 0 or more)."""
    config.addinivalue_line(
        "markers",
        "jitpc_timeout(seconds): this async test's hang bound, instead of the jitpc_timeout "
        "ini option (0: none)",
    )
    _seconds(config.getini("jitpc_timeout"), "the jitpc_timeout ini option")


def _seconds(value: object, what: str) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(value)
        seconds = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{what} must be a number of seconds, not {value!r}") from None
    if not seconds >= 0:  # (NaN too)
        raise pytest.UsageError(f"{what} must be 0 or more seconds, not {value!r}")
    return seconds


def _hang_bound(item: pytest.Function) -> float:
    marker = item.get_closest_marker("jitpc_timeout")
    if marker is None:
        return _seconds(item.config.getini("jitpc_timeout"), "the jitpc_timeout ini option")
    if len(marker.args) + len(marker.kwargs) != 1 or set(marker.kwargs) - {"seconds"}:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.jitpc_timeout(seconds)")
    value = marker.args[0] if marker.args else marker.kwargs["seconds"]
    return _seconds(value, f"{item.nodeid}: @pytest.mark.jitpc_timeout")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Run each anyio test under its hang bound: anyio's own ``pytest_pyfunc_call`` awaits
    ``pyfuncitem.obj(**fixtures)``, so for that call ``obj`` is the test wrapped in
    ``anyio.fail_after``. (A hypothesis test is left alone: its ``obj`` runs the examples.)"""
    __tracebackhide__ = True
    test = pyfuncitem.obj
    if (
        "anyio_backend" not in pyfuncitem.funcargs
        or not inspect.iscoroutinefunction(test)
        or hasattr(test, "hypothesis")
    ):
        return (yield)
    seconds = _hang_bound(pyfuncitem)
    if not seconds:
        return (yield)
    pyfuncitem.obj = _bounded(test, seconds, pyfuncitem.name)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test


def _bounded(
    test: Callable[..., Awaitable[object]], seconds: float, name: str
) -> Callable[..., Coroutine[Any, Any, object]]:
    @functools.wraps(test)
    async def bounded(**kwargs: Any) -> object:
        __tracebackhide__ = True
        hung: BaseException | None = None
        try:
            with anyio.fail_after(seconds) as scope:
                try:
                    return await test(**kwargs)
                except anyio.get_cancelled_exc_class() as exc:
                    hung = exc  # its traceback shows where the test was waiting
                    raise
        except TimeoutError:
            if not scope.cancelled_caught:
                raise  # the test's own
            raise TimeoutError(
                f"{name} hung: still running after {seconds:g} s, its jitpc_timeout "
                "(@pytest.mark.jitpc_timeout(seconds), or the jitpc_timeout ini option), "
                "so it was cancelled where the traceback above shows"
            ) from hung

    return bounded


# -- isolation --------------------------------------------------------------------------------


@pytest.fixture
def jitpc_tmpdir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A fresh, private, short temp dir, where every jitpc file of the test goes.

    Yields its path, made by ``tempfile.mkdtemp(prefix="jitpc-")``: in ``/tmp`` on POSIX,
    because a Unix socket's path must fit in about 104 bytes (pytest's ``tmp_path`` is too
    long), elsewhere in the default temp dir. For the test, ``TMPDIR``, ``TMP`` and ``TEMP``
    name it and ``tempfile.tempdir`` is it (``tempfile`` caches the temp dir it found first), so
    in-process servers and the processes the test starts put their files there.

    Teardown puts ``TMPDIR``, ``TMP``, ``TEMP`` and ``tempfile.tempdir`` back and removes the
    dir with all it holds.
    """
    tmp_path_factory.getbasetemp()  # pytest's own temp root, found before we move the temp dir
    path = tempfile.mkdtemp(prefix="jitpc-", dir="/tmp" if os.name == "posix" else None)
    try:
        for name in ("TMPDIR", "TMP", "TEMP"):
            monkeypatch.setenv(name, path)
        monkeypatch.setattr(tempfile, "tempdir", path)
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def jitpc_id(jitpc_tmpdir: Path) -> str:
    """A fresh id, unique to this test (``"t"`` and 12 hex digits); its socket and lock files
    go in :func:`jitpc_tmpdir`. Nothing to tear down."""
    return _new_id()


@pytest.fixture
def jitpc_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for the loops the plugin runs itself (the server thread of
    :func:`jitpc_sync_client`): ``None``, asyncio's default loop. Override it in a conftest to
    run them on another loop, e.g. ``return uvloop.new_event_loop``."""
    return None


# -- per-test bookkeeping -----------------------------------------------------------------------

_Factory = TypeVar("_Factory", "ClientFactory", "SyncClientFactory", "DaemonFactory")
_FACTORIES = pytest.StashKey[list["ClientFactory | SyncClientFactory | DaemonFactory"]]()


def _register(request: pytest.FixtureRequest, factory: _Factory) -> _Factory:
    """Note ``factory`` as the test's, for :func:`jitpc_nothing_left` to end first."""
    request.node.stash.setdefault(_FACTORIES, []).append(factory)
    return factory


def _raise_all(what: str, errors: list[BaseException]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup(f"{what}: {len(errors)} errors", errors)


# -- in-process servers -----------------------------------------------------------------------


class ListenOptions(TypedDict, total=False):
    """The keyword arguments of :func:`jitpc.listen` (the id aside), for the factories."""

    on_client: OnClient | None
    spindown: SpindownHook | Literal[False] | None
    spindown_timeout: float
    idle_timeout: float | None
    first_client_timeout: float | None
    on_error: OnError | None
    max_message_bytes: int
    version: str | None


class ConnectOptions(TypedDict, total=False):
    """The keyword arguments of :func:`jitpc.connect` (the id aside)."""

    spinup: Spinup | None
    connect_timeout: float | None
    reconnect: bool
    max_message_bytes: int
    version: str | None
    methods: Iterable[type[jitpc.Method[Any]]]
    on_mismatch: OnMismatch


class SyncConnectOptions(ConnectOptions, total=False):
    """The keyword arguments of :func:`jitpc.sync.connect` (the id aside)."""

    timeout: float | None


async def _serve(router: jitpc.Router | None, listen: ListenOptions) -> tuple[str, jitpc.Server]:
    import jitpc

    server_id = _new_id()
    if listen.get("spindown") is not False and "first_client_timeout" not in listen:
        # The factory's client connects after listen() returns: a short spindown_timeout
        # must not close the server before it has accepted that client.
        listen = listen.copy()
        listen["first_client_timeout"] = BOUND
    server = await jitpc.listen(server_id, **listen)
    if server is None:  # (a fresh id in a private dir: only a bug gets here)
        raise RuntimeError(f"jitpc.testing: another process serves the fresh id {server_id!r}")
    if router is not None:
        server.mount(router)
    return server_id, server


async def _close_server(server: jitpc.Server) -> None:
    await server.close()
    await server.wait_closed()


def _server_for(
    servers: Iterable[jitpc.Server], client: jitpc.Client | jitpc.sync.Client | str
) -> jitpc.Server:
    server_id = client if isinstance(client, str) else client.server_id
    for server in servers:
        if server.id == server_id:
            return server
    raise LookupError(f"jitpc.testing made no server for id {server_id!r}")


class ClientFactory:
    """The :func:`jitpc_client` fixture: ``client = await jitpc_client(router, **listen)``.

    Every call serves on a fresh id, in the test's event loop, and returns a connected client;
    :attr:`servers` and :meth:`server_for` give the servers. All of them end after the test.
    """

    def __init__(self) -> None:
        #: Every server made, in order.
        self.servers: list[jitpc.Server] = []
        #: Every client made, in order.
        self.clients: list[jitpc.Client] = []
        self._closed = False

    async def __call__(
        self,
        router: jitpc.Router | None = None,
        /,
        *,
        connect: ConnectOptions | None = None,
        **listen: Unpack[ListenOptions],
    ) -> jitpc.Client:
        """Serve ``router`` (its typed methods; or none) on a fresh id with
        ``jitpc.listen(id, **listen)``, and return a client connected to it with
        ``jitpc.connect(id, **connect)``.

        ``listen`` is passed as is: jitpc's defaults (a server spins down 5 s after its last
        client leaves) hold unless you say otherwise, e.g. ``spindown=False``; but unless
        ``first_client_timeout`` is given, the server waits up to :data:`BOUND` seconds for
        its first client (the one returned), so that a short ``spindown_timeout`` cannot close
        it before that client is accepted.

        Raises:
            TimeoutError: listening or connecting took over :data:`BOUND` seconds.
            RuntimeError: called after the test's teardown.
            Exception: what ``jitpc.listen`` or ``Client.open`` raised.
        """
        self._check_open()
        with anyio.fail_after(BOUND):
            server_id, server = await _serve(router, listen)
        self.servers.append(server)
        return await self.connect(server_id, **(connect or ConnectOptions()))

    async def connect(self, server_id: str, **options: Unpack[ConnectOptions]) -> jitpc.Client:
        """One more client, of any id (a server of :attr:`servers`, say ``client.server_id``),
        connected with ``jitpc.connect(server_id, **options)``; ended after the test too.

        Raises:
            TimeoutError: connecting took over :data:`BOUND` seconds.
            Exception: what ``Client.open`` raised (``jitpc.ConnectError``...).
        """
        import jitpc

        self._check_open()
        client = jitpc.connect(server_id, **options)
        self.clients.append(client)
        with anyio.fail_after(BOUND):
            await client.open()
        return client

    def server_for(self, client: jitpc.Client | jitpc.sync.Client | str) -> jitpc.Server:
        """The server this factory made for ``client`` (or for that id).

        Raises:
            LookupError: no server of this factory has that id.
        """
        return _server_for(self.servers, client)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("jitpc.testing: this factory's test has been torn down")

    async def aclose(self) -> None:
        """End every client (gracefully, destroyed after :data:`END_TIMEOUT` s), then close
        every server and wait until it has closed. Idempotent; run at teardown.

        Raises:
            TimeoutError: a client or a server did not close within :data:`BOUND` seconds (the
                others are closed all the same).
        """
        self._closed = True
        errors: list[BaseException] = []
        clients, self.clients = self.clients, []
        servers, self.servers = self.servers, []
        for client in reversed(clients):
            try:
                with anyio.fail_after(BOUND):
                    await client.end(timeout=END_TIMEOUT)
            except TimeoutError:
                errors.append(TimeoutError(f"jitpc_client: {client!r} did not end in {BOUND} s"))
        for server in reversed(servers):
            try:
                with anyio.fail_after(BOUND):
                    await _close_server(server)
            except TimeoutError:
                errors.append(TimeoutError(f"jitpc_client: {server!r} did not close in {BOUND} s"))
        _raise_all("jitpc_client teardown", errors)


@pytest.fixture
async def jitpc_client(
    request: pytest.FixtureRequest, jitpc_tmpdir: Path
) -> AsyncIterator[ClientFactory]:
    """A :class:`ClientFactory`, for async (anyio) tests: ``client = await
    jitpc_client(router, **listen_kwargs)`` serves ``router`` on a fresh id in this test's event
    loop and returns a connected :class:`jitpc.Client`; ``jitpc_client.server_for(client)`` (or
    ``jitpc_client.servers``) is its :class:`jitpc.Server`.

    Teardown ends every client it made and closes every server, each within :data:`BOUND`
    seconds (else a ``TimeoutError``).
    """
    factory = _register(request, ClientFactory())
    try:
        yield factory
    finally:
        await factory.aclose()


class _LoopThread:
    """A daemon thread running an event loop of its own, until :meth:`stop`."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        self._loop_factory = loop_factory
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="jitpc.testing loop", daemon=True)
        self.thread.start()
        if not self._ready.wait(BOUND):
            raise TimeoutError(f"jitpc.testing: the server thread did not start in {BOUND} s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        import asyncio

        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._ready.set()
        await self._stop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = BOUND) -> T:
        """Run ``coro`` on the loop; its result, or its exception.

        Raises:
            TimeoutError: it took over ``timeout`` seconds (it is cancelled).
        """
        import asyncio

        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"jitpc.testing: a call on the server thread took over {timeout} s"
            ) from None

    def _set_stop(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def stop(self) -> None:
        """Stop the loop (remaining tasks are cancelled) and wait, bounded, for the thread."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(self._set_stop)
        self.thread.join(BOUND)
        if self.thread.is_alive():
            raise TimeoutError(f"jitpc.testing: the server thread did not stop in {BOUND} s")


class SyncClientFactory:
    """The :func:`jitpc_sync_client` fixture: ``client = jitpc_sync_client(router, **listen)``.

    The servers run on one event loop in a background thread of the factory's own; every call
    serves on a fresh id and returns a connected :class:`jitpc.sync.Client`. All of it ends
    after the test.
    """

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        #: Every server made, in order (they run on :meth:`run`'s loop: touch them from there).
        self.servers: list[jitpc.Server] = []
        #: Every client made, in order.
        self.clients: list[jitpc.sync.Client] = []
        self._loop_factory = loop_factory
        self._thread: _LoopThread | None = None
        self._closed = False

    def __call__(
        self,
        router: jitpc.Router | None = None,
        /,
        *,
        connect: SyncConnectOptions | None = None,
        **listen: Unpack[ListenOptions],
    ) -> jitpc.sync.Client:
        """Serve ``router`` (or no typed method) on a fresh id with ``jitpc.listen(id,
        **listen)`` in the server thread, and return a :class:`jitpc.sync.Client` connected
        to it with ``jitpc.sync.connect(id, **connect)``. Not from a running event loop
        (``jitpc.sync`` refuses it). As for :class:`ClientFactory`, the server waits up to
        :data:`BOUND` seconds for that first client unless ``first_client_timeout`` is given.

        Raises:
            TimeoutError: listening or connecting took over :data:`BOUND` seconds.
            RuntimeError: called after the test's teardown, or from a running event loop.
            Exception: what ``jitpc.listen`` or ``Client.open`` raised.
        """
        import jitpc.sync

        if self._closed:
            raise RuntimeError("jitpc.testing: this factory's test has been torn down")
        if self._thread is None:
            self._thread = _LoopThread(self._loop_factory)
        server_id, server = self._thread.run(_serve(router, listen))
        self.servers.append(server)
        client = jitpc.sync.connect(server_id, **(connect or SyncConnectOptions()))
        self.clients.append(client)
        client.open(timeout=BOUND)
        return client

    def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the servers' loop and return its result, e.g.
        ``jitpc_sync_client.run(wait_spun_down, server)``.

        Raises:
            TimeoutError: it took over :data:`BOUND` seconds (it is cancelled).
            RuntimeError: no server was made yet.
            Exception: what ``fn`` raised.
        """
        if self._thread is None:
            raise RuntimeError("jitpc.testing: jitpc_sync_client has no server thread yet")
        return self._thread.run(fn(*args))

    def server_for(self, client: jitpc.sync.Client | str) -> jitpc.Server:
        """The server this factory made for ``client`` (or for that id).

        Raises:
            LookupError: no server of this factory has that id.
        """
        return _server_for(self.servers, client)

    def close(self) -> None:
        """Close every client (gracefully, destroyed after :data:`END_TIMEOUT` s), close every
        server, stop the server thread. Idempotent; run at teardown; not from a running loop.

        Raises:
            TimeoutError: a server, or the thread, did not stop within :data:`BOUND` seconds.
        """
        self._closed = True
        errors: list[BaseException] = []
        clients, self.clients = self.clients, []
        servers, self.servers = self.servers, []
        for client in reversed(clients):
            client.close(timeout=END_TIMEOUT)
        thread, self._thread = self._thread, None
        if thread is not None:
            for server in reversed(servers):
                try:
                    thread.run(_close_server(server))
                except TimeoutError as exc:
                    errors.append(exc)
            try:
                thread.stop()
            except TimeoutError as exc:
                errors.append(exc)
        _raise_all("jitpc_sync_client teardown", errors)


@pytest.fixture
def jitpc_sync_client(
    request: pytest.FixtureRequest,
    jitpc_tmpdir: Path,
    jitpc_loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> Iterator[SyncClientFactory]:
    """A :class:`SyncClientFactory`, for plain ``def`` tests: ``client =
    jitpc_sync_client(router, **listen_kwargs)`` serves ``router`` on a fresh id, on an event
    loop in a background thread (made by :func:`jitpc_loop_factory`), and returns a connected
    :class:`jitpc.sync.Client`.

    Teardown closes every client, closes every server and stops the thread, each within
    :data:`BOUND` seconds (else a ``TimeoutError``).
    """
    factory = _register(request, SyncClientFactory(jitpc_loop_factory))
    try:
        yield factory
    finally:
        factory.close()


# -- daemon processes -----------------------------------------------------------------------------


class DaemonFailed(AssertionError):
    """A daemon of :func:`jitpc_daemon` did not come up, or did not go away; the message has
    its exit status and the end of its log."""


def _status(code: int | None) -> str:
    if code is None:
        return "still runs"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Daemon:
    """A daemon process started by :func:`jitpc_daemon`, serving :attr:`id`."""

    def __init__(
        self, server_id: str, argv: list[str], proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        #: The id it serves.
        self.id = server_id
        #: Its command line.
        self.argv = argv
        #: The process.
        self.proc = proc
        #: Its stdout and stderr (``<tmpdir>/<id>.log``, where ``jitpc.spawn`` logs too).
        self.log = log
        self._log_start = log.stat().st_size if log.exists() else 0

    def __repr__(self) -> str:
        return f"<jitpc.testing.Daemon id={self.id!r} pid={self.pid} {_status(self.returncode)}>"

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited and was reaped (negative: killed by that
        signal); ``None`` while it runs."""
        return self.proc.poll()

    def output(self) -> str:
        """What it wrote to :attr:`log` since it started."""
        try:
            with self.log.open("rb") as file:
                file.seek(self._log_start)
                return file.read().decode(errors="replace")
        except OSError:
            return ""

    def _failed(self, what: str) -> DaemonFailed:
        tail = self.output().splitlines()[-LOG_LINES:]
        quoted = "\n".join(f"    {line}" for line in tail) or "    (nothing)"
        return DaemonFailed(
            f"jitpc_daemon {self.id!r} (pid {self.pid}, {self.argv!r}) {what}; it "
            f"{_status(self.returncode)}. The end of its log ({self.log}):\n{quoted}"
        )

    def wait(self, timeout: float = BOUND) -> int:
        """Wait until it exits (it spun down, or was told to stop), and return its status.

        Raises:
            DaemonFailed: it still runs after ``timeout`` seconds (it goes on running).
        """
        __tracebackhide__ = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._failed(f"did not exit within {timeout:g} s") from None

    def stop(self, *, grace: float = 5.0) -> int:
        """Stop it, if it still runs, and return its exit status: ``rpc.shutdown`` (its requests
        in flight get ``grace`` seconds), then SIGTERM, then SIGKILL, each given
        :data:`END_TIMEOUT` seconds more. Idempotent.

        Raises:
            DaemonFailed: even SIGKILL did not end it in time.
        """
        if self.proc.poll() is None:
            # Graceful first, if it answers; then the signals.
            steps: list[Callable[[], None] | None] = [None, self.proc.terminate, self.proc.kill]
            if not self._ask_shutdown(grace):
                del steps[0]
            for step in steps:
                if step is not None:
                    with contextlib.suppress(ProcessLookupError):
                        step()
                try:
                    self.proc.wait(END_TIMEOUT + (grace if step is None else 0))
                    break
                except subprocess.TimeoutExpired:
                    pass
        if self.proc.poll() is None:
            raise self._failed("did not stop, even on SIGKILL")
        return self.proc.returncode

    def _ask_shutdown(self, grace: float) -> bool:
        """Send ``rpc.shutdown``, bounded; whether it was answered. From a thread of its own:
        ``jitpc.sync`` refuses a thread that runs an event loop."""
        answered: list[bool] = []

        def ask() -> None:
            import jitpc.sync

            with contextlib.suppress(Exception):
                with jitpc.sync.connect(self.id, connect_timeout=0, timeout=END_TIMEOUT) as c:
                    c.request("rpc.shutdown", {"grace": grace})
                    answered.append(True)

        thread = threading.Thread(target=ask, name="jitpc.testing stop", daemon=True)
        thread.start()
        thread.join(END_TIMEOUT + 1)
        return bool(answered)


class DaemonFactory:
    """The :func:`jitpc_daemon` fixture: ``daemon = jitpc_daemon(argv, id=...)``."""

    def __init__(self, default_id: str) -> None:
        self._default_id = default_id
        #: Every daemon started, in order.
        self.daemons: list[Daemon] = []
        self._lock = threading.Lock()
        self._closed = False

    def __call__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        id: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = BOUND,
    ) -> Daemon:
        """Start ``argv`` and wait until it listens on ``id`` (default: the test's
        :func:`jitpc_id`); returns its :class:`Daemon`.

        The daemon must say when it listens as for ``jitpc.spawn``: a jitpc program's
        ``jitpc.listen()`` does, through ``JITPC_READY_FD``; nothing is polled. Its stdin is the
        null device, its stdout and stderr go to ``<tmpdir>/<id>.log``; its environment is
        ``env`` (default: this process's, whose ``TMPDIR`` is :func:`jitpc_tmpdir`). This call
        blocks: in an async test, ``await jitpc_daemon.start(...)`` waits in a worker thread.

        Raises:
            DaemonFailed: it exited, or closed its readiness pipe, before it said it listens;
                it said another process serves the id; or ``timeout`` seconds passed first (it
                is killed then). The message quotes its exit status and the end of its log.
            OSError: it could not be started.
        """
        __tracebackhide__ = True
        import jitpc
        from jitpc._spawn import pass_pipe
        from jitpc._steps import read_line

        with self._lock:
            if self._closed:
                raise RuntimeError("jitpc.testing: this factory's test has been torn down")
        server_id = self._default_id if id is None else id
        args = [os.fspath(arg) for arg in argv]
        log = Path(jitpc.address(server_id).log)
        child_env = dict(os.environ if env is None else env)
        r, w = os.pipe()
        try:
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=child_env,
                    cwd=cwd,
                    **pass_pipe(child_env, w),
                )
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)  # the daemon has it now: its exit ends our reading
        daemon = Daemon(server_id, args, proc, log)
        with self._lock:
            self.daemons.append(daemon)
        line: list[bytes] = []
        reader = threading.Thread(
            target=lambda: line.append(read_line(r)), name="jitpc.testing readiness", daemon=True
        )
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            daemon.stop(grace=0)  # which ends the pipe, and the reader
            reader.join(BOUND)
            raise daemon._failed(f"did not say it listens within {timeout:g} s")
        said = line[0] if line else b""
        try:
            state = json.loads(said)["state"] if said else None
        except (ValueError, TypeError, KeyError):
            state = "garbled"
        if state != "listening":
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(END_TIMEOUT)  # a daemon that closed the pipe is about to exit
            if state == "busy":
                what = f"found another process serving {server_id!r}"
            elif state is not None:
                what = f"wrote a garbled readiness line {said[:200]!r}"
            elif proc.poll() is not None:
                what = "exited before it said it listens"
            else:
                what = "closed its readiness pipe (JITPC_READY_FD) without saying it listens"
            daemon.stop(grace=0)
            raise daemon._failed(what)
        return daemon

    async def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        id: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = BOUND,
    ) -> Daemon:
        """As calling the factory, waiting in a worker thread so the event loop goes on."""
        call = functools.partial(self, argv, id=id, env=env, cwd=cwd, timeout=timeout)
        return await anyio.to_thread.run_sync(call)

    def close(self) -> None:
        """Stop every daemon still running (:meth:`Daemon.stop`), and reap it. Idempotent;
        run at teardown, which also prints each daemon's status and log (pytest shows it
        when the test fails).

        Raises:
            DaemonFailed: a daemon would not stop.
        """
        with self._lock:
            self._closed = True
            daemons, self.daemons = self.daemons, []
        errors: list[BaseException] = []
        for daemon in reversed(daemons):
            before = daemon.returncode
            try:
                daemon.stop()
            except DaemonFailed as exc:
                errors.append(exc)
            how = "had exited" if before is not None else "was stopped"
            print(
                f"jitpc_daemon {daemon.id!r} (pid {daemon.pid}) {how}: "
                f"{_status(daemon.returncode)}; its log:\n{daemon.output()}"
            )
        _raise_all("jitpc_daemon teardown", errors)


@pytest.fixture
def jitpc_daemon(request: pytest.FixtureRequest, jitpc_id: str) -> Iterator[DaemonFactory]:
    """A :class:`DaemonFactory`: ``daemon = jitpc_daemon([sys.executable, "daemon.py",
    jitpc_id])`` starts a daemon process and returns its :class:`Daemon` (``.id``, ``.pid``,
    ``.proc``, ``.log``) once it listens on ``id`` (default :func:`jitpc_id`); it fails the test
    (:class:`DaemonFailed`, with its log) if the daemon dies or stays silent first.

    Teardown stops every daemon still running (``rpc.shutdown``, then SIGTERM, then SIGKILL,
    each bounded), reaps it and prints its log (shown if the test failed); a daemon that would
    not die raises :class:`DaemonFailed`.
    """
    factory = _register(request, DaemonFactory(jitpc_id))
    try:
        yield factory
    finally:
        factory.close()


# -- checks -------------------------------------------------------------------------------------


async def wait_spun_down(server: jitpc.Server, timeout: float = BOUND) -> None:
    """Wait until ``server`` has closed (spun down, or was closed), for ``timeout`` seconds.

    Raises:
        AssertionError: it is still open after ``timeout`` seconds (it goes on serving).
    """
    __tracebackhide__ = True
    with anyio.move_on_after(timeout):
        await server.wait_closed()
        return
    raise AssertionError(
        f"{server!r} did not spin down within {timeout:g} s: still open, with "
        f"{len(server.clients)} clients"
    )


def _jitpc_tasks() -> list[asyncio.Task[Any]]:
    """The running loop's unfinished tasks whose coroutine is jitpc's own."""
    import asyncio

    import jitpc

    home = os.path.dirname(os.path.abspath(jitpc.__file__)) + os.sep
    mine = asyncio.current_task()
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if task is not mine and code is not None and code.co_filename.startswith(home):
            found.append(task)
    return found


def _jitpc_threads() -> list[threading.Thread]:
    """The live threads of jitpc, and of this plugin, but the worker pool's."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith("jitpc")
        and thread.name != _POOL_THREAD
        and thread is not threading.current_thread()
    ]


def _join(threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


def _left_files(tmpdir: str | os.PathLike[str], ignore: Iterable[str]) -> list[str]:
    from jitpc._daemons import lock_held  # asked without locking: known on Linux only

    patterns = tuple(ignore)
    found = []
    for root, dirs, files in os.walk(tmpdir):
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            shown = os.path.relpath(path, tmpdir)
            if any(fnmatch.fnmatch(shown, pattern) for pattern in patterns):
                continue
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode):
                found.append(f"socket {shown} (a server still listens, or did not clean up)")
            elif stat.S_ISDIR(mode):
                continue  # its files are listed
            elif not any(fnmatch.fnmatch(name, pattern) for pattern in _REMNANTS):
                found.append(f"file {shown}")
            elif name.endswith(".lock") and lock_held(path):
                found.append(f"lock {shown}, held (a server of that id still runs)")
    return found


def _report(tasks: list[Any], threads: list[threading.Thread], files: list[str]) -> None:
    __tracebackhide__ = True
    lines = [f"task {task!r}" for task in tasks]
    lines += [f"thread {thread.name!r}" for thread in threads]
    lines += files
    if lines:
        raise AssertionError("jitpc left behind:\n" + "\n".join(f"  {line}" for line in lines))


def assert_nothing_left(
    tmpdir: str | os.PathLike[str] | None,
    *,
    timeout: float = END_TIMEOUT,
    ignore: Iterable[str] = (),
) -> None:
    """Check that jitpc left nothing behind: no thread of jitpc's still alive (waiting up to
    ``timeout`` seconds for them to end; the worker pool's idle threads live on by design),
    no unfinished jitpc task on the event loop running in this thread (if any: not waited
    for; in async code, prefer :func:`wait_nothing_left`), and nothing in ``tmpdir`` (``None``:
    not checked) but what jitpc leaves by design: no socket, no lock file that a process
    still holds (asked on Linux only), no file but ``*.lock``, ``*.log`` and ``*.log.1``, and
    nothing matching the glob patterns ``ignore`` (paths relative to ``tmpdir``).

    Raises:
        AssertionError: listing what was left.
    """
    __tracebackhide__ = True
    import asyncio

    deadline = time.monotonic() + timeout
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        tasks = []
    else:
        tasks = _jitpc_tasks()
    threads = _join(_jitpc_threads(), deadline)
    files = [] if tmpdir is None else _left_files(tmpdir, ignore)
    _report(tasks, threads, files)


async def wait_nothing_left(
    tmpdir: str | os.PathLike[str] | None,
    *,
    timeout: float = END_TIMEOUT,
    ignore: Iterable[str] = (),
) -> None:
    """:func:`assert_nothing_left`, from async code: first waits, up to ``timeout`` seconds in
    all, for the loop's unfinished jitpc tasks and for jitpc's threads to end.

    Raises:
        AssertionError: listing what was left.
    """
    __tracebackhide__ = True
    import asyncio

    deadline = time.monotonic() + timeout
    tasks = _jitpc_tasks()
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    tasks = [task for task in tasks if not task.done()]
    threads = await anyio.to_thread.run_sync(_join, _jitpc_threads(), deadline)
    files = [] if tmpdir is None else _left_files(tmpdir, ignore)
    _report(tasks, threads, files)


def _factories(
    request: pytest.FixtureRequest,
) -> list[ClientFactory | SyncClientFactory | DaemonFactory]:
    return list(reversed(request.node.stash.get(_FACTORIES, [])))


@pytest.fixture
def jitpc_nothing_left(request: pytest.FixtureRequest, jitpc_tmpdir: Path) -> Iterator[None]:
    """Opt in to a check at teardown that the test left nothing behind.

    Yields nothing. Teardown first ends what the jitpc fixtures made (as their own teardown
    would), then checks, as :func:`wait_nothing_left` does for an async test (in its event
    loop) and :func:`assert_nothing_left` for a plain one, that no jitpc task or thread is
    left and that :func:`jitpc_tmpdir` holds nothing but jitpc's by-design files. Request it
    before your own fixtures that serve (``@pytest.mark.usefixtures("jitpc_nothing_left")``
    does), so that they are torn down before it checks; for a whole suite, request it from an
    autouse fixture.

    Raises (at teardown):
        AssertionError: listing what was left.
    """
    __tracebackhide__ = True
    if "anyio_backend" in request.fixturenames:
        request.getfixturevalue("_jitpc_nothing_left_async")  # checks in the test's loop
        yield
        return
    yield
    for factory in _factories(request):
        if not isinstance(factory, ClientFactory):  # (only an async test can have those)
            factory.close()
    assert_nothing_left(jitpc_tmpdir)


@pytest.fixture
async def _jitpc_nothing_left_async(
    request: pytest.FixtureRequest, jitpc_tmpdir: Path
) -> AsyncIterator[None]:
    __tracebackhide__ = True
    yield
    for factory in _factories(request):
        if isinstance(factory, ClientFactory):
            await factory.aclose()
        else:  # jitpc.sync refuses to block an event loop's thread: from a worker thread
            await anyio.to_thread.run_sync(factory.close)
    await wait_nothing_left(jitpc_tmpdir)
