"""Echo round-trip benchmark: jitpc against a hand-written asyncio baseline and Node jitpc.

Run from the repository root::

    .venv/bin/python bench/echo.py            # the full run, about 1.5 minutes
    .venv/bin/python bench/echo.py --quick    # a smoke run, about 20 seconds
    .venv/bin/python bench/echo.py --json bench/results.json

Every implementation is a pair of processes, a server and a client, talking over a Unix socket in
a private directory (``TMPDIR`` for the children). The driver (this process, with no arguments)
starts every pair up front, then runs each workload on each pair in turn, rotating the order, for
a few repetitions; each measurement is preceded by an uncounted warm-up on the same connection.
The client process times its own requests and reports a summary line; the driver takes the
median over the repetitions and prints a table. See bench/README.md.

The same file is also the Python child: ``echo.py _server KIND LOOP ID`` and
``echo.py _client KIND LOOP ID``. A child exits when its standard input closes, so no child
outlives the driver, even one killed without a chance to clean up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic_core import from_json, to_json

ROOT = Path(__file__).resolve().parent.parent
BENCH_FILE = Path(__file__).resolve()
NODE_SCRIPT = BENCH_FILE.parent / "node_echo.js"
NODE_PREFIX = ROOT / ".node"
NODE_JITPC_VERSION = "2.2.7"

#: The hand-written baseline raises StreamReader's 64 KiB line limit, as its author would have to
#: for the 1 MiB workload; jitpc's own default limit is the same 16 MiB.
BASELINE_LINE_LIMIT = 16 * 1024 * 1024

#: How long a client waits for its first echo before giving up on the pair.
PROBE_SECONDS = 10.0
#: A measurement that has not reported this long after it should have ended is a hang.
HANG_SECONDS = 20.0

Call = Callable[[Any], Awaitable[Any]]
Lang = Literal["python", "node"]
LoopName = Literal["asyncio", "uvloop"]


# -- workloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One way of driving echo requests over one connection.

    It travels to the client process as JSON (:meth:`spec`), so a Node client runs exactly the
    same workload. To add one, add an entry to :data:`WORKLOADS`; a new kind of params also needs
    a branch in :func:`make_params` and in ``makeParams`` of node_echo.js.
    """

    key: str
    label: str
    #: Requests kept outstanding on the connection: 1 is await-each-before-the-next.
    concurrency: int
    #: 0: params ``{"key": "my-counter", "n": <int>}``; else ``{"key": ..., "blob": "x" * this}``.
    blob_bytes: int = 0
    #: With ``--requests N``, this workload sends ``max(10, round(N * request_scale))``.
    request_scale: float = 1.0

    def spec(self) -> dict[str, Any]:
        return {"name": self.key, "concurrency": self.concurrency, "blob_bytes": self.blob_bytes}


MIB = 1024 * 1024

WORKLOADS: tuple[Workload, ...] = (
    Workload("seq", "sequential", concurrency=1),
    Workload("inflight64", "64 in flight", concurrency=64),
    Workload("seq-1mib", "1 MiB sequential", concurrency=1, blob_bytes=MIB, request_scale=0.01),
)


def plain(result: Any) -> Any:
    """An echo as a dict: typed calls return pydantic models."""
    return result if type(result) is dict else result.model_dump()


def field_of(result: Any, name: str) -> Any:
    """One field of an echo, read the cheapest way (a model's attribute, a dict's item), as
    node_echo.js reads ``r.n``: the check must not cost the typed rows a model_dump each."""
    return result[name] if type(result) is dict else getattr(result, name)


def make_params(spec: dict[str, Any]) -> tuple[Callable[[int], Any], Callable[[Any, int], bool]]:
    """The params of request ``n``, and the check of its echo, for a workload spec."""
    blob_bytes: int = spec["blob_bytes"]
    if blob_bytes > 0:
        blob = "x" * blob_bytes

        def blob_params(n: int) -> Any:
            return {"key": "my-counter", "blob": blob}

        def blob_ok(result: Any, n: int) -> bool:
            return len(field_of(result, "blob")) == blob_bytes

        return blob_params, blob_ok

    def small_params(n: int) -> Any:
        return {"key": "my-counter", "n": n}

    def small_ok(result: Any, n: int) -> bool:
        return bool(field_of(result, "n") == n)

    return small_params, small_ok


async def measure(
    call: Call, spec: dict[str, Any], seconds: float | None, requests: int | None
) -> tuple[list[int], float]:
    """Run a workload: ``spec["concurrency"]`` workers share one connection until ``seconds``
    have passed (or ``requests`` were sent). Returns the latencies (ns) and the elapsed seconds
    from the start to the last response. Mirrors ``measure`` in node_echo.js."""
    make, check = make_params(spec)
    perf = time.perf_counter_ns
    lat: list[int] = []
    append = lat.append
    limit = requests if requests is not None else math.inf
    start = perf()
    deadline = start + int(seconds * 1e9) if seconds is not None else math.inf
    last = start
    sent = 0

    async def worker() -> None:
        nonlocal sent, last
        now = start
        while sent < limit and now < deadline:
            n = sent
            sent = n + 1
            params = make(n)
            t0 = perf()
            result = await call(params)
            now = perf()
            append(now - t0)
            if not check(result, n):
                raise RuntimeError(f"wrong echo for request {n}: {str(result)[:200]}")
        if now > last:
            last = now

    concurrency: int = spec["concurrency"]
    if concurrency == 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, (last - start) / 1e9


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (as node_echo.js computes it)."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


# -- the Python children ---------------------------------------------------------------------------


def socket_path(server_id: str) -> str:
    """Where the baseline serves: the same ``$TMPDIR/<id>.sock`` that jitpc uses."""
    return os.path.join(os.environ["TMPDIR"], server_id + ".sock")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def until_stdin_closes() -> None:
    reader = await stdin_reader()
    while await reader.read(4096):
        pass


class EchoClient:
    """A client of one echo server, as the workloads drive it."""

    async def open(self, server_id: str) -> None:
        raise NotImplementedError

    def session(self, concurrency: int) -> contextlib.AbstractAsyncContextManager[Call]:
        """The call to use for a run of a workload with this concurrency."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class JitpcEcho(EchoClient):
    async def open(self, server_id: str) -> None:
        import jitpc

        self.client = jitpc.connect(server_id)
        await self.client.open()
        self.call: Call = functools.partial(self.client.request, "echo")

    @contextlib.asynccontextmanager
    async def session(self, concurrency: int) -> AsyncIterator[Call]:
        yield self.call

    async def close(self) -> None:
        await self.client.end()


class TypedEcho(JitpcEcho):
    """jitpc with pydantic models validated at both ends (bench/typed_echo.py)."""

    async def open(self, server_id: str) -> None:
        await super().open(server_id)
        from typed_echo import call

        self.call = functools.partial(call, self.client)


class BaselineEcho(EchoClient):
    """What a user might write by hand with asyncio streams and the json module.

    Sequential: write, drain, readline. In flight: a reader task resolves futures by id.
    """

    async def open(self, server_id: str) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(
            socket_path(server_id), limit=BASELINE_LINE_LIMIT
        )
        self.last_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}

    async def call_direct(self, params: Any) -> Any:
        self.last_id += 1
        request = {"id": self.last_id, "method": "echo", "params": params}
        self.writer.write(json.dumps(request).encode() + b"\n")
        await self.writer.drain()
        return json.loads(await self.reader.readline())["result"]

    async def call_concurrent(self, params: Any) -> Any:
        self.last_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.last_id] = future
        request = {"id": self.last_id, "method": "echo", "params": params}
        self.writer.write(json.dumps(request).encode() + b"\n")
        await self.writer.drain()
        return await future

    async def read_responses(self) -> None:
        while line := await self.reader.readline():
            response = json.loads(line)
            self.pending.pop(response["id"]).set_result(response["result"])

    @contextlib.asynccontextmanager
    async def session(self, concurrency: int) -> AsyncIterator[Call]:
        if concurrency == 1:
            yield self.call_direct
            return
        reader = asyncio.create_task(self.read_responses())
        try:
            yield self.call_concurrent
        finally:
            reader.cancel()  # safe: it is waiting for a line, with no response outstanding
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _fast_json() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """The fastest JSON encoder and decoder at hand: orjson's (jitpc[fast] installs it), or
    pydantic_core's. orjson decodes short lines faster, pydantic_core long ones."""
    try:
        import orjson
    except ImportError:
        return to_json, from_json
    return orjson.dumps, orjson.loads


class _Lines(asyncio.Protocol):
    """What the raw rows' protocols share: the transport they write to."""

    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


class _RawLines(_Lines):
    """Newline framing over an asyncio Protocol, orjson for JSON: the fastest plain Python we
    know to write by hand (issue 5's "asyncio Protocol + uvloop + orjson" row)."""

    def __init__(self, on_message: Callable[[Any], None]) -> None:
        self.on_message = on_message
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        for line in lines:
            self.on_message(_loads(line))


#: The raw rows' JSON, as :func:`_fast_json` picks it; set by child_main once it has hidden
#: orjson from the default loop's rows.
_dumps: Callable[[Any], bytes] = to_json
_loads: Callable[[bytes], Any] = from_json


class RawEcho(EchoClient):
    proto: _Lines

    async def open(self, server_id: str) -> None:
        loop = asyncio.get_running_loop()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.last_id = 0
        _, self.proto = await loop.create_unix_connection(self.protocol, socket_path(server_id))

    def protocol(self) -> _Lines:
        return _RawLines(self.on_response)

    def on_response(self, response: Any) -> None:
        self.pending.pop(response["id"]).set_result(response["result"])

    async def call(self, params: Any) -> Any:
        self.last_id = id_ = self.last_id + 1
        future = asyncio.get_running_loop().create_future()
        self.pending[id_] = future
        assert self.proto.transport is not None
        self.proto.transport.write(_dumps({"id": id_, "method": "echo", "params": params}) + b"\n")
        return await future

    @contextlib.asynccontextmanager
    async def session(self, concurrency: int) -> AsyncIterator[Call]:
        yield self.call

    async def close(self) -> None:
        assert self.proto.transport is not None
        self.proto.transport.close()


def raw_server_protocol() -> asyncio.Protocol:
    proto: _RawLines

    def on_request(request: Any) -> None:
        assert proto.transport is not None
        proto.transport.write(_dumps({"id": request["id"], "result": request["params"]}) + b"\n")

    proto = _RawLines(on_request)
    return proto


#: Lines the typed floor's client queues in one loop turn before it writes them (the issue's
#: floor batched 4 to 16).
FLOOR_WRITE_BATCH = 16


def _floor_models() -> Any:
    """typed_echo's models and the floor's envelopes: each message is read by one
    ``validate_json`` of its whole line, straight from bytes. The server's request is a union
    discriminated on ``method``; the client reads each response with its request type's
    envelope, checked by id."""
    from typing import Annotated

    import typed_echo
    from pydantic import BaseModel, Field, TypeAdapter

    class SmallRequest(BaseModel):
        id: int
        method: Literal["echo"]
        params: typed_echo.EchoSmall

    class BlobRequest(BaseModel):
        id: int
        method: Literal["echo-blob"]
        params: typed_echo.EchoBlob

    class SmallResponse(BaseModel):
        id: int
        result: typed_echo.Small

    class BlobResponse(BaseModel):
        id: int
        result: typed_echo.Blob

    request: Any = Annotated[SmallRequest | BlobRequest, Field(discriminator="method")]
    return types.SimpleNamespace(
        EchoSmall=typed_echo.EchoSmall,
        EchoBlob=typed_echo.EchoBlob,
        Small=typed_echo.Small,
        Blob=typed_echo.Blob,
        read_request=TypeAdapter(request).validate_json,
        read_small=SmallResponse.__pydantic_validator__.validate_json,
        read_blob=BlobResponse.__pydantic_validator__.validate_json,
    )


def _small_json(model: Any) -> bytes:
    """A small model as JSON: its own serializer, spliced into a byte template by the caller."""
    return model.__pydantic_serializer__.to_json(model)  # type: ignore[no-any-return]


def _big_json(model: Any) -> bytes:
    """A large model as JSON: orjson of its JSON-mode dict when orjson is at hand (as
    jitpc[fast] installs it; faster on a 1 MiB string), else its own serializer."""
    ser = model.__pydantic_serializer__
    if _dumps is to_json:
        return ser.to_json(model)  # type: ignore[no-any-return]
    return _dumps(ser.to_python(model, mode="json"))


class _FloorLines(_Lines):
    """Linear newline framing: a partial line's reads are kept as a list and joined once its
    newline arrives (a 1 MiB line comes in many reads), and every line of a read is handed over
    at once, so that an answer to each can share one write."""

    def __init__(self, on_lines: Callable[[list[bytes]], None]) -> None:
        self.on_lines = on_lines
        self.parts: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        parts = self.parts
        if b"\n" not in data:
            parts.append(data)
            return
        if parts:
            parts.append(data)
            data = b"".join(parts)
            parts.clear()
        lines = data.split(b"\n")
        rest = lines.pop()  # what follows the last newline: the start of the next line
        if rest:
            parts.append(rest)
        self.on_lines(lines)


class RawTypedEcho(RawEcho):
    """The typed floor's client, built the way issue 13's floor was, with no framework: build
    the params model, splice its JSON into a byte template, batch the writes of one loop turn
    (the first goes out at once, so a sequential caller waits for nothing), and read each
    answer with one ``validate_json`` of its request type's whole envelope, checked by id.

    Each workload keeps one request type in flight, so the envelope of the last request sent
    reads every answer; an answer of another type would fail validation, not pass silently.
    """

    async def open(self, server_id: str) -> None:
        self.models = _floor_models()
        self.loop = asyncio.get_running_loop()
        self.read: Callable[[bytes], Any] = self.models.read_small
        self.queue: list[bytes] = []
        self.flush_due = False
        self.wrote_early = False
        await super().open(server_id)

    def protocol(self) -> _Lines:
        return _FloorLines(self.on_lines)

    async def call(self, params: Any) -> Any:
        m = self.models
        if "blob" in params:
            model = m.EchoBlob(key=params["key"], blob=params["blob"])
            self.read = m.read_blob
            head = b'{"jsonrpc":"2.0","id":%d,"method":"echo-blob","params":'
            body = _big_json(model)
        else:
            model = m.EchoSmall(key=params["key"], n=params["n"])
            self.read = m.read_small
            head = b'{"jsonrpc":"2.0","id":%d,"method":"echo","params":'
            body = _small_json(model)
        self.last_id = id_ = self.last_id + 1
        future = self.loop.create_future()
        self.pending[id_] = future
        line = b"".join((head % id_, body, b"}\n"))
        if self.wrote_early or self.flush_due:  # behind what is queued, in order
            self.queue.append(line)
            if len(self.queue) >= FLOOR_WRITE_BATCH:
                self.flush()
            elif not self.flush_due:
                self.flush_due = True
                self.loop.call_soon(self.flush_soon)
        else:
            assert self.proto.transport is not None
            self.proto.transport.write(line)
            self.wrote_early = True
        return await future

    def flush_soon(self) -> None:
        self.flush_due = False
        self.wrote_early = False
        self.flush()

    def flush(self) -> None:
        if self.queue:
            assert self.proto.transport is not None
            self.proto.transport.write(b"".join(self.queue))
            self.queue.clear()

    def on_lines(self, lines: list[bytes]) -> None:
        self.wrote_early = False  # the next request waits for nothing written before it
        read, pending = self.read, self.pending
        for line in lines:
            response = read(line)
            pending.pop(response.id).set_result(response.result)


def raw_typed_server_protocol() -> asyncio.Protocol:
    """The typed floor's server: each request read by one ``validate_json`` of its whole line
    (a union discriminated on ``method``), the result model built as typed_echo's handlers do,
    its JSON spliced into a byte template, and the answers to one read in one write."""
    m = _floor_models()
    read, small, blob = m.read_request, m.Small, m.Blob
    proto: _FloorLines

    def on_lines(lines: list[bytes]) -> None:
        out: list[bytes] = []
        for line in lines:
            request = read(line)
            params = request.params
            if request.method == "echo":
                body = _small_json(small(key=params.key, n=params.n))
            else:
                body = _big_json(blob(key=params.key, blob=params.blob))
            out += (b'{"jsonrpc":"2.0","id":%d,"result":' % request.id, body, b"}\n")
        assert proto.transport is not None
        proto.transport.write(b"".join(out))

    proto = _FloorLines(on_lines)
    return proto


CLIENT_KINDS: dict[str, type[EchoClient]] = {
    "jitpc": JitpcEcho,
    "typed": TypedEcho,
    "baseline": BaselineEcho,
    "raw": RawEcho,
    "raw-typed": RawTypedEcho,
}


async def baseline_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            request = json.loads(line)
            response = {"id": request["id"], "result": request.get("params")}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def child_server(kind: str, server_id: str) -> int:
    if kind in ("jitpc", "typed"):
        import jitpc

        def on_client(client: jitpc.Client) -> None:
            client.respond("echo", lambda params: params)

        server = await jitpc.listen(
            server_id, on_client=on_client if kind == "jitpc" else None, spindown=False
        )
        if server is None:
            emit({"error": f"id {server_id} is already served"})
            return 3
        if kind == "typed":
            from typed_echo import register

            register(server)
        emit({"ready": True})
        await until_stdin_closes()
        await server.close()
    elif kind in ("raw", "raw-typed"):
        factory = raw_server_protocol if kind == "raw" else raw_typed_server_protocol
        raw = await asyncio.get_running_loop().create_unix_server(
            factory, socket_path(server_id), backlog=511
        )
        emit({"ready": True})
        await until_stdin_closes()
        raw.close()
    elif kind == "baseline":
        srv = await asyncio.start_unix_server(
            baseline_handle, socket_path(server_id), limit=BASELINE_LINE_LIMIT
        )
        emit({"ready": True})
        await until_stdin_closes()
        srv.close()
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    return 0


async def child_client(kind: str, server_id: str) -> int:
    echo = CLIENT_KINDS[kind]()
    await echo.open(server_id)
    # One round trip before reporting ready, so that a pair that cannot talk fails at start-up.
    async with echo.session(1) as call:
        try:
            probe = await asyncio.wait_for(call({"key": "my-counter", "n": 0}), PROBE_SECONDS)
        except TimeoutError:
            emit({"error": f"no echo within {PROBE_SECONDS:g} s of connecting"})
            return 4
    if plain(probe) != {"key": "my-counter", "n": 0}:
        emit({"error": f"wrong echo {probe!r}"})
        return 4
    emit({"ready": True})
    commands = await stdin_reader()
    while line := await commands.readline():
        cmd = json.loads(line)
        spec = cmd["workload"]
        async with echo.session(spec["concurrency"]) as call:
            cpu = time.process_time()
            lat, elapsed = await measure(call, spec, cmd["seconds"], cmd["requests"])
            cpu = time.process_time() - cpu
        lat.sort()
        p50 = percentile(lat, 0.5)
        p99 = percentile(lat, 0.99)
        emit(
            {
                "count": len(lat),
                "elapsed_s": elapsed,
                "p50_us": None if p50 is None else p50 / 1e3,
                "p99_us": None if p99 is None else p99 / 1e3,
                "cpu_s": cpu,
            }
        )
    await echo.close()
    return 0


def child_main(argv: list[str]) -> int:
    role, kind, loop_name, server_id = argv
    main = child_server if role == "_server" else child_client
    if loop_name == "asyncio":
        # The default loop's rows measure jitpc with no optional dependency (issue 5's second
        # goal): jitpc imports orjson only when it can, and here it cannot.
        sys.modules["orjson"] = None  # type: ignore[assignment]
    global _dumps, _loads
    _dumps, _loads = _fast_json()
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main(kind, server_id))


# -- implementations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    lang: Lang
    kind: str = "jitpc"
    loop: LoopName = "asyncio"

    def command(self, role: Literal["server", "client"], server_id: str) -> list[str]:
        if self.lang == "node":
            return ["node", str(NODE_SCRIPT), role, server_id]
        return [sys.executable, str(BENCH_FILE), "_" + role, self.kind, self.loop, server_id]


@dataclass(frozen=True)
class Impl:
    """A client/server pair to measure. To add one, add an entry to :data:`IMPLS`."""

    key: str
    label: str
    server: Endpoint
    client: Endpoint

    @property
    def needs_node(self) -> bool:
        return "node" in (self.server.lang, self.client.lang)

    @property
    def needs_uvloop(self) -> bool:
        return "uvloop" in (self.server.loop, self.client.loop)


PY = Endpoint("python")
PY_UV = Endpoint("python", loop="uvloop")
TYPED = Endpoint("python", kind="typed")
TYPED_UV = Endpoint("python", kind="typed", loop="uvloop")
BASE = Endpoint("python", kind="baseline")
BASE_UV = Endpoint("python", kind="baseline", loop="uvloop")
RAW_UV = Endpoint("python", kind="raw", loop="uvloop")
RAW_TYPED = Endpoint("python", kind="raw-typed")
RAW_TYPED_UV = Endpoint("python", kind="raw-typed", loop="uvloop")
NODE = Endpoint("node")

#: The ratio columns compare each row to these rows on the same workload.
BASELINE_KEY = "baseline"
NODE_KEY = "node"

IMPLS: tuple[Impl, ...] = (
    Impl("jitpc", "jitpc (asyncio)", PY, PY),
    Impl("jitpc-uvloop", "jitpc (uvloop)", PY_UV, PY_UV),
    Impl("typed", "typed jitpc (asyncio)", TYPED, TYPED),
    Impl("typed-uvloop", "typed jitpc (uvloop)", TYPED_UV, TYPED_UV),
    Impl(BASELINE_KEY, "BASELINE asyncio+json", BASE, BASE),
    Impl("baseline-uvloop", "baseline uvloop+json", BASE_UV, BASE_UV),
    Impl("raw-uvloop", "raw Protocol+uvloop", RAW_UV, RAW_UV),
    Impl("raw-typed", "raw + pydantic (asyncio)", RAW_TYPED, RAW_TYPED),
    Impl("raw-typed-uvloop", "raw + pydantic (uvloop)", RAW_TYPED_UV, RAW_TYPED_UV),
    Impl(NODE_KEY, "Node jitpc 2.2.7", NODE, NODE),
    Impl("py-to-node", "py client -> node srv", NODE, PY),
    Impl("node-to-py", "node client -> py srv", PY, NODE),
)


# -- the driver ------------------------------------------------------------------------------------


class ChildError(RuntimeError):
    pass


@dataclass
class Pair:
    """A running server process and its connected client process."""

    impl: Impl
    server: asyncio.subprocess.Process
    client: asyncio.subprocess.Process
    failed: str | None = None


@dataclass
class Row:
    impl: Impl
    workload: Workload
    reps: list[dict[str, Any]] = field(default_factory=list)

    def req_s(self) -> list[float]:
        return [r["count"] / r["elapsed_s"] for r in self.reps if r["elapsed_s"] > 0]

    def summary(self) -> dict[str, Any]:
        rates = self.req_s()
        rate = statistics.median(rates) if rates else None
        p50 = [r["p50_us"] for r in self.reps if r["p50_us"] is not None]
        p99 = [r["p99_us"] for r in self.reps if r["p99_us"] is not None]
        cpu = [
            1e6 * (r["cpu_s"] + r["server_cpu_s"]) / r["count"]
            for r in self.reps
            if r.get("server_cpu_s") is not None and r["count"]
        ]
        return {
            "impl": self.impl.key,
            "label": self.impl.label,
            "workload": self.workload.key,
            "workload_label": self.workload.label,
            "req_s": rate,
            "mib_s": rate * self.workload.blob_bytes / MIB
            if rate is not None and self.workload.blob_bytes
            else None,
            "p50_us": statistics.median(p50) if p50 else None,
            "p99_us": statistics.median(p99) if p99 else None,
            "cpu_us_per_req": statistics.median(cpu) if cpu else None,
            "spread_pct": 100 * (max(rates) - min(rates)) / rate
            if rate and len(rates) > 1
            else None,
            "reps": self.reps,
        }


class Driver:
    def __init__(self, args: argparse.Namespace, impls: list[Impl], workloads: list[Workload]):
        self.args = args
        self.impls = impls
        self.workloads = workloads
        self.procs: list[asyncio.subprocess.Process] = []
        self.notes: list[str] = []
        self.tmp = ""
        self.env: dict[str, str] = {}

    async def spawn(self, cmd: list[str], what: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.args.prefix,
            *cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            cwd=str(ROOT),
            # Out of the terminal's process group: Ctrl-C reaches only the driver, which kills
            # the children itself. If the driver dies, the children see their stdin close.
            start_new_session=True,
        )
        self.procs.append(proc)
        await self.expect_line(proc, what, 60.0)
        return proc

    async def expect_line(
        self, proc: asyncio.subprocess.Process, what: str, limit_s: float
    ) -> dict[str, Any]:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), limit_s)
        except TimeoutError:
            raise ChildError(f"{what}: no answer within {limit_s:.0f} s") from None
        if not line:
            code = await proc.wait()
            raise ChildError(f"{what}: exited with status {code} (its stderr is above)")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ChildError(f"{what}: {reply['error']}")
        return reply

    async def start_pair(self, impl: Impl) -> Pair:
        server_id = f"echo-{impl.key}"
        server = await self.spawn(impl.server.command("server", server_id), f"{impl.key} server")
        client = await self.spawn(impl.client.command("client", server_id), f"{impl.key} client")
        return Pair(impl, server, client)

    async def run_one(self, pair: Pair, workload: Workload) -> dict[str, Any]:
        args = self.args
        requests = None
        if args.requests is not None:
            requests = max(10, round(args.requests * workload.request_scale))
        what = f"{pair.impl.key} {workload.key}"
        if args.warmup > 0:
            await self.command(pair, workload, args.warmup, None, what + " warm-up")
        server_cpu = process_cpu_seconds(pair.server.pid)
        seconds = None if requests is not None else args.seconds
        result = await self.command(pair, workload, seconds, requests, what)
        if server_cpu is not None:
            after = process_cpu_seconds(pair.server.pid)
            result["server_cpu_s"] = None if after is None else after - server_cpu
        return result

    async def command(
        self, pair: Pair, workload: Workload, seconds: float | None, requests: int | None, what: str
    ) -> dict[str, Any]:
        """Have the client run a workload once; its summary of the run."""
        cmd = {"workload": workload.spec(), "seconds": seconds, "requests": requests}
        assert pair.client.stdin is not None
        pair.client.stdin.write(json.dumps(cmd).encode() + b"\n")
        await pair.client.stdin.drain()
        budget = HANG_SECONDS + 2 * (seconds or 0.0) + 0.05 * (requests or 0)
        return await self.expect_line(pair.client, what, budget)

    async def run(self) -> list[Row]:
        self.tmp = tempfile.mkdtemp(prefix="jb", dir="/tmp")
        self.env = dict(os.environ)
        self.env["TMPDIR"] = self.tmp
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        self.env["NODE_PATH"] = str(NODE_PREFIX / "node_modules")
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM cancels the run like Ctrl-C does, so that the children are still cleaned up.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await self._run()
        finally:
            await self.cleanup()

    async def _run(self) -> list[Row]:
        pairs: list[Pair] = []
        started = await asyncio.gather(
            *(self.start_pair(impl) for impl in self.impls), return_exceptions=True
        )
        for impl, outcome in zip(self.impls, started, strict=True):
            if isinstance(outcome, Pair):
                pairs.append(outcome)
            elif isinstance(outcome, Exception):
                self.notes.append(f"{impl.key}: skipped, it did not start: {outcome}")
            else:
                raise outcome
        rows = {(p.impl.key, w.key): Row(p.impl, w) for p in pairs for w in self.workloads}
        total = self.args.reps * len(self.workloads) * len(pairs)
        done = 0
        for rep in range(self.args.reps):
            for workload in self.workloads:
                # Rotate the order each repetition, so that no implementation always runs first.
                shift = rep % len(pairs) if pairs else 0
                for pair in pairs[shift:] + pairs[:shift]:
                    done += 1
                    if pair.failed:
                        continue
                    try:
                        result = await self.run_one(pair, workload)
                    except ChildError as exc:
                        pair.failed = str(exc)
                        self.notes.append(f"{pair.impl.key}: stopped after an error: {exc}")
                        continue
                    result["rep"] = rep
                    rows[pair.impl.key, workload.key].reps.append(result)
                    rate = result["count"] / result["elapsed_s"] if result["elapsed_s"] else 0
                    progress(
                        f"[{done}/{total}] rep {rep + 1} {workload.key:<11} "
                        f"{pair.impl.key:<16} {rate:>10,.0f} req/s"
                    )
        return [rows[p.impl.key, w.key] for w in self.workloads for p in pairs]

    async def cleanup(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10.0)
        shutil.rmtree(self.tmp, ignore_errors=True)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def node_jitpc() -> tuple[str | None, str]:
    """(the Node jitpc version to use, or None, and a note on why not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return None, "node is not on PATH"
    package = NODE_PREFIX / "node_modules" / "jitpc" / "package.json"
    if not package.exists():
        if npm is None:
            return None, "Node jitpc is not installed and npm is not on PATH"
        progress(f"installing jitpc@{NODE_JITPC_VERSION} into {NODE_PREFIX} ...")
        cmd = [npm, "install", "--prefix", str(NODE_PREFIX), f"jitpc@{NODE_JITPC_VERSION}"]
        try:
            subprocess.run(
                [*cmd, "--no-audit", "--no-fund"],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"npm install of jitpc@{NODE_JITPC_VERSION} failed: {exc}"
    try:
        version: str = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError) as exc:
        return None, f"cannot read {package}: {exc}"
    return version, ""


def command_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip() or None


def uvloop_version() -> str | None:
    try:
        import uvloop
    except ImportError:
        return None
    return str(getattr(uvloop, "__version__", "?"))


def orjson_version() -> str | None:
    """orjson's version: jitpc writes JSON with it when it is installed (jitpc[fast])."""
    try:
        import orjson
    except ImportError:
        return None
    return str(getattr(orjson, "__version__", "?"))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or not ref else f"{value / ref:.2f}x"


def print_table(summaries: list[dict[str, Any]]) -> None:
    by_key = {(s["impl"], s["workload"]): s for s in summaries}
    has_node = any(s["impl"] == NODE_KEY for s in summaries)
    headers = ["implementation", "workload", "req/s", "MiB/s", "p50 µs", "p99 µs", "CPU µs"]
    headers += ["spread"]
    headers += ["vs baseline"] + (["vs node"] if has_node else [])
    lines: list[list[str] | None] = []
    previous = None
    for s in summaries:
        if previous is not None and s["workload"] != previous:
            lines.append(None)
        previous = s["workload"]
        base = by_key.get((BASELINE_KEY, s["workload"]), {}).get("req_s")
        node = by_key.get((NODE_KEY, s["workload"]), {}).get("req_s")
        cells: list[str] = [
            s["label"],
            s["workload_label"],
            fmt(s["req_s"], ",.0f"),
            fmt(s["mib_s"], ",.1f"),
            fmt(s["p50_us"], ",.1f"),
            fmt(s["p99_us"], ",.1f"),
            fmt(s["cpu_us_per_req"], ",.1f"),
            "-" if s["spread_pct"] is None else f"±{s['spread_pct'] / 2:.0f}%",
            ratio(s["req_s"], base),
        ]
        if has_node:
            cells.append(ratio(s["req_s"], node))
        lines.append(cells)
    widths = [len(h) for h in headers]
    for line in lines:
        if line is not None:
            widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    left = 2  # the first two columns are text

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(render(headers))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("" if line is None else render(line))


#: Issue 13's goals: (implementation, workload, what is compared with Node's, at least / at most).
GOALS: list[tuple[str, str, Literal["req/s", "p99"], Literal[">=", "<="], float]] = [
    ("typed-uvloop", "seq", "req/s", ">=", 0.9),
    ("typed-uvloop", "inflight64", "req/s", ">=", 1.0),
    ("typed-uvloop", "seq-1mib", "req/s", ">=", 10.0),
    ("typed-uvloop", "seq", "p99", "<=", 1.0),
    ("typed", "seq", "req/s", ">=", 0.75),
    ("typed", "inflight64", "req/s", ">=", 0.75),
    ("typed", "seq-1mib", "req/s", ">=", 3.5),
    ("jitpc-uvloop", "seq", "req/s", ">=", 1.0),
    ("jitpc-uvloop", "inflight64", "req/s", ">=", 1.3),
]


#: The floor of each goal's row: the same work with no framework. A goal its floor misses in
#: the same run is out of this machine's reach at that moment, not only jitpc's.
FLOOR_OF = {"typed-uvloop": "raw-typed-uvloop", "typed": "raw-typed", "jitpc-uvloop": "raw-uvloop"}


def goal_ratios(rows: list[Row], impl: str, workload: str, what: str) -> list[float]:
    """Per repetition, ``impl``'s figure over Node's in the same repetition (the runs of one
    repetition are next to each other: the machine's state is shared)."""
    by_key = {(row.impl.key, row.workload.key): row for row in rows}
    mine, node = by_key.get((impl, workload)), by_key.get((NODE_KEY, workload))
    if mine is None or node is None:
        return []

    def figure(rep: dict[str, Any]) -> float | None:
        if what == "p99":
            return rep["p99_us"]  # type: ignore[no-any-return]
        return rep["count"] / rep["elapsed_s"] if rep["elapsed_s"] else None

    nodes = {rep["rep"]: figure(rep) for rep in node.reps}
    ratios = []
    for rep in mine.reps:
        theirs, ours = nodes.get(rep["rep"]), figure(rep)
        if theirs and ours is not None:
            ratios.append(ours / theirs)
    return ratios


def goal_results(rows: list[Row]) -> list[dict[str, Any]]:
    results = []
    for impl, workload, what, op, bound in GOALS:
        ratios = sorted(goal_ratios(rows, impl, workload, what))
        median = statistics.median(ratios) if ratios else None
        q1 = percentile(ratios, 0.25) if ratios else None
        q3 = percentile(ratios, 0.75) if ratios else None
        met = None if median is None else (median >= bound if op == ">=" else median <= bound)
        floor = goal_ratios(rows, FLOOR_OF[impl], workload, what)
        results.append(
            {
                "impl": impl,
                "workload": workload,
                "what": what,
                "goal": f"{op} {bound:g}x",
                "median": median,
                "q1": q1,
                "q3": q3,
                "reps": len(ratios),
                "met": met,
                "floor": statistics.median(floor) if floor else None,
            }
        )
    return results


def print_goals(goals: list[dict[str, Any]]) -> None:
    print("issue 13's goals: per repetition, the row's figure over Node's in that repetition;")
    print("median and IQR over the repetitions; floor: the same median for the row's floor")
    print("(raw-typed, raw-uvloop: the same work with no framework), when it ran")
    labels = {impl.key: impl.label for impl in IMPLS}
    wlabels = {w.key: w.label for w in WORKLOADS}
    lines = [["implementation", "workload", "figure", "/ node", "IQR", "goal", "met", "floor"]]
    for g in goals:
        iqr = "-" if g["q1"] is None else f"{g['q1']:.2f}..{g['q3']:.2f}"
        met = "-" if g["met"] is None else "yes" if g["met"] else "NO"
        median = "-" if g["median"] is None else f"{g['median']:.2f}x"
        figure = "p99 latency" if g["what"] == "p99" else "req/s"
        floor = "-" if g["floor"] is None else f"{g['floor']:.2f}x"
        lines.append(
            [labels[g["impl"]], wlabels[g["workload"]], figure, median, iqr, g["goal"], met, floor]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    judged = [g for g in goals if g["met"] is not None]
    missed = [g for g in judged if not g["met"]]
    print(
        f"goals met: {len(judged) - len(missed)} of {len(goals)}"
        + (f" ({len(goals) - len(judged)} not measured)" if len(judged) < len(goals) else "")
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Echo round-trip benchmark: jitpc vs a hand-written asyncio baseline and "
        "Node jitpc, each server in its own process, over a Unix socket.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about 20 s (1 repetition, short)"
    )
    parser.add_argument(
        "--seconds", type=float, help="measured seconds per repetition (default 0.6, quick 0.4)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        help="send exactly N requests per repetition instead of timing --seconds "
        "(workloads with big params send fewer: 1 MiB sends N/100, at least 10)",
    )
    parser.add_argument(
        "--warmup", type=float, help="uncounted warm-up seconds (default 0.2, quick 0.1)"
    )
    parser.add_argument("--reps", type=int, help="repetitions, median taken (default 12, quick 1)")
    keys = [i.key for i in IMPLS]
    parser.add_argument(
        "--impl",
        action="append",
        choices=keys,
        metavar="KEY",
        help=f"only this implementation (repeatable): {', '.join(keys)}",
    )
    wkeys = [w.key for w in WORKLOADS]
    parser.add_argument(
        "--workload",
        action="append",
        choices=wkeys,
        metavar="KEY",
        help=f"only this workload (repeatable): {', '.join(wkeys)}",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run every process with taskset -c 0 (one CPU), for a less noisy variant",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.prefix = []
    if args.pin:
        taskset = shutil.which("taskset")
        if taskset is None:
            parser.error("--pin needs taskset on PATH")
        args.prefix = [taskset, "-c", "0"]
    quick = args.quick
    if args.seconds is None:
        args.seconds = 0.4 if quick else 0.6
    if args.warmup is None:
        args.warmup = 0.1 if quick else 0.2
    if args.reps is None:
        args.reps = 1 if quick else 12
    if args.seconds <= 0 or args.warmup < 0 or args.reps < 1:
        parser.error("--seconds must be > 0, --warmup >= 0 and --reps >= 1")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be >= 1")
    return args


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("_server", "_client"):
        return child_main(argv)
    args = parse_args(argv)
    impls = [i for i in IMPLS if args.impl is None or i.key in args.impl]
    workloads = [w for w in WORKLOADS if args.workload is None or w.key in args.workload]
    notes: list[str] = []

    uv = uvloop_version()
    if uv is None and any(i.needs_uvloop for i in impls):
        notes.append("uvloop rows skipped: uvloop does not import")
        impls = [i for i in impls if not i.needs_uvloop]
    node_version = command_version(["node", "--version"]) if shutil.which("node") else None
    node_jitpc_version = None
    if any(i.needs_node for i in impls):
        node_jitpc_version, why = node_jitpc()
        if node_jitpc_version is None:
            notes.append(f"Node rows skipped: {why}")
            impls = [i for i in impls if not i.needs_node]
        elif node_jitpc_version != NODE_JITPC_VERSION:
            notes.append(f"Node jitpc is {node_jitpc_version}, not {NODE_JITPC_VERSION}")

    meta = {
        "python": platform.python_version(),
        "uvloop": uv,
        "orjson": orjson_version(),
        "node": node_version,
        "node_jitpc": node_jitpc_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "seconds": args.seconds if args.requests is None else None,
        "requests": args.requests,
        "warmup_seconds": args.warmup,
        "reps": args.reps,
        "pinned": " ".join(args.prefix[1:]) or None,
    }
    driver = Driver(args, impls, workloads)
    began = time.monotonic()
    try:
        rows = asyncio.run(driver.run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; the children were stopped")
        return 130
    notes += driver.notes
    summaries = [row.summary() for row in rows if row.reps]
    wall = time.monotonic() - began

    size = f"{args.requests} requests" if args.requests is not None else f"{args.seconds:g} s"
    print(
        f"jitpc echo benchmark: Python {meta['python']}, uvloop {uv or '-'}, "
        f"orjson {meta['orjson'] or '-'}, "
        f"node {node_version or '-'}, Node jitpc {node_jitpc_version or '-'}, "
        f"{meta['cpus']} CPUs, load {' '.join(f'{x:.2f}' for x in meta['loadavg_at_start'] or [])}"
    )
    print(
        "asyncio rows: no optional dependency (orjson hidden); uvloop rows: jitpc[fast] "
        "(uvloop, and orjson when installed)"
    )
    print(
        f"each figure: median of {args.reps} repetition(s) of {size} after a "
        f"{args.warmup:g} s warm-up; run took {wall:.0f} s"
        + ("; every process pinned to CPU 0 (taskset -c 0)" if args.pin else "")
    )
    print(
        "latency: per request, send to response; CPU µs: client + server CPU time per request; "
        "spread: ± half the req/s range over the repetitions"
    )
    print()
    print_table(summaries)
    goals = goal_results(rows)
    if any(g["median"] is not None for g in goals):
        print()
        print_goals(goals)
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"meta": meta, "results": summaries, "goals": goals, "notes": notes}, f, indent=2
            )
            f.write("\n")
    return 0 if summaries else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
