"""Typed requests read whole: a request line for a typed method is validated at once from its
bytes (pydantic's JSON mode) instead of parsed and then validated. These tests hold it to the
promise that this changes nothing a peer can see: the same bytes back, the same errors, the
general path for whatever it does not take.

The way a request was read is visible to a validator only, as ``info.mode`` ("json" when read
whole, "python" when parsed first): the ``Probe`` model records it, so that each test knows
which path it exercised.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

import jitpc
import jitpc.sync
from jitpc._paths import address
from rawpeer import RawPeer, parse_line, raw_peer

pytestmark = pytest.mark.anyio

#: How each Probe request was read, in order.
modes: list[str] = []
#: Set whenever a mode is recorded (one event per test: each test has its own loop).
recorded: list[asyncio.Event] = []
#: The server of each test's id.
served: dict[str, jitpc.Server] = {}


def record(into: list[str], info: ValidationInfo) -> None:
    """Note how a model was validated (a validator calls this)."""
    into.append(info.mode)
    for event in recorded:
        event.set()


class Echoed(BaseModel):
    key: str
    n: int
    x: float | None = None


class Probe(jitpc.Method[Echoed], method="probe"):
    key: str
    n: int
    x: float | None = None

    @field_validator("key")
    @classmethod
    def _record(cls, value: str, info: ValidationInfo) -> str:
        record(modes, info)
        return value


class Strict(jitpc.Method[str], method="strict"):
    model_config = ConfigDict(strict=True, extra="forbid")
    when: datetime.datetime


class Money(jitpc.Method[str], method="money"):
    amount: decimal.Decimal


def register(server: jitpc.Server) -> None:
    @server.method
    def probe(params: Probe) -> Echoed:
        return Echoed(key=params.key, n=params.n, x=params.x)

    @server.method
    def strict(params: Strict) -> str:
        return params.when.isoformat()

    @server.method
    def money(params: Money) -> str:
        return str(params.amount)


@pytest.fixture
async def peer(jitpc_id: str) -> AsyncIterator[RawPeer]:
    modes.clear()
    recorded[:] = [asyncio.Event()]
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    register(server)
    served[jitpc_id] = server
    try:
        async with raw_peer(jitpc_id) as raw:
            yield raw
    finally:
        del served[jitpc_id]
        await server.close()


async def validated(count: int) -> None:
    """Wait until ``count`` Probe validations have been recorded."""
    (event,) = recorded
    while len(modes) < count:
        event.clear()
        await event.wait()


async def exchange(peer: RawPeer, line: bytes) -> bytes:
    await peer.send(line)
    return await peer.read_line()


def request(id_: Any, params: Any, method: str = "probe") -> bytes:
    return b'{"jsonrpc":"2.0","id":%b,"method":"%b","params":%b}\n' % (
        str(id_).encode() if not isinstance(id_, str) else b'"%b"' % id_.encode(),
        method.encode(),
        params,
    )


async def test_a_request_read_whole_is_answered_as_a_parsed_one(peer: RawPeer) -> None:
    line = request(7, b'{"key":"k","n":5,"x":0.1}')
    first = await exchange(peer, line)  # the first looks the method up: parsed
    second = await exchange(peer, line)
    assert modes == ["python", "json"]
    assert first == second == b'{"jsonrpc":"2.0","id":7,"result":{"key":"k","n":5,"x":0.1}}\n'
    # Node's order (id last, no "jsonrpc") is read whole too; a string id is parsed, the same.
    assert await exchange(peer, request("a", b'{"key":"k","n":1}')) == (
        b'{"jsonrpc":"2.0","id":"a","result":{"key":"k","n":1,"x":null}}\n'
    )
    node = b'{"method":"probe","params":{"key":"k","n":2},"id":9}\n'
    assert await exchange(peer, node) == (
        b'{"jsonrpc":"2.0","id":9,"result":{"key":"k","n":2,"x":null}}\n'
    )
    assert modes == ["python", "json", "python", "json"]


async def test_invalid_params_get_the_errors_of_the_parsed_path(peer: RawPeer) -> None:
    bad = request(2, b'{"key":"k","n":"five","extra":true}')
    first = await exchange(peer, bad)  # parsed: the method is looked up
    second = await exchange(peer, bad)  # read whole, refused, then parsed and validated again
    assert modes == ["python", "json", "python"]
    assert first == second
    error = parse_line(first)["error"]
    assert error["code"] == -32602
    assert [(e["loc"], e["type"]) for e in error["data"]] == [
        (["n"], "int_parsing"),
        (["extra"], "extra_forbidden"),
    ]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_non_finite_number_is_still_not_json(peer: RawPeer, constant: bytes) -> None:
    await exchange(peer, request(1, b'{"key":"k","n":1}'))
    answer = await exchange(peer, request(2, b'{"key":"k","n":1,"x":%b}' % constant))
    assert modes == ["python"]  # pydantic's JSON mode would take it: not asked
    assert b'"code":-32700' in answer
    assert answer.startswith(b'{"jsonrpc":"2.0","id":2,"error":')


async def test_what_the_fast_path_does_not_take_is_read_as_before(peer: RawPeer) -> None:
    await exchange(peer, request(1, b'{"key":"k","n":1}'))
    # A float id is written back as it came; the fast path takes integer ids from 1 only.
    answer = await exchange(peer, request(1.0, b'{"key":"k","n":1}'))
    assert answer.startswith(b'{"jsonrpc":"2.0","id":1.0,"result":')
    # Two requests in one write (each line still read whole), an escaped method name, a falsy
    # id (a notification to Node).
    both = request(3, b'{"key":"a","n":1}') + request(4, b'{"key":"b","n":2}')
    await peer.send(both)
    assert (await peer.read_line()).startswith(b'{"jsonrpc":"2.0","id":3,"result":{"key":"a"')
    assert (await peer.read_line()).startswith(b'{"jsonrpc":"2.0","id":4,"result":{"key":"b"')
    escaped = b'{"jsonrpc":"2.0","id":5,"method":"pro\\u0062e","params":{"key":"k","n":1}}\n'
    assert (await exchange(peer, escaped)).startswith(b'{"jsonrpc":"2.0","id":5,"result":')
    await peer.send(request(0, b'{"key":"k","n":1}'))
    await validated(6)  # (else it may be read with the next request: two lines, parsed)
    assert (await exchange(peer, request(6, b'{"key":"k","n":1}'))).startswith(
        b'{"jsonrpc":"2.0","id":6,"result":'
    )
    # (A line the fast path refuses after validating it is validated again, parsed.)
    assert modes == [
        "python",  # 1: the first request, parsed, looks the method up
        "python",  # 1.0: not an id the fast path takes, parsed
        "json",  # 3 and 4: two lines in one read, each read whole
        "json",
        "python",  # 5: an escaped name is not recognised
        "python",  # 0: a notification, to Node: parsed
        "json",  # 6
    ]


async def test_strict_models_keep_their_python_mode_semantics(peer: RawPeer) -> None:
    # JSON-mode strict validation would take an ISO string for a datetime; jitpc validates
    # the parsed params, in which it is a str, and a strict model refuses a str every time.
    for id_ in (1, 2):
        answer = await exchange(peer, request(id_, b'{"when":"2026-12-02T00:00:00"}', "strict"))
        assert b'"code":-32602' in answer and b"datetime_type" in answer


async def test_decimals_are_read_from_the_parsed_float_as_before(peer: RawPeer) -> None:
    # JSON mode would read the number's digits; the parsed path reads a float (17 digits).
    for id_ in (1, 2):
        line = request(id_, b'{"amount":0.10000000000000000001}', "money")
        assert await exchange(peer, line) == b'{"jsonrpc":"2.0","id":%d,"result":"0.1"}\n' % id_


async def test_a_method_answered_otherwise_later_is_not_read_whole(
    jitpc_id: str, peer: RawPeer
) -> None:
    line = request(1, b'{"key":"k","n":1}')
    await exchange(peer, line)
    await exchange(peer, line)
    assert modes == ["python", "json"]
    server = served[jitpc_id]
    (client,) = server.clients
    client.respond("probe", lambda params: "untyped")
    assert await exchange(peer, line) == b'{"jsonrpc":"2.0","id":1,"result":"untyped"}\n'
    client.unrespond("probe")
    assert (await exchange(peer, line)).startswith(b'{"jsonrpc":"2.0","id":1,"result":{')
    assert (await exchange(peer, line)).startswith(b'{"jsonrpc":"2.0","id":1,"result":{')
    assert modes == ["python", "json", "python", "json"]


class Text(BaseModel):
    text: str
    score: float


class Say(jitpc.Method[Text], method="say"):
    text: str


async def test_models_are_written_the_same_once_written_long(jitpc_id: str) -> None:
    # A model type once written long goes orjson's way from then on (where it is installed):
    # the bytes must not change, short or long.
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    @server.method
    def say(params: Say) -> Text:
        return Text(text=params.text, score=1e16 / 3)

    try:
        async with raw_peer(jitpc_id) as peer:
            for id_, text in enumerate(["short é \u2028", "x" * 70_000 + "é\x00", "short"], 1):
                params = json.dumps({"text": text}).encode()
                answer = await exchange(peer, request(id_, params, "say"))
                result = {"text": text, "score": 1e16 / 3}
                expected = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
                assert answer == b'{"jsonrpc":"2.0","id":%d,"result":%b}\n' % (
                    id_,
                    expected.encode(),
                )
    finally:
        await server.close()


class Boom(jitpc.Method[int], method="boom"):
    n: int

    @field_validator("n")
    @classmethod
    def _explode(cls, value: int) -> int:
        if value == 13:
            raise RuntimeError("unlucky")  # not a ValueError: pydantic lets it through
        return value


async def test_a_validator_that_raises_fails_the_request_not_the_connection(
    jitpc_id: str,
) -> None:
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None

    @server.method
    def boom(params: Boom) -> int:
        return params.n

    try:
        async with raw_peer(jitpc_id) as peer:
            assert await exchange(peer, request(1, b'{"n":1}', "boom")) == (
                b'{"jsonrpc":"2.0","id":1,"result":1}\n'
            )
            for id_ in (2, 3):  # read whole (refused), then parsed: the handler's failure
                error = parse_line(await exchange(peer, request(id_, b'{"n":13}', "boom")))
                assert error["id"] == id_ and error["error"]["code"] == -32603
            assert await exchange(peer, request(4, b'{"n":4}', "boom")) == (
                b'{"jsonrpc":"2.0","id":4,"result":4}\n'
            )
    finally:
        await server.close()


# -- the calling end: answers read whole -------------------------------------------------------

#: How each Answer result was validated, in order.
answer_modes: list[str] = []


class Answer(BaseModel):
    n: int
    x: float | None = None

    @field_validator("n")
    @classmethod
    def _record(cls, value: int, info: ValidationInfo) -> int:
        record(answer_modes, info)
        return value


class Ask(jitpc.Method[Answer], method="ask"):
    reply: str


class Scripted:
    """A server answering each ``ask`` with its ``reply`` param, ``ID`` replaced by the
    request's id; a reply of ``""`` is held back (``holding`` is set) and sent, alone, before
    the next reply."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self._held: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            if request["method"] != "ask":
                continue  # the cancel notification of a call given up
            reply = request["params"]["reply"].replace("ID", str(request["id"])).encode()
            if not reply:
                late = b'{"jsonrpc":"2.0","id":%d,"result":{"n":0}}\n' % request["id"]
                self._held.append(late)
                self.holding.set()
                continue
            for late in self._held:
                writer.write(late)
                await writer.drain()
            self._held.clear()
            writer.write(reply + b"\n")
        writer.close()


async def scripted(jitpc_id: str) -> tuple[asyncio.Server, Scripted]:
    answer_modes.clear()
    script = Scripted()
    server = await asyncio.start_unix_server(script.handle, address(jitpc_id).socket)
    return server, script


async def test_an_answer_read_whole_is_the_result_of_the_parsed_one(jitpc_id: str) -> None:
    server, _ = await scripted(jitpc_id)
    async with server, jitpc.connect(jitpc_id) as client:
        jitpc_answer = '{"jsonrpc":"2.0","id":ID,"result":{"n":1,"x":0.5,"more":true}}'
        node_answer = '{"result":{"n":2},"error":null,"id":ID}'
        # (Compared by fields: building an Answer here would record a mode.)
        assert (await client.call(Ask(reply=jitpc_answer))).model_dump() == {"n": 1, "x": 0.5}
        assert (await client.call(Ask(reply=node_answer))).model_dump() == {"n": 2, "x": None}
        assert answer_modes == ["json", "json"]
        # A falsy error beside a result is a result, to the general path.
        falsy = '{"jsonrpc":"2.0","id":ID,"result":{"n":3},"error":false}'
        assert (await client.call(Ask(reply=falsy))).n == 3
        # (Not split: what follows the result is no part of it; validated parsed.)
        assert answer_modes == ["json", "json", "python"]


async def test_a_sync_call_reads_its_answer_whole_too(jitpc_id: str) -> None:
    server, _ = await scripted(jitpc_id)

    def calls() -> list[Any]:  # (jitpc.sync, in a thread: this one runs the server's loop)
        with jitpc.sync.connect(jitpc_id) as client:
            whole = client.call(Ask(reply='{"jsonrpc":"2.0","id":ID,"result":{"n":1,"x":0.5}}'))
            parsed = client.call(Ask(reply='{"jsonrpc":"2.0","id":ID,"result":{"n":3},"e":0}'))
            with pytest.raises(jitpc.ResultValidationError) as caught:
                client.call(Ask(reply='{"jsonrpc":"2.0","id":ID,"result":{"n":"one"}}'))
            return [whole.model_dump(), parsed.model_dump(), caught.value.result]

    async with server:
        got = await asyncio.to_thread(calls)
    assert got == [{"n": 1, "x": 0.5}, {"n": 3, "x": None}, {"n": "one"}]
    assert answer_modes == ["json", "python"]


async def test_an_answer_the_fast_path_refuses_is_read_as_before(jitpc_id: str) -> None:
    server, _ = await scripted(jitpc_id)
    async with server, jitpc.connect(jitpc_id) as client:
        error = '{"jsonrpc":"2.0","id":ID,"result":{"n":1},"error":{"code":-32000,"message":"no"}}'
        with pytest.raises(jitpc.RemoteError, match="no"):
            await client.call(Ask(reply=error))
        wrong = '{"jsonrpc":"2.0","id":ID,"result":{"n":"one"}}'
        with pytest.raises(jitpc.ResultValidationError) as caught:
            await client.call(Ask(reply=wrong))
        assert [e["type"] for e in caught.value.errors] == ["int_parsing"]
        assert caught.value.result == {"n": "one"}
        with pytest.raises(jitpc.ProtocolError, match="cannot be read"):
            await client.call(Ask(reply='{"jsonrpc":"2.0","id":ID,"result":{"n":1,"x":NaN}}'))
        # None was validated: the error's result is not split off (what follows it is no part
        # of it), the wrong n fails before the validator, and the NaN is not read.
        assert answer_modes == []


async def test_a_late_answer_to_a_call_given_up_settles_nothing(jitpc_id: str) -> None:
    server, script = await scripted(jitpc_id)
    async with server, jitpc.connect(jitpc_id) as client:
        held = asyncio.ensure_future(client.call(Ask(reply="")))
        await script.holding.wait()
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        # The next call is the only one outstanding; the late answer (n=0, id 1) comes first,
        # alone, and must not be taken for this call's.
        answer = '{"jsonrpc":"2.0","id":ID,"result":{"n":5}}'
        assert (await client.call(Ask(reply=answer))).n == 5
        # Several calls in flight, answered in one write or one by one.
        results = await asyncio.gather(
            *(
                client.call(Ask(reply=f'{{"jsonrpc":"2.0","id":ID,"result":{{"n":{n}}}}}'))
                for n in range(8)
            )
        )
        assert [result.n for result in results] == list(range(8))


async def test_each_line_of_a_read_of_several_is_answered_as_if_alone(peer: RawPeer) -> None:
    lines = [
        request(10, b'{"key":"k","n":1}'),
        request(11, b'{"key":"k","n":"x"}'),
        b'{"jsonrpc":"2.0","id":12,"method":"rpc.ping"}\n',
        request(13, b'{"key":"k","n":1,"x":NaN}'),
        request(0, b'{"key":"k","n":2}'),  # a notification: no answer
        request(14, b'{"key":"k","n":3}'),
    ]
    alone = []
    for line in lines:
        if line is lines[4]:
            await peer.send(line)
            continue
        alone.append(await exchange(peer, line))
    modes.clear()
    await peer.send(b"".join(lines))
    together = [await peer.read_line() for _ in alone]
    assert together == alone
    assert modes == [
        "json",  # 10
        "json",  # 11: read whole, refused, ...
        "python",  # ... parsed, for its errors
        "python",  # 0: a notification, to Node: parsed
        "json",  # 14
    ]


class Step(jitpc.Method[Echoed], method="step"):
    key: str
    n: int


async def test_what_a_handler_sends_before_its_answer_goes_out_first(peer: RawPeer) -> None:
    # A request read whole is answered as soon as its handler returns; a message the handler
    # sent on the way must still come before the answer.
    (server,) = served.values()

    @server.method
    def step(params: Step, client: jitpc.Client) -> Echoed:
        client.notify("progress", {"n": params.n})
        return Echoed(key=params.key, n=params.n)

    line = request(3, b'{"key":"k","n":1}', method="step")
    for _ in range(2):  # the first looks the method up (parsed); the second is read whole
        await peer.send(line)
        assert await peer.read_line() == (
            b'{"jsonrpc":"2.0","method":"progress","params":{"n":1}}\n'
        )
        assert await peer.read_line() == (
            b'{"jsonrpc":"2.0","id":3,"result":{"key":"k","n":1,"x":null}}\n'
        )


async def test_each_result_of_a_read_of_several_is_read_as_if_alone(jitpc_id: str) -> None:
    answer_modes.clear()
    replies = [
        '{"jsonrpc":"2.0","id":ID,"result":{"n":1}}',
        '{"result":{"n":2},"error":null,"id":ID}',  # Node's
        '{"jsonrpc":"2.0","id":ID,"result":{"n":"three"}}',  # fails the model
        '{"jsonrpc":"2.0","id":ID,"error":{"code":-32000,"message":"no"}}',
        '{"jsonrpc":"2.0","id":ID,"result":{"n":5},"error":false}',  # not split: parsed
    ]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Every answer in one write, once all the requests came, in the order they came.
        out: list[str] = []
        while len(out) < len(replies):
            request = json.loads(await reader.readline())
            out.append(request["params"]["reply"].replace("ID", str(request["id"])) + "\n")
        writer.write("".join(out).encode())
        await writer.drain()
        await reader.read()  # (until the client closes)
        writer.close()

    server = await asyncio.start_unix_server(handle, address(jitpc_id).socket)
    async with server, jitpc.connect(jitpc_id) as client:
        await client.open()
        outcomes = await asyncio.gather(
            *(client.call(Ask(reply=reply)) for reply in replies), return_exceptions=True
        )
    first, second, third, fourth, fifth = outcomes
    assert isinstance(first, Answer) and first.n == 1
    assert isinstance(second, Answer) and second.n == 2
    assert isinstance(third, jitpc.ResultValidationError)
    assert third.result == {"n": "three"}
    assert isinstance(fourth, jitpc.RemoteError) and fourth.message == "no"
    assert isinstance(fifth, Answer) and fifth.n == 5
    # Validated from their bytes: the first two, and the third (refused, then parsed, whose n
    # fails before the validator); the fifth is parsed.
    assert answer_modes == ["json", "json", "python"]


def test_each_method_class_has_its_own_result_caches() -> None:
    # call() reads a Method class's result reader and validator as attributes: a subclass
    # must find its own (empty until first used), never its base's.
    from jitpc._method import result_reader, result_validator

    class Base(jitpc.Method[Answer], method="base"):
        pass

    class Derived(Base, method="derived"):
        pass

    assert result_reader(Base) is not None and result_validator(Base) is not None
    assert Derived.__jitpc_read_result__ is False
    assert Derived.__jitpc_validate_result__ is None
    assert result_reader(Derived) is not None and result_reader(Derived) is not result_reader(Base)
