"""An atheris fuzz target for the I/O-free protocol core, ``jitpc._protocol.Peer``.

Run it outside CI, time-boxed (see ``fuzz/README.md``)::

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_protocol.py -max_total_time=300

One fuzz input is the bytes a peer sends, followed by a small trailer that says how to feed
them (so the fuzzer also chooses where reads split the stream)::

    input = body || cut_1 .. cut_n (2 bytes each, little-endian) || flags (1 byte)

    flags & 7   n, the number of cut points (0-7): the body is fed in n+1 reads
    flags & 8   the peer's max_message_bytes is 64 (else the 16 MiB default)
    flags & 16  receive_eof() after the body
    flags & 32  feed the body one byte per read (instead of at the cut points)

For each input the body is fed to one ``Peer`` whole and to another one split as the trailer
says, and only documented outcomes pass:

* no exception at all, from ``receive_data``, ``receive_eof`` or ``data_to_send``;
* every event is one of the five event types, with the documented fields (a request has a
  non-empty string method and a truthy string or number id, ...);
* the core's own replies are valid JSON lines (strict: UTF-8, no NaN), each an error object
  -32700 or -32600 with ``"id"`` null, or with the request's string or number id (B2); at most
  one reply per input line;
* once a peer has failed (a line over the limit), it takes nothing more: a valid request fed
  afterwards gives no event and no reply (research T14);
* splitting the stream changes nothing: same events, same replies, same failure.

The seed corpus (the JSONTestSuite files and the research's bad inputs B1-B34) is written into
the corpus directory at start; nothing of it is committed.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from jitpc import RemoteError
from jitpc._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BadMessage,
    CancelRequest,
    ErrorResponse,
    Event,
    Notification,
    Peer,
    Request,
    Response,
)

ROOT = Path(__file__).resolve().parent.parent
JSONTESTSUITE = ROOT.parent / "shared" / "testdata" / "JSONTestSuite" / "test_parsing"

SMALL_LIMIT = 64
PARSE, INVALID = -32700, -32600
EVENT_TYPES = (Request, Notification, Response, ErrorResponse, BadMessage)
AFTER_FAILURE = b'{"jsonrpc":"2.0","method":"smuggled","id":1}\n'

#: The research's bad inputs (reliability-and-security.md §3), as byte streams.
B_VECTORS: list[bytes] = [
    b'{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]\n',
    b'{"jsonrpc":"2.0","method":1,"params":"bar"}\n',
    b'{"method":true,"id":{}}\n{"method":1,"id":[]}\n{"method":1,"id":"x"}\n',
    b"[]\n",
    b"[1]\n",
    b"[1,2,3]\n",
    b'[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"foo":"boo"}]\n',
    b'{"jsonrpc":"2.0","method":"foobar","id":"1"}\n',
    b'{"jsonrpc":"2.0","method":"foobar"}\n',
    b'{"method":"echo","id":0}\n{"method":"echo","id":""}\n{"method":"echo","id":false}\n',
    b'{"id":[],"method":"test_foo"}\n{"id":{},"method":"test_foo"}\n{"id":true,"method":"m"}\n',
    b'1\nnull\n"x"\ntrue\n',
    b'{"jsonrpc":"2.0","method":"subtract","params":5,"id":1}\n',
    b'{"jsonrpc":"1.0","method":"echo","id":3}\n{"method":"echo","id":3}\n',
    b'{"method":"echo","params":[NaN,Infinity,-Infinity],"id":4}\n',
    b'{"method":"echo","params":[' + b"1" * 5000 + b'],"id":5}\n',
    b'{"method":"echo","params":[1e400],"id":6}\n',
    b"[" * 3000 + b"]" * 3000 + b"\n",
    b'{"a":' * 1500 + b"1" + b"}" * 1500 + b"\n",
    b'{"method":"\xff\xfe","id":7}\n',
    '{"method":"echo","id":8}'.encode("utf-16-le") + b"\n",
    b'{"method":"\xed\xa0\x80","id":9}\n',
    b'{"method":"echo","params":["\\ud800"],"id":10}\n',
    b'{"method":"a","method":"b","id":11}\n',
    b'\xef\xbb\xbf{"method":"echo","id":12}\n',
    b'{"method":"echo","id":13}\r\n',
    b"\n   \n\r\n",
    b'{"method":"a\x01b","id":14}\n{"method":"echo","params":"\\u0000","id":14}\n',
    b"x" * (SMALL_LIMIT + 1) + b'{"method":"smuggled","id":15}\n',
    b'{"method":"echo","id":16',
    b'{"result":1,"error":null,"id":999}\n{"error":{"message":"x","code":"E"},"id":9}\n',
    b'{"method":"rpc.discover","id":17}\n{"method":"__class__","id":18}\n',
]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes) -> tuple[bytes, list[bytes], int, bool]:
    """An input as (body, the reads to feed, max_message_bytes, end with receive_eof?)."""
    if not data:
        return b"", [], DEFAULT_MAX_MESSAGE_BYTES, False
    flags = data[-1]
    count = flags & 7
    end = len(data) - 1 - 2 * count
    if end < 0:
        count, end = 0, len(data) - 1
    body = data[:end]
    if flags & 32:
        reads = [body[i : i + 1] for i in range(len(body))]
    else:
        cuts = sorted(
            int.from_bytes(data[end + 2 * i : end + 2 * i + 2], "little") % (len(body) + 1)
            for i in range(count)
        )
        reads = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    limit = SMALL_LIMIT if flags & 8 else DEFAULT_MAX_MESSAGE_BYTES
    return body, reads, limit, bool(flags & 16)


def encode_input(body: bytes, *, small: bool = False, eof: bool = False) -> bytes:
    """A seed: ``body`` fed whole (the trailer with no cuts)."""
    return body + bytes([(8 if small else 0) | (16 if eof else 0)])


def truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value."""
    return value not in (None, False, 0, "") or isinstance(value, list | dict)


def is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def check_event(event: Event) -> None:
    kind = type(event)
    assert kind in EVENT_TYPES, event
    if isinstance(event, Request):
        assert type(event.method) is str and event.method, event
        assert type(event.id) is str or is_number(event.id), event
        assert truthy(event.id), event
    elif isinstance(event, Notification):
        assert type(event.method) is str and event.method, event
    elif isinstance(event, BadMessage):
        assert type(event.reason) is str and event.reason, event
        assert type(event.fatal) is bool, event


def check_replies(out: bytes, body: bytes) -> None:
    """The core's own replies: JSON error lines, at most one per input line."""
    if not out:
        return
    assert out.endswith(b"\n"), out
    lines = out[:-1].split(b"\n")
    assert len(lines) <= body.count(b"\n") + 1, (len(lines), out)
    for line in lines:
        reply = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        assert type(reply) is dict and set(reply) == {"jsonrpc", "id", "error"}, line
        assert reply["jsonrpc"] == "2.0", line
        error = reply["error"]
        assert type(error) is dict and error.get("code") in (PARSE, INVALID), line
        assert type(error.get("message")) is str and error["message"], line
        id_ = reply["id"]
        assert id_ is None or ((type(id_) is str or is_number(id_)) and truthy(id_)), line


def summary(event: Event) -> Any:
    """An event as a comparable value (RemoteError instances compare by identity)."""
    if isinstance(event, ErrorResponse):
        err = event.error
        if not isinstance(err, RemoteError):  # an answer that could not be read
            return ("unreadable", event.id, str(err))
        return ("error", event.id, type(err), err.message, err.code, err.data, err.stack)
    if isinstance(event, Request | Notification | Response | CancelRequest):
        # NaN cannot come in (it is not JSON), but infinity can: equal to itself.
        return event
    assert isinstance(event, BadMessage), event  # (no Whole: these peers have no whole routes)
    return ("bad", event.reason, event.fatal)


def feed(reads: list[bytes], limit: int, eof: bool) -> tuple[list[Event], bytes, bool]:
    peer = Peer(max_message_bytes=limit)
    events: list[Event] = []
    out: list[bytes] = []
    for chunk in reads:
        events += peer.receive_data(chunk)
        out.append(peer.data_to_send())
    if eof:
        events += peer.receive_eof()
        out.append(peer.data_to_send())
    if peer.failed:
        # T14: nothing after the oversize line is ever read.
        assert peer.receive_data(AFTER_FAILURE) == [], "read after failure"
        assert peer.data_to_send() == b"", "replied after failure"
        fatal = [e for e in events if isinstance(e, BadMessage) and e.fatal]
        assert len(fatal) == 1 and events[-1] is fatal[0], events
    else:
        assert not any(isinstance(e, BadMessage) and e.fatal for e in events), events
    return events, b"".join(out), peer.failed


def test_one_input(data: bytes) -> None:
    body, reads, limit, eof = decode(data)
    events, out, failed = feed(reads, limit, eof)
    for event in events:
        check_event(event)
    check_replies(out, body)
    whole_events, whole_out, whole_failed = feed([body], limit, eof)
    assert [summary(e) for e in events] == [summary(e) for e in whole_events], "split differs"
    assert out == whole_out, (out, whole_out)
    assert failed == whole_failed
    for event in events:  # no NaN can have come through
        if isinstance(event, Request | Notification):
            assert not _has_nan(event.params), event


def _has_nan(value: Any) -> bool:
    if type(value) is float:
        return math.isnan(value)
    if type(value) is list:
        return any(_has_nan(v) for v in value)
    if type(value) is dict:
        return any(_has_nan(v) for v in value.values())
    return False


def seeds() -> list[bytes]:
    """The seed inputs: every JSONTestSuite file as a line, and every B-vector, several ways."""
    out: list[bytes] = []
    if JSONTESTSUITE.is_dir():
        for path in sorted(JSONTESTSUITE.iterdir()):
            out.append(encode_input(path.read_bytes().replace(b"\n", b"\t") + b"\n"))
    for vector in B_VECTORS:
        out.append(encode_input(vector))
        out.append(encode_input(vector, small=True, eof=True))
        out.append(vector + b"\x20")  # one byte per read
    return out


def instrument_jitpc(atheris: Any) -> None:
    """Coverage for jitpc's own Python code only (instrumenting all of it, pydantic and the
    standard library included, makes the runs ten times slower for nothing: the JSON parsers
    are native code either way)."""
    functions = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith("jitpc")
    ]
    for function in functions:
        atheris.instrument_func(function)
    print(f"instrumented {len(functions)} jitpc functions", file=sys.stderr)


def main() -> None:
    # Imported here: atheris is not a dependency, and not installed where the types are checked.
    atheris: Any = importlib.import_module("atheris")
    argv = list(sys.argv)
    dirs = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not dirs:
        work = Path(tempfile.mkdtemp(prefix="jitpc-fuzz-"))
        corpus = work / "corpus"
        corpus.mkdir()
        argv.append(str(corpus))
        if not any(arg.startswith("-artifact_prefix=") for arg in argv):
            argv.append(f"-artifact_prefix={work}{os.sep}")
        print(f"corpus: {corpus}; findings go to {work}", file=sys.stderr)
    else:
        corpus = Path(dirs[0])
        corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number:04d}").write_bytes(seed)
    if not any(arg.startswith("-max_len=") for arg in argv):
        argv.append("-max_len=8192")
    instrument_jitpc(atheris)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
