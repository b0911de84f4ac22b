"""Bad inputs, byte for byte, against a live server (research §3, B1-B34, and T14).

Each row of the tables below is one case of the research's B-table: the exact bytes a raw
client writes, and the exact replies the server owes. Every case runs against a live
``jitpc.listen`` server on the test's own loop, and then checks two more things:

* the same connection still works (unless the case closes it): a probe request written right
  after the case is answered, and its answer is the very next line after the expected
  replies, which also proves "no reply" where none is expected;
* the server still answers another client on its own connection.

B34 (splitting) runs every case three ways: in one write; one byte per write, the server
reading each byte on its own (for the two 200 KB nesting bombs of B19, the server reads after
every 256 one-byte writes, to stay fast); and all the cases that keep the connection open
coalesced into one single write. B29 at the default 16 MiB limit is only sent whole. B33
(backpressure) is not tested here.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

import jitpc
from jitpc._protocol import DEFAULT_MAX_MESSAGE_BYTES
from rawpeer import RawPeer, assert_serves, parse_line, raw_peer

pytestmark = pytest.mark.anyio

PARSE, INVALID, NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602

#: The limit of the small server that the oversize cases use (B29), to keep them small.
SMALL = 1024


@dataclass(frozen=True)
class Reply:
    """One reply line the server owes: a result (``code`` None) or an error."""

    id: Any
    code: int | None = None
    result: Any = None
    message: str | None = None  # the error message, exactly
    contains: str | None = None  # or a part of it
    raw: bytes | None = None  # bytes the reply line must contain, as written
    check: Callable[[Any], None] | None = None  # checks the result (or the error's data)


def result(id_: Any, value: Any = None, **kw: Any) -> Reply:
    return Reply(id_, None, value, **kw)


def error(code: int, id_: Any = None, **kw: Any) -> Reply:
    return Reply(id_, code, **kw)


#: Half-close our side (``shutdown(SHUT_WR)``) at this point of a case's writes.
SHUT_WR = None


@dataclass(frozen=True)
class Case:
    """The writes of one case, and what the server answers to them."""

    writes: tuple[bytes | None, ...]
    replies: tuple[Reply, ...]
    closes: bool = False  # the server closes the connection after the replies
    limit: int = DEFAULT_MAX_MESSAGE_BYTES  # the server's max_message_bytes
    pace: int = 1  # bytewise: the server reads after this many one-byte writes

    @property
    def data(self) -> bytes:
        return b"".join(w for w in self.writes if w is not None)


def case(
    data: bytes | tuple[bytes | None, ...],
    *replies: Reply,
    closes: bool = False,
    limit: int = DEFAULT_MAX_MESSAGE_BYTES,
    pace: int = 1,
) -> Case:
    writes = data if isinstance(data, tuple) else (data,)
    return Case(writes, replies, closes, limit, pace)


def unknown(id_: Any, method: str) -> Reply:
    return error(NOT_FOUND, id_, message=f"Unknown method: {method}")


def pydantic_errors(loc: list[Any], type_: str) -> Callable[[Any], None]:
    def check(data: Any) -> None:
        assert isinstance(data, list) and data, data
        for item in data:
            assert set(item) == {"loc", "type", "msg"}, item
            assert isinstance(item["msg"], str) and item["msg"], item
        assert (data[0]["loc"], data[0]["type"]) == (loc, type_), data

    return check


def openrpc_document(doc: Any) -> None:
    assert isinstance(doc, dict), doc
    assert doc["openrpc"].startswith("1.3"), doc
    assert [m["name"] for m in doc["methods"]] == ["inc"], doc


B6 = (
    b'[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},'
    b'{"jsonrpc":"2.0","method":"notify_hello","params":[7]},'
    b'{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":"2"},{"foo":"boo"},'
    b'{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},'
    b'{"jsonrpc":"2.0","method":"get_data","id":"9"}]\n'
)
B7 = (
    b'[{"jsonrpc":"2.0","method":"notify_sum","params":[1,2,4]},'
    b'{"jsonrpc":"2.0","method":"notify_hello","params":[7]}]\n'
)
AT_LIMIT_PAD = "a" * (SMALL - len(b'{"method":"echo","params":"","id":"at"}'))
AT_LIMIT = b'{"method":"echo","params":"' + AT_LIMIT_PAD.encode() + b'","id":"at"}'
assert len(AT_LIMIT) == SMALL
SMUGGLED = b'{"method":"smuggled","id":15}\n'

# Cases after which the connection stays open. Echo returns its params.
OPEN: list[tuple[str, Case]] = [
    (
        "B1-not-json",
        case(b'{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]\n', error(PARSE)),
    ),
    ("B2-method-number", case(b'{"jsonrpc":"2.0","method":1,"params":"bar"}\n', error(INVALID))),
    ("B2-method-array-id", case(b'{"method":["echo"],"id":"b2"}\n', error(INVALID, "b2"))),
    ("B2-method-object-id", case(b'{"method":{},"id":22}\n', error(INVALID, 22))),
    (
        # The id is neither a string nor a number, so it cannot be echoed (as in B11).
        "B2-method-true-bad-id",
        case(
            b'{"method":true,"id":{}}\n{"method":1,"id":[]}\n{"method":1,"id":true}\n',
            error(INVALID),
            error(INVALID),
            error(INVALID),
        ),
    ),
    # A falsy method (JavaScript's truthiness, PROTOCOL.md §4) makes a response: ignored.
    ("B2-method-falsy", case(b'{"method":"","id":1}\n{"method":0,"id":2}\n')),
    ("B3-empty-batch", case(b"[]\n", error(INVALID))),
    ("B4-batch-1", case(b"[1]\n", error(INVALID))),
    ("B5-batch-1-2-3", case(b"[1,2,3]\n", error(INVALID))),
    ("B6-batch", case(B6, error(INVALID))),
    ("B7-batch-notifications", case(B7, error(INVALID))),
    (
        "B8-unknown-method",
        case(b'{"jsonrpc":"2.0","method":"foobar","id":"1"}\n', unknown("1", "foobar")),
    ),
    ("B9-unknown-notification", case(b'{"jsonrpc":"2.0","method":"foobar"}\n')),
    ("B10-id-0", case(b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":0}\n')),
    ("B10-id-0.0", case(b'{"method":"echo","params":[1],"id":0.0}\n')),
    ("B10-id-empty", case(b'{"method":"echo","params":[1],"id":""}\n')),
    ("B10-id-null", case(b'{"method":"echo","params":[1],"id":null}\n')),
    ("B10-id-false", case(b'{"method":"echo","params":[1],"id":false}\n')),
    ("B11-id-array", case(b'{"id":[],"method":"test_foo"}\n', error(INVALID))),
    ("B11-id-object", case(b'{"id":{},"method":"test_foo"}\n', error(INVALID))),
    ("B11-id-true", case(b'{"method":"echo","id":true}\n', error(INVALID))),
    ("B12-number", case(b"1\n", error(INVALID))),
    ("B12-null", case(b"null\n", error(INVALID))),
    ("B12-string", case(b'"x"\n', error(INVALID))),
    ("B12-true", case(b"true\n", error(INVALID))),
    ("B12-false", case(b"false\n", error(INVALID))),
    (
        "B13-params-number",
        case(b'{"jsonrpc":"2.0","method":"echo","params":5,"id":1}\n', result(1, 5)),
    ),
    (
        "B14-typed-wrong-type",
        case(
            b'{"jsonrpc":"2.0","method":"inc","params":{"key":7},"id":2}\n',
            error(INVALID_PARAMS, 2, check=pydantic_errors(["key"], "string_type")),
        ),
    ),
    (
        "B14-typed-no-params",
        case(
            b'{"method":"inc","id":2}\n',
            error(INVALID_PARAMS, 2, check=pydantic_errors(["key"], "missing")),
        ),
    ),
    (
        "B14-typed-ok",
        case(
            b'{"method":"inc","params":{"key":"a"},"id":2}\n', result(2, {"key": "a", "count": 1})
        ),
    ),
    ("B15-jsonrpc-1.0", case(b'{"jsonrpc":"1.0","method":"echo","id":3}\n', result(3))),
    ("B15-no-jsonrpc", case(b'{"method":"echo","id":3}\n', result(3))),
    # An unreadable line framed as jitpc or Node frames a request is answered with its id, so
    # that the request it was fails instead of waiting.
    ("B16-NaN", case(b'{"method":"echo","params":[NaN],"id":4}\n', error(PARSE, 4))),
    ("B16-Infinity", case(b'{"method":"echo","params":[Infinity],"id":4}\n', error(PARSE, 4))),
    ("B16--Infinity", case(b'{"method":"echo","params":[-Infinity],"id":4}\n', error(PARSE, 4))),
    (
        "B17-5000-digits",
        case(b'{"method":"echo","params":[' + b"1" * 5000 + b'],"id":5}\n', error(PARSE, 5)),
    ),
    (
        "B17-jitpc-framing",
        case(
            b'{"jsonrpc":"2.0","id":"s","method":"echo","params":[' + b"1" * 5000 + b"]}\n",
            error(PARSE, "s"),
        ),
    ),
    (
        # Parsed as infinity; written as null, as JSON.stringify does.
        "B18-1e400",
        case(
            b'{"method":"echo","params":[1e400],"id":6}\n',
            result(6, [None], raw=b'"result":[null]'),
        ),
    ),
    # One byte per write for 200 KB: the server reads after every 256 of them.
    ("B19-deep-arrays", case(b"[" * 100000 + b"]" * 100000 + b"\n", error(PARSE), pace=256)),
    (
        "B19-deep-objects",
        case(b'{"a":' * 100000 + b"1" + b"}" * 100000 + b"\n", error(PARSE), pace=256),
    ),
    ("B20-invalid-utf8", case(b'{"method":"\xff\xfe","id":7}\n', error(PARSE, 7))),
    (
        "B21-utf16",
        case('{"method":"echo","id":8}'.encode("utf-16-le") + b"\n", error(PARSE)),
    ),
    ("B22-utf8-surrogate", case(b'{"method":"\xed\xa0\x80","id":9}\n', error(PARSE, 9))),
    (
        "B23-escaped-lone-surrogate",
        case(
            b'{"method":"echo","params":["\\ud800"],"id":10}\n',
            result(10, ["\ud800"], raw=b'"result":["\\ud800"]'),
        ),
    ),
    (
        "B24-duplicate-method-last-wins",
        case(b'{"method":"a","method":"echo","params":"b24","id":11}\n', result(11, "b24")),
    ),
    (
        "B24-duplicate-method-last-wins-2",
        case(b'{"method":"echo","method":"foobar","id":11}\n', unknown(11, "foobar")),
    ),
    ("B25-bom", case(b'\xef\xbb\xbf{"method":"echo","id":12}\n', error(PARSE))),
    ("B26-crlf", case(b'{"method":"echo","params":"crlf","id":13}\r\n', result(13, "crlf"))),
    ("B27-blank-lines", case(b"\n   \n\r\n\t\n")),
    ("B28-raw-control-char", case(b'{"method":"a\x01b","id":14}\n', error(PARSE, 14))),
    (
        "B28-escaped-nul-round-trips",
        case(b'{"method":"echo","params":"a\\u0000b","id":14}\n', result(14, "a\x00b")),
    ),
    ("B29-at-the-limit", case(AT_LIMIT + b"\n", result("at", AT_LIMIT_PAD), limit=SMALL)),
    ("B31-response-to-nobody", case(b'{"result":1,"error":null,"id":999}\n')),
    (
        "B31-error-response-to-nobody",
        case(b'{"result":null,"error":{"message":"x","code":"E_X"},"id":998}\n'),
    ),
    (
        "B32-rpc.discover",
        case(b'{"method":"rpc.discover","id":17}\n', result(17, check=openrpc_document)),
    ),
    ("B32-__class__", case(b'{"method":"__class__","id":18}\n', unknown(18, "__class__"))),
    ("B32-constructor", case(b'{"method":"constructor","id":19}\n', unknown(19, "constructor"))),
    ("B32-__proto__", case(b'{"method":"__proto__","id":20}\n', unknown(20, "__proto__"))),
    ("B32-__init__", case(b'{"method":"__init__","id":21}\n', unknown(21, "__init__"))),
]

# Cases after which the server closes the connection.
CLOSING: list[tuple[str, Case]] = [
    (
        # T14: the tail of an oversize line must never be read as a message.
        "B29-oversize-then-smuggled",
        case(
            (b"x" * (SMALL + 1), SMUGGLED),
            error(INVALID, contains=f"larger than {SMALL} bytes"),
            closes=True,
            limit=SMALL,
        ),
    ),
    (
        "B29-oversize-then-newline-smuggled",
        case(
            (b"x" * (SMALL + 1), b"\n" + SMUGGLED),
            error(INVALID, contains=f"larger than {SMALL} bytes"),
            closes=True,
            limit=SMALL,
        ),
    ),
    (
        "B29-oversize-and-smuggled-in-one-write",
        case(
            b"x" * (SMALL + 1) + SMUGGLED,
            error(INVALID, contains=f"larger than {SMALL} bytes"),
            closes=True,
            limit=SMALL,
        ),
    ),
    (
        "B29-oversize-line-with-newline",
        case(
            (b"x" * (SMALL + 1) + b"\n", SMUGGLED),
            error(INVALID, contains=f"larger than {SMALL} bytes"),
            closes=True,
            limit=SMALL,
        ),
    ),
    ("B30-half-message-then-eof", case((b'{"method":"echo","id":16', SHUT_WR), closes=True)),
    (
        # Not a bad input: what is owed is still answered after our end of stream.
        "B30-whole-message-then-eof",
        case(
            (b'{"method":"echo","params":"last","id":16}\n', SHUT_WR),
            result(16, "last"),
            closes=True,
        ),
    ),
]

PROBE = b'{"jsonrpc":"2.0","method":"echo","params":"probe","id":"probe"}\n'
PROBE_REPLY = result("probe", "probe")


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    key: str


@asynccontextmanager
async def serving(
    jitpc_id: str, limit: int = DEFAULT_MAX_MESSAGE_BYTES
) -> AsyncIterator[collections.Counter[str]]:
    """A live server with "echo", "smuggled" and the typed "inc"; yields the calls it ran."""
    calls: collections.Counter[str] = collections.Counter()

    def echo(params: Any) -> Any:
        calls["echo"] += 1
        return params

    def smuggled(params: Any) -> str:
        calls["smuggled"] += 1
        return "smuggled"

    def on_client(client: jitpc.Client) -> None:
        client.respond("echo", echo)
        client.respond("smuggled", smuggled)

    server = await jitpc.listen(
        jitpc_id, on_client=on_client, spindown=False, max_message_bytes=limit
    )
    assert server is not None
    counts: dict[str, int] = {}

    @server.method
    def inc(params: Inc) -> Counter:
        counts[params.key] = counts.get(params.key, 0) + 1
        return Counter(key=params.key, count=counts[params.key])

    async with server:
        yield calls


def assert_reply(line: bytes, expected: Reply) -> None:
    msg = parse_line(line)
    assert isinstance(msg, dict), line
    assert msg.get("jsonrpc") == "2.0", line
    assert type(msg.get("id")) is type(expected.id) and msg["id"] == expected.id, line
    if expected.code is None:
        assert set(msg) == {"jsonrpc", "id", "result"}, line
        if expected.check is not None:
            expected.check(msg["result"])
        else:
            assert msg["result"] == expected.result, line
    else:
        assert set(msg) == {"jsonrpc", "id", "error"}, line
        err = msg["error"]
        assert set(err) <= {"code", "message", "data"}, line
        assert err["code"] == expected.code, line
        assert isinstance(err["message"], str) and err["message"], line
        if expected.message is not None:
            assert err["message"] == expected.message, line
        if expected.contains is not None:
            assert expected.contains in err["message"], line
        if expected.check is not None:
            expected.check(err.get("data"))
    if expected.raw is not None:
        assert expected.raw in line, line


def assert_replies(lines: list[bytes], expected: tuple[Reply, ...] | list[Reply]) -> None:
    assert len(lines) == len(expected), lines
    for line, reply in zip(lines, expected, strict=True):
        assert_reply(line, reply)


async def read_until_probe(peer: RawPeer) -> list[bytes]:
    """The lines before the probe's answer (which proves nothing else is coming before it)."""
    lines: list[bytes] = []
    while True:
        line = await peer.read_line()
        assert line, f"connection closed; lines so far: {lines}"
        if parse_line(line).get("id") == "probe":
            assert_reply(line, PROBE_REPLY)
            return lines
        lines.append(line)


async def write(peer: RawPeer, c: Case, split: str) -> None:
    """Write the case's bytes: each of its writes whole, or one byte per write."""
    for chunk in c.writes:
        if chunk is SHUT_WR:
            peer.shutdown_write()
            continue
        if split == "bytewise":
            sent = await peer.try_send(chunk, per_write=1, settle=c.pace)
        else:
            sent = await peer.try_send(chunk)
        assert sent or c.closes, "the server closed the connection"


SPLITS = ["whole", "bytewise"]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("c", [pytest.param(c, id=i) for i, c in OPEN])
async def test_bad_input_connection_stays_open(c: Case, split: str, jitpc_id: str) -> None:
    async with serving(jitpc_id, c.limit) as calls:
        async with raw_peer(jitpc_id) as peer:
            await write(peer, c, split)
            await peer.send(PROBE)
            assert_replies(await read_until_probe(peer), c.replies)
            # Again, to show the connection is still in step.
            await peer.send(PROBE)
            assert await read_until_probe(peer) == []
        await assert_serves(jitpc_id)
        assert calls["smuggled"] == 0


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("c", [pytest.param(c, id=i) for i, c in CLOSING])
async def test_bad_input_closes_connection(c: Case, split: str, jitpc_id: str) -> None:
    async with serving(jitpc_id, c.limit) as calls:
        async with raw_peer(jitpc_id) as peer:
            await write(peer, c, split)
            assert_replies(await peer.read_until_eof(), c.replies)
        await assert_serves(jitpc_id)
        assert calls["smuggled"] == 0


def from_the_core(reply: Reply) -> bool:
    """Whether the protocol core answers this itself, as it reads the line (a bad line)."""
    return reply.code in (PARSE, INVALID)


async def test_coalesced_cases(jitpc_id: str) -> None:
    """B34: every case that keeps the connection open, back to back in one single write.

    The core answers a bad line as it reads it, and requests are answered after the whole
    chunk read is parsed: within one read, the replies to bad lines come first. So the
    core's replies are checked in order, and the requests' replies in order, each apart.
    """
    cases = [c for _, c in OPEN if c.limit == DEFAULT_MAX_MESSAGE_BYTES]
    expected = [r for c in cases for r in c.replies]
    async with serving(jitpc_id) as calls:
        async with raw_peer(jitpc_id) as peer:
            await peer.send(b"".join(c.data for c in cases) + PROBE)
            lines = await read_until_probe(peer)
        await assert_serves(jitpc_id)
        assert calls["smuggled"] == 0
    core: list[bytes] = []
    dispatched: list[bytes] = []
    for line in lines:
        code = parse_line(line).get("error", {}).get("code")
        (core if code in (PARSE, INVALID) else dispatched).append(line)
    assert_replies(core, [r for r in expected if from_the_core(r)])
    assert_replies(dispatched, [r for r in expected if not from_the_core(r)])


async def test_oversize_at_the_default_limit(jitpc_id: str) -> None:
    """B29 / T14 at the default limit: 16 MiB + 1 bytes without a newline, then a request."""
    limit = DEFAULT_MAX_MESSAGE_BYTES
    assert limit == 16 * 2**20
    async with serving(jitpc_id) as calls:
        async with raw_peer(jitpc_id) as peer:
            # Up to the limit the line is only buffered: the connection is still fine.
            assert await peer.try_send(b"x" * limit)
            await peer.try_send(b"x")
            await peer.try_send(SMUGGLED)
            lines = await peer.read_until_eof()
        assert_replies(lines, [error(INVALID, contains=f"larger than {limit} bytes")])
        await assert_serves(jitpc_id)
        assert calls["smuggled"] == 0
