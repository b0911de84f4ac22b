"""The workload that bench/instructions.py runs under callgrind, one row per process.

``_instructions_child.py WORKLOAD IMPL LOOP UNITS`` handles ``UNITS * 64`` echo requests of
``{"key": "my-counter", "n": <int>}`` in-process, with no socket: a fake transport stands for
the connection. The driver runs each row at two sizes and divides the difference in instructions
by the difference in requests, so everything else this process does (start-up, imports, the
first request's caches, the check at the end) cancels out.

WORKLOAD is one of:

* ``server1``: a server fed one request per ``data_received``; its writes go nowhere;
* ``server64``: the same, fed 64 requests per ``data_received``;
* ``client1``: a client awaiting each request before sending the next, against an in-process
  echo that answers each write on the next loop turn (``loop.call_soon``);
* ``client64``: the same with 64 requests in flight (64 sequential workers, gathered).

IMPL is ``raw`` (the hand-written baseline below), ``jitpc`` (a responder ``lambda p: p`` /
``client.request``), ``typed`` (bench/typed_echo.py's models at both ends), ``raw-typed``
(the typed floor: the raw baseline plus exactly those models' pydantic steps, each message read
by one ``validate_json`` of its whole line, as the issue's floor did) or, for the client
workloads only, ``raw-typed-caller`` (that floor awaited from a coroutine of the caller's, as
the typed client is: typed_echo.call builds the params model and awaits ``client.call``, where
the floor's own ``call`` does both, so the typed row has a coroutine more on its stack).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson

#: Requests per unit: also the requests per read of ``server64`` and the workers of ``client64``.
UNIT = 64


def params(n: int) -> dict[str, Any]:
    return {"key": "my-counter", "n": n}


def echoed_n(result: Any) -> Any:
    """The ``n`` of an echo: a dict's item, or a typed result's attribute."""
    return result["n"] if type(result) is dict else getattr(result, "n", None)


class FakeTransport(asyncio.Transport):
    """A connection that costs nothing: ``write`` keeps the bytes for the final check and hands
    them to ``on_write``, if any; everything else does nothing."""

    def __init__(self, on_write: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.on_write = on_write
        self.last = b""

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.last = bytes(data)  # the same object when it is bytes already, as jitpc writes
        if self.on_write is not None:
            self.on_write(self.last)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


# -- the server side -------------------------------------------------------------------------------


class RawServer(asyncio.Protocol):
    """The baseline server for one request per read: ``orjson.loads`` the read, write
    ``orjson.dumps({"id": ..., "result": params})`` and a newline."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        request = orjson.loads(data)
        self.transport.write(
            orjson.dumps({"id": request["id"], "result": request["params"]}) + b"\n"
        )


class RawLinesServer(RawServer):
    """The baseline server for many requests per read: split on newlines (keeping a partial
    last line for the next read), answer each as :class:`RawServer` does, in one write."""

    buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        replies = []
        for line in lines:
            request = orjson.loads(line)
            replies.append(orjson.dumps({"id": request["id"], "result": request["params"]}))
        replies.append(b"")
        self.transport.write(b"\n".join(replies))


def typed_envelopes() -> tuple[Any, Any]:
    """The floor's envelopes, one ``validate_json`` a line: a request with typed_echo's params
    model, and a response with its result model."""
    from pydantic import BaseModel
    from typed_echo import EchoSmall, Small

    class Request(BaseModel):
        id: int
        params: EchoSmall

    class Response(BaseModel):
        id: int
        result: Small

    return (
        Request.__pydantic_validator__.validate_json,
        Response.__pydantic_validator__.validate_json,
    )


class RawTypedServer(RawServer):
    """The typed floor of a server, one request per read: validate the whole line, build the
    result model as typed_echo's handler does, splice its JSON into the answer."""

    def __init__(self) -> None:
        from typed_echo import Small

        self.read = typed_envelopes()[0]
        self.small = Small

    def data_received(self, data: bytes) -> None:
        request = self.read(data)
        params = request.params
        result = self.small(key=params.key, n=params.n)
        self.transport.write(
            b"".join(
                (
                    b'{"jsonrpc":"2.0","id":%d,"result":' % request.id,
                    result.__pydantic_serializer__.to_json(result),
                    b"}\n",
                )
            )
        )


class RawTypedLinesServer(RawTypedServer):
    """The typed floor for many requests per read, split and answered in one write."""

    buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        replies = []
        read, small = self.read, self.small
        for line in lines:
            request = read(line)
            params = request.params
            result = small(key=params.key, n=params.n)
            replies.append(b'{"jsonrpc":"2.0","id":%d,"result":' % request.id)
            replies.append(result.__pydantic_serializer__.to_json(result))
            replies.append(b"}\n")
        self.transport.write(b"".join(replies))


async def run_server(impl: str, per_read: int, units: int) -> None:
    lines = [
        orjson.dumps({"jsonrpc": "2.0", "id": n + 1, "method": "echo", "params": params(n)}) + b"\n"
        for n in range(UNIT)
    ]
    reads = lines if per_read == 1 else [b"".join(lines)]
    transport = FakeTransport()
    server = None
    protocol: asyncio.Protocol
    if impl == "raw":
        protocol = RawServer() if per_read == 1 else RawLinesServer()
        protocol.connection_made(transport)
    elif impl == "raw-typed":
        protocol = RawTypedServer() if per_read == 1 else RawTypedLinesServer()
        protocol.connection_made(transport)
    else:
        import jitpc

        # In a private TMPDIR made by the driver, which deletes it.
        server = await jitpc.listen(f"instructions-{os.getpid()}", spindown=False)
        assert server is not None
        if impl == "typed":
            from typed_echo import register

            register(server)
        protocol = server._accept()
        protocol.connection_made(transport)
        if impl == "jitpc":
            (client,) = server.clients
            client.respond("echo", lambda p: p)

    data_received = protocol.data_received
    for _ in range(units):
        for data in reads:
            data_received(data)

    last = orjson.loads(transport.last.splitlines()[-1])
    if last.get("id") != UNIT or echoed_n(last.get("result")) != UNIT - 1:
        raise RuntimeError(f"wrong last reply: {transport.last[-200:]!r}")
    if server is not None:
        await server.close()  # removes the socket and the lock file


# -- the client side -------------------------------------------------------------------------------


def echo_transport(deliver: Callable[[bytes], None]) -> FakeTransport:
    """A transport whose peer echoes: each write's lines are answered, together, by one
    ``deliver`` call on the next loop turn."""
    from pydantic_core import from_json, to_json

    call_soon = asyncio.get_running_loop().call_soon

    def on_write(data: bytes) -> None:
        out = []
        for line in data.split(b"\n")[:-1]:
            request = from_json(line)
            out.append(
                b'{"jsonrpc":"2.0","id":%d,"result":%b}\n'
                % (request["id"], to_json(request["params"]))
            )
        call_soon(deliver, b"".join(out))

    return FakeTransport(on_write)


class RawClient:
    """The baseline client: a future per request in a dict by id, orjson both ways.

    Each request is its own write, so each read holds exactly one response.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.last_id = 0
        self.transport = echo_transport(self.data_received)

    async def call(self, params: Any) -> Any:
        self.last_id = id_ = self.last_id + 1
        future = self.loop.create_future()
        self.pending[id_] = future
        self.transport.write(orjson.dumps({"id": id_, "method": "echo", "params": params}) + b"\n")
        return await future

    def data_received(self, data: bytes) -> None:
        response = orjson.loads(data)
        self.pending.pop(response["id"]).set_result(response["result"])


class RawTypedClient(RawClient):
    """The typed floor of a client: build the params model (as typed_echo.call does), splice
    its JSON into the request; validate each answer whole, checked by id."""

    def __init__(self) -> None:
        from typed_echo import EchoSmall

        super().__init__()
        self.read = typed_envelopes()[1]
        self.model = EchoSmall

    async def call(self, params: Any) -> Any:
        model = self.model(key=params["key"], n=params["n"])
        self.last_id = id_ = self.last_id + 1
        future = self.loop.create_future()
        self.pending[id_] = future
        head = b'{"jsonrpc":"2.0","id":%d,"method":"echo","params":' % id_
        self.transport.write(b"".join((head, model.__pydantic_serializer__.to_json(model), b"}\n")))
        return await future

    def data_received(self, data: bytes) -> None:
        response = self.read(data)  # one answer per read, as for RawClient
        self.pending.pop(response.id).set_result(response.result)


async def run_client(impl: str, concurrency: int, units: int) -> None:
    call: Callable[[dict[str, Any]], Awaitable[Any]]
    if impl == "raw":
        call = RawClient().call
    elif impl == "raw-typed":
        call = RawTypedClient().call
    elif impl == "raw-typed-caller":
        floor_call = RawTypedClient().call

        async def caller(params: dict[str, Any]) -> Any:
            return await floor_call(params)

        call = caller
    else:
        import jitpc
        from jitpc._connection import Connection

        client = jitpc.connect("nowhere")  # never connects: it is handed a connection
        connection = client._connection = Connection(client, "nowhere")
        connection.connection_made(echo_transport(connection.data_received))
        if impl == "typed":
            from typed_echo import call as typed_call

            call = functools.partial(typed_call, client)
        else:
            call = functools.partial(client.request, "echo")

    async def worker(first: int, count: int) -> None:
        result = None
        for n in range(first, first + count):
            result = await call(params(n))
        if echoed_n(result) != first + count - 1:
            raise RuntimeError(f"wrong echo: {result!r}")

    count = units * UNIT // concurrency
    await asyncio.gather(*(worker(w * count, count) for w in range(concurrency)))


def main(argv: list[str]) -> None:
    workload, impl, loop_name, units = argv
    if impl not in ("raw", "jitpc", "typed", "raw-typed", "raw-typed-caller"):
        raise SystemExit(f"unknown implementation {impl!r}")
    if impl == "raw-typed-caller" and not workload.startswith("client"):
        raise SystemExit(f"{impl} is a client: it has no {workload} workload")
    workloads = {
        "server1": functools.partial(run_server, impl, 1),
        "server64": functools.partial(run_server, impl, UNIT),
        "client1": functools.partial(run_client, impl, 1),
        "client64": functools.partial(run_client, impl, UNIT),
    }
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    asyncio.Runner(loop_factory=factory).run(workloads[workload](int(units)))
    # Skip the interpreter's teardown: it costs callgrind time and is no part of a request.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
