"""The I/O-free protocol core, byte by byte: no sockets here."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import from_json, to_json

from jitpc import InvalidRequest, MethodNotFound, ProtocolError, RemoteError
from jitpc import _json as jitpc_json
from jitpc._json import MAX_DEPTH
from jitpc._protocol import (
    CANCEL_METHOD,
    MAX_CANCELLED,
    SPLIT_MAX,
    BadMessage,
    CancelRequest,
    ErrorResponse,
    Event,
    Notification,
    Peer,
    Request,
    Response,
    State,
    Whole,
)


def feed(peer: Peer, data: bytes, split: str) -> list[Event]:
    """Feed ``data`` whole, one byte at a time, or in two uneven halves."""
    if split == "whole":
        return peer.receive_data(data)
    if split == "bytes":
        return [event for i in range(len(data)) for event in peer.receive_data(data[i : i + 1])]
    cut = len(data) // 3
    return peer.receive_data(data[:cut]) + peer.receive_data(data[cut:])


def replies(peer: Peer) -> list[Any]:
    return [from_json(line) for line in peer.data_to_send().splitlines()]


SPLITS = ["whole", "bytes", "thirds"]

try:
    import orjson
except ImportError:  # pragma: no cover - jitpc[fast] is part of the test extra
    orjson = None  # type: ignore[assignment]

ENCODERS = ["pydantic", "orjson"]


@pytest.fixture(params=ENCODERS)
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson writing JSON (jitpc[fast]), and with pydantic alone."""
    if request.param == "pydantic":
        monkeypatch.setattr(jitpc_json, "_fast_dumps", None)
    elif orjson is None:
        pytest.skip("orjson is not installed")
    else:
        monkeypatch.setattr(jitpc_json, "_fast_dumps", orjson.dumps)
    return str(request.param)


# Node jitpc's own bytes (PROTOCOL.md §4) and what they must become.
WIRE: list[tuple[bytes, Event]] = [
    (
        b'{"method":"inc","params":{"key":"my-counter"},"id":7}\n',
        Request(7, "inc", {"key": "my-counter"}),
    ),
    (b'{"method":"log","params":{"line":"hi"},"id":0}\n', Notification("log", {"line": "hi"})),
    (b'{"method":"log"}\n', Notification("log", None)),
    (b'{"method":"m","id":null}\r\n', Notification("m", None)),
    (b'{"method":"m","id":"abc"}\n', Request("abc", "m", None)),
    (
        b'{"result":{"id":"x","count":1},"error":null,"id":7}\n',
        Response(7, {"id": "x", "count": 1}),
    ),
    (b'{"error":null,"id":2}\n', Response(2, None)),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("wire", "event"), WIRE)
def test_node_messages_classify(wire: bytes, event: Event, split: str) -> None:
    peer = Peer()
    assert feed(peer, wire, split) == [event]
    assert peer.data_to_send() == b""


@pytest.mark.parametrize("split", SPLITS)
def test_node_error_response(split: str) -> None:
    wire = (
        b'{"result":null,"error":{"message":"boom","code":"E_BOOM",'
        b'"stack":"Error: boom\\n    at x"},"id":3}\n'
    )
    [event] = feed(Peer(), wire, split)
    assert isinstance(event, ErrorResponse)
    assert event.id == 3
    assert type(event.error) is RemoteError
    assert (event.error.message, event.error.code) == ("boom", "E_BOOM")
    assert event.error.stack == "Error: boom\n    at x"


def test_standard_codes_pick_their_class() -> None:
    [event] = Peer().receive_data(b'{"error":{"code":-32601,"message":"no"},"id":1}\n')
    assert isinstance(event, ErrorResponse)
    assert type(event.error) is MethodNotFound
    assert event.error.code == -32601


@pytest.mark.parametrize("split", SPLITS)
def test_many_messages_in_one_stream(split: str) -> None:
    wire = b"".join(w for w, _ in WIRE) * 3
    assert feed(Peer(), wire, split) == [e for _, e in WIRE] * 3


def test_partial_line_waits_for_the_rest() -> None:
    peer = Peer()
    assert peer.receive_data(b'{"method":"a","id":1}\n{"meth') == [Request(1, "a", None)]
    assert peer.receive_data(b'od":"b","id":2}') == []
    assert peer.receive_data(b"\n") == [Request(2, "b", None)]


def test_blank_lines_are_ignored() -> None:
    peer = Peer()
    assert peer.receive_data(b'\n\r\n{"method":"a","id":1}\n\n') == [Request(1, "a", None)]
    assert peer.data_to_send() == b""


@pytest.mark.parametrize("split", SPLITS)
def test_garbage_gets_parse_error_and_stream_goes_on(split: str) -> None:
    peer = Peer()
    events = feed(peer, b'not json\n{"method":"a","id":1}\n', split)
    assert isinstance(events[0], BadMessage) and not events[0].fatal
    assert events[1:] == [Request(1, "a", None)]
    [reply] = replies(peer)
    assert reply["id"] is None
    assert reply["error"]["code"] == -32700


@pytest.mark.parametrize(
    "line", [b"[1,2]", b"42", b'"x"', b"null", b"[]", b'[{"method":"a","id":1}]']
)
def test_non_object_json_is_invalid_request(line: bytes) -> None:
    peer = Peer()
    [event] = peer.receive_data(line + b"\n")
    assert isinstance(event, BadMessage)
    [reply] = replies(peer)
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)


def test_non_string_method_is_invalid_request_answered_with_its_id() -> None:
    peer = Peer()
    [event] = peer.receive_data(b'{"method":5,"id":9}\n')
    assert isinstance(event, BadMessage)
    [reply] = replies(peer)
    assert (reply["id"], reply["error"]["code"]) == (9, -32600)


@pytest.mark.parametrize("line", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}'])
def test_non_finite_numbers_are_parse_errors(line: bytes) -> None:
    peer = Peer()
    [event] = peer.receive_data(line + b"\n")
    assert isinstance(event, BadMessage)
    assert replies(peer)[0]["error"]["code"] == -32700


def test_invalid_utf8_is_a_parse_error() -> None:
    peer = Peer()
    [event] = peer.receive_data(b'{"method":"\xff","id":1}\n')
    assert isinstance(event, BadMessage)
    assert replies(peer)[0]["error"]["code"] == -32700


@pytest.mark.parametrize("split", SPLITS)
def test_oversized_line_fails_the_connection_and_its_tail_never_runs(split: str) -> None:
    # Research T14: the tail of an over-long line must never be read as a message.
    peer = Peer(max_message_bytes=64)
    smuggled = b'{"jsonrpc":"2.0","method":"smuggled","id":1}\n'
    events = feed(peer, b"x" * 80 + smuggled, split)
    assert [type(e) for e in events] == [BadMessage]
    assert isinstance(events[0], BadMessage) and events[0].fatal
    assert peer.failed
    [reply] = replies(peer)
    assert (reply["id"], reply["error"]["code"]) == (None, InvalidRequest.CODE)
    assert peer.receive_data(smuggled) == []


def test_line_at_the_limit_is_accepted() -> None:
    line = b'{"method":"a","id":1}'
    peer = Peer(max_message_bytes=len(line))
    assert peer.receive_data(line + b"\n") == [Request(1, "a", None)]
    assert not peer.failed


def test_a_read_of_one_line_over_the_limit_fails_the_connection() -> None:
    # A read that is exactly one line takes a shorter path through the core: same limits.
    line = b'{"method":"a","id":1}'
    for ending in (b"\n", b"\r\n"):
        peer = Peer(max_message_bytes=len(line + ending) - 2)
        [event] = peer.receive_data(line + ending)
        assert isinstance(event, BadMessage) and event.fatal and peer.failed


@pytest.mark.parametrize("read", [b"\n", b"\r\n", b" \t\r\n"])
def test_a_read_of_one_blank_line_is_ignored(read: bytes) -> None:
    peer = Peer()
    assert peer.receive_data(read) == []
    assert peer.data_to_send() == b""
    assert peer.receive_data(b'{"method":"a","id":1}\r\n') == [Request(1, "a", None)]


def test_eof_mid_message_is_not_a_message() -> None:
    peer = Peer()
    assert peer.receive_data(b'{"method":"a","id":1}') == []
    [event] = peer.receive_eof()
    assert isinstance(event, BadMessage)
    assert peer.receive_eof() == []
    assert peer.receive_data(b"\n") == []
    assert peer.data_to_send() == b""


def test_byte_trickle_is_linear() -> None:
    # 200 KiB one byte at a time: quadratic copying would take minutes, linear takes a moment.
    line = b'{"method":"a","params":"' + b"x" * 200_000 + b'","id":1}\n'
    peer = Peer()
    events = [e for i in range(len(line)) for e in peer.receive_data(line[i : i + 1])]
    assert events == [Request(1, "a", "x" * 200_000)]


def test_outgoing_messages_and_ids(encoder: str) -> None:
    peer = Peer()
    assert peer.send_request("inc", {"key": "a"}) == (1, b"")
    assert peer.send_request("inc") == (2, b"")
    peer.send_notification("log", ["hi"])
    peer.send_result(7, {"count": 1})
    peer.send_result("s", None)
    peer.send_error(3, MethodNotFound("Unknown method: x"))
    out = peer.data_to_send()
    assert out.endswith(b"\n") and out.count(b"\n") == 6
    assert replies(peer) == []
    assert [from_json(line) for line in out.splitlines()] == [
        {"jsonrpc": "2.0", "id": 1, "method": "inc", "params": {"key": "a"}},
        {"jsonrpc": "2.0", "id": 2, "method": "inc"},
        {"jsonrpc": "2.0", "method": "log", "params": ["hi"]},
        {"jsonrpc": "2.0", "id": 7, "result": {"count": 1}},
        {"jsonrpc": "2.0", "id": "s", "result": None},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "error": {"code": -32601, "message": "Unknown method: x"},
        },
    ]


@pytest.mark.parametrize("size", [10, 4090, 4096, 100_000])
def test_outgoing_lines_are_the_same_for_short_and_long_bodies(encoder: str, size: int) -> None:
    # Bodies are joined into the line, not formatted in: the bytes must be exact at any length.
    text = "x" * size
    peer = Peer()
    peer.send_request("echo", text)
    peer.send_notification("log", text)
    peer.send_result(7, text)
    peer.send_result("s", text)
    body = b'"' + text.encode() + b'"'
    assert peer.data_to_send() == (
        b'{"jsonrpc":"2.0","id":1,"method":"echo","params":' + body + b"}\n"
        b'{"jsonrpc":"2.0","method":"log","params":' + body + b"}\n"
        b'{"jsonrpc":"2.0","id":7,"result":' + body + b"}\n"
        b'{"jsonrpc":"2.0","id":"s","result":' + body + b"}\n"
    )


def test_unencodable_params_raise_and_queue_nothing(encoder: str) -> None:
    peer = Peer()
    with pytest.raises(TypeError):
        peer.send_request("m", {"x": object()})
    assert peer.data_to_send() == b""
    assert peer.send_request("m") == (1, b"")


def _nested(levels: int, shape: str) -> Any:
    """A value ``levels`` deep as pydantic's parser counts (a scalar is a level too)."""
    value: Any = "\ud800" if shape == "surrogate" else 1
    for level in range(levels - 1):
        value = {"k": value} if shape == "dicts" or level % 2 else [value, "[{"]
    return value


@pytest.mark.parametrize("shape", ["lists and dicts", "dicts", "surrogate"])
def test_what_is_written_can_be_read_at_every_depth(encoder: str, shape: str) -> None:
    # The message is level 1, so params or a result may be 200 deep: deeper is refused at
    # the sender, so that the reader never has to refuse it.
    for levels in range(190, 215):
        value = _nested(levels, shape)
        sender, receiver = Peer(), Peer()
        if levels > MAX_DEPTH - 1:
            with pytest.raises(TypeError, match="nest deeper than 201"):
                sender.send_request("m", value)
            with pytest.raises(TypeError, match="nest deeper than 201"):
                sender.send_result(1, value)
            assert sender.data_to_send() == b"" and sender.outstanding == 0
        else:
            sender.send_request("m", value)
            sender.send_result(1, value)
            events = receiver.receive_data(sender.data_to_send())
            assert events == [Request(1, "m", value), Response(1, value)], levels


def test_integers_past_the_readers_limit_are_refused_at_the_sender(encoder: str) -> None:
    sender, receiver = Peer(), Peer()
    sender.send_result(1, [10**4299, -(10**4299)])
    assert receiver.receive_data(sender.data_to_send()) == [Response(1, [10**4299, -(10**4299)])]
    for value in (10**4300, {"n": -(10**4300)}, ["x" * 10_000, 10**4300]):
        with pytest.raises(TypeError, match="more than 4,300 digits"):
            sender.send_request("m", value)
    assert sender.data_to_send() == b""


def test_error_data_the_reader_would_refuse_is_dropped(encoder: str) -> None:
    peer = Peer()
    peer.send_error(1, RemoteError("deep", -32000, data=_nested(230, "dicts")))
    [reply] = replies(peer)
    assert reply["error"] == {"code": -32000, "message": "deep"}


def test_lone_surrogates_are_written_as_escapes_like_json_stringify(encoder: str) -> None:
    peer = Peer()
    peer.send_result(1, "x\ud800y")
    assert peer.data_to_send() == b'{"jsonrpc":"2.0","id":1,"result":"x\\ud800y"}\n'
    [event] = Peer().receive_data(b'{"id":1,"result":"x\\ud800y"}\n')
    assert event == Response(1, "x\ud800y")


def test_error_with_unencodable_data_is_still_sent(encoder: str) -> None:
    peer = Peer()
    peer.send_error(1, RemoteError("bad \ud800", -32000, data=object()))
    [reply] = replies(peer)
    assert reply["id"] == 1
    assert reply["error"]["code"] == -32000
    assert reply["error"]["message"].startswith("bad ")


def test_two_peers_through_a_link() -> None:
    """A request and its response, and the reverse direction, between two cores."""
    a, b = Peer(), Peer()
    id_a, _ = a.send_request("add", [1, 2])
    [req] = b.receive_data(a.data_to_send())
    assert isinstance(req, Request)
    assert req == Request(id_a, "add", [1, 2])
    b.send_result(req.id, 3)
    id_b, _ = b.send_request("ping")
    assert a.receive_data(b.data_to_send()) == [Response(id_a, 3), Request(id_b, "ping", None)]
    a.send_error(id_b, RemoteError("nope", "E_NOPE"))
    [err] = b.receive_data(a.data_to_send())
    assert isinstance(err, ErrorResponse) and err.id == id_b
    assert isinstance(err.error, RemoteError)
    assert (err.error.message, err.error.code) == ("nope", "E_NOPE")


@pytest.mark.parametrize(
    ("wire", "event"),
    [
        # JavaScript truthiness, as Node jitpc tests these fields: {} and [] are true.
        (b'{"result":null,"error":{},"id":1}\n', ErrorResponse(1, RemoteError(""))),
        (b'{"method":"m","id":""}\n', Notification("m", None)),
        (b'{"method":"m","id":false}\n', Notification("m", None)),
        (b'{"method":"","id":1}\n', Response(1, None)),
        (b'{"result":5,"error":0,"id":1}\n', Response(1, 5)),
    ],
)
def test_truthiness_is_javascripts(wire: bytes, event: Event) -> None:
    [got] = Peer().receive_data(wire)
    if isinstance(event, ErrorResponse):
        assert isinstance(got, ErrorResponse) and got.id == event.id
        assert type(got.error) is RemoteError
    else:
        assert got == event


@pytest.mark.parametrize("id_", [b"{}", b"[]", b"[1]", b"true", b'{"a":1}'])
def test_ids_that_are_not_strings_or_numbers_are_invalid(id_: bytes) -> None:
    peer = Peer()
    [event] = peer.receive_data(b'{"method":"m","id":' + id_ + b"}\n")
    assert isinstance(event, BadMessage)
    [reply] = replies(peer)
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)


@pytest.mark.parametrize(
    "line",
    [
        '{"method":"echo","id":8}'.encode("utf-16-le"),  # B21
        b'{"method":"\xed\xa0\x80","id":9}',  # B22: a UTF-8-encoded surrogate
        b'\xef\xbb\xbf{"method":"echo","id":12}',  # B25: a BOM
        b'{"method":"a\x01b","id":14}',  # B28: a raw control character
    ],
)
def test_only_strict_utf8_json_is_accepted(line: bytes) -> None:
    peer = Peer()
    [event] = peer.receive_data(line + b"\n")
    assert isinstance(event, BadMessage)
    assert replies(peer)[0]["error"]["code"] == -32700


def test_escaped_lone_surrogate_from_node_is_accepted() -> None:
    # JSON.stringify("x\ud800y") writes a valid escape that some parsers reject.
    [event] = Peer().receive_data(b'{"result":"x\\ud800y","error":null,"id":1}\n')
    assert event == Response(1, "x\ud800y")


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    peer = Peer()
    [event] = peer.receive_data(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert isinstance(event, BadMessage)
    assert replies(peer)[0]["error"]["code"] == -32700
    assert peer.receive_data(b'{"method":"a","id":1}\n') == [Request(1, "a", None)]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(
        st.builds(
            lambda method, params, id_: {"method": method, "params": params, "id": id_},
            st.text(min_size=1, max_size=5),
            _json,
            st.integers(min_value=1),
        ),
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    crlf=st.booleans(),
)
def test_any_split_gives_the_same_events(
    messages: list[dict[str, Any]], cuts: list[int], crlf: bool
) -> None:
    sep = b"\r\n" if crlf else b"\n"
    wire = b"".join(to_json(m) + sep for m in messages)
    expected = [Request(m["id"], m["method"], m["params"]) for m in messages]
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    peer = Peer()
    events = [
        e for a, b in zip(points, points[1:], strict=False) for e in peer.receive_data(wire[a:b])
    ]
    assert events == expected


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_any_bytes_give_at_most_one_event_per_line_and_leave_the_core_usable(
    data: bytes, cuts: list[int]
) -> None:
    peer = Peer(max_message_bytes=1 << 20)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    events = [
        e for a, b in zip(points, points[1:], strict=False) for e in peer.receive_data(data[a:b])
    ]
    assert len(events) <= data.count(b"\n")
    replies_sent = peer.data_to_send().count(b"\n")
    assert replies_sent <= data.count(b"\n")
    # Whatever came before, a fresh line after a newline is still understood.
    assert peer.receive_data(b'\n{"method":"ok","id":1}\n')[-1] == Request(1, "ok", None)


class _Point(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    x_pos: float = Field(alias="x")
    when: datetime.datetime
    tags: list[str] = []
    ratio: float = 0.0


def _written(value: Any) -> tuple[str, Any]:
    """What :func:`dump` makes of ``value``: its JSON read back, or the error raised."""
    try:
        return "json", json.loads(jitpc_json.dump(value))
    except TypeError:
        return "TypeError", None


_any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson declines those
    | st.floats()  # with inf and nan: written as null
    | st.text()  # with lone surrogates: written as escapes
    | st.datetimes(timezones=st.none() | st.just(datetime.UTC)),  # orjson: +00:00, not Z
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(value=_any_value)
def test_orjson_and_pydantic_write_the_same_json(value: Any) -> None:
    if orjson is None:
        pytest.skip("orjson is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jitpc_json, "_fast_dumps", None)
        expected = _written(value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jitpc_json, "_fast_dumps", orjson.dumps)
        assert _written(value) == expected


def test_models_are_written_by_alias_with_their_own_serializer(encoder: str) -> None:
    when = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
    point = _Point(x=1.5, when=when, tags=["a"], ratio=math.inf)
    assert json.loads(jitpc_json.dump(point)) == {
        "x": 1.5,
        "when": "2026-11-26T12:00:00Z",
        "tags": ["a"],
        "ratio": None,
    }
    big = {"blob": 'x\n"\\' * 100_000, "n": 2**70, "nested": [point]}
    assert json.loads(jitpc_json.dump(big))["n"] == 2**70
    assert json.loads(jitpc_json.dump(big))["blob"] == big["blob"]


# -- outstanding requests and cancellation: core logic, no sockets --------------------------------


def test_answers_carry_the_waiter_of_the_request_they_answer() -> None:
    a, b = Peer(), Peer()
    first, _ = a.send_request("m", 1, waiter="w1")
    second, _ = a.send_request("m", 2, waiter="w2")
    assert a.outstanding == 2
    b.receive_data(a.data_to_send())
    b.send_error(second, MethodNotFound("no"))
    b.send_result(first, "one")
    events = a.receive_data(b.data_to_send())
    assert [type(e) for e in events] == [ErrorResponse, Response]
    assert [e.waiter for e in events] == ["w2", "w1"]  # type: ignore[union-attr]
    assert a.outstanding == 0
    # A second answer to the same id, or to an id never sent, has no waiter.
    b.send_result(first, "again")
    b.send_result(99, "never sent")
    assert [e.waiter for e in a.receive_data(b.data_to_send())] == [None, None]  # type: ignore[union-attr]


def test_an_answer_by_a_true_or_float_id_does_not_match_an_int_request() -> None:
    peer = Peer()
    peer.send_request("m", waiter="w")
    events = peer.receive_data(b'{"id":true,"result":1}\n{"id":"1","result":1}\n')
    assert [e.waiter for e in events] == [None, None]  # type: ignore[union-attr]
    assert peer.outstanding == 1


@pytest.mark.parametrize("split", SPLITS)
def test_cancel_tells_the_peer_and_drops_the_late_answer_quietly(split: str) -> None:
    a, b = Peer(), Peer()
    id_, _ = a.send_request("slow", None, waiter="w")
    b.receive_data(a.data_to_send())
    assert a.cancel(id_) and not a.cancel(id_)  # once: the second finds nothing outstanding
    assert a.outstanding == 0
    assert feed(b, a.data_to_send(), split) == [CancelRequest(id_)]
    b.send_error(id_, RemoteError("cancelled", -32800))
    b.send_result(id_, "a second late answer")
    events = feed(a, b.data_to_send(), split)
    # The first late answer is dropped without an event; the id is then forgotten.
    assert events == [Response(id_, "a second late answer", None)]


def test_cancel_on_the_wire_is_lsps_notification() -> None:
    peer = Peer()
    id_, _ = peer.send_request("m")
    peer.data_to_send()
    peer.cancel(id_)
    assert replies(peer) == [{"jsonrpc": "2.0", "method": CANCEL_METHOD, "params": {"id": id_}}]


@pytest.mark.parametrize(
    "line",
    [
        b'{"method":"$/cancelRequest","params":{}}\n',  # no id: an ordinary notification
        b'{"method":"$/cancelRequest","params":[1]}\n',
        b'{"method":"$/cancelRequest"}\n',
    ],
)
def test_a_malformed_cancel_is_an_ordinary_notification(line: bytes) -> None:
    (event,) = Peer().receive_data(line)
    assert type(event) is Notification


def test_a_cancel_sent_as_a_request_is_a_request() -> None:
    (event,) = Peer().receive_data(b'{"method":"$/cancelRequest","params":{"id":1},"id":5}\n')
    assert type(event) is Request  # answered like any other request (method not found)


def test_cancelled_ids_are_remembered_within_a_bound() -> None:
    peer = Peer()
    ids = [peer.send_request("m")[0] for _ in range(MAX_CANCELLED + 10)]
    for id_ in ids:
        peer.cancel(id_)
    assert len(peer._cancelled) == MAX_CANCELLED
    # The oldest were forgotten: their late answers are events again (with no waiter).
    (event,) = peer.receive_data(b'{"id":%d,"result":0}\n' % ids[0])
    assert type(event) is Response and event.waiter is None
    assert peer.receive_data(b'{"id":%d,"result":0}\n' % ids[-1]) == []


def test_abandon_hands_back_every_waiter_once() -> None:
    peer = Peer()
    for name in "abc":
        peer.send_request("m", waiter=name)
    assert sorted(peer.abandon()) == ["a", "b", "c"]
    assert peer.abandon() == [] and peer.outstanding == 0


def test_state_follows_eof_and_failure() -> None:
    peer = Peer(max_message_bytes=4)
    states = [peer.state]
    peer.receive_data(b"123456")
    states.append(peer.state)
    assert states == [State.OPEN, State.FAILED] and peer.failed
    other = Peer()
    other.receive_eof()
    assert other.state is State.CLOSED and not other.failed
    # A closed peer queues no cancel: nobody would read it.
    id_, _ = other.send_request("m")
    other.data_to_send()
    assert other.cancel(id_) and other.data_to_send() == b""


@pytest.mark.parametrize(
    ("line", "waiter"),
    [
        (b'{"jsonrpc":"2.0","id":1,"result":' + b"1" * 5000 + b"}\n", "w"),  # jitpc's framing
        (b'{"result":[' + b"[" * 300 + b"]" * 300 + b'],"error":null,"id":1}\n', "w"),  # Node's
    ],
)
def test_an_answer_that_cannot_be_read_fails_the_request_it_answers(
    line: bytes, waiter: str
) -> None:
    peer = Peer()
    peer.send_request("m", waiter=waiter)
    peer.data_to_send()
    (event,) = peer.receive_data(line)
    assert isinstance(event, ErrorResponse) and event.waiter == waiter
    assert isinstance(event.error, ProtocolError) and "cannot be read" in str(event.error)
    assert peer.outstanding == 0 and peer.data_to_send() == b""  # nothing to answer back


def test_an_unreadable_request_is_answered_with_its_id() -> None:
    peer = Peer()
    (event,) = peer.receive_data(b'{"jsonrpc":"2.0","id":"q","method":"m","params":[NaN]}\n')
    assert isinstance(event, BadMessage)
    (reply,) = replies(peer)
    assert reply["id"] == "q" and reply["error"]["code"] == -32700


def test_named_methods_of_a_read_of_several_lines_come_unparsed_in_order() -> None:
    peer = Peer()
    peer.whole = {b"typed": "route"}
    typed = b'{"jsonrpc":"2.0","id":1,"method":"typed","params":{"a":[1]}}'
    other = b'{"jsonrpc":"2.0","id":2,"method":"other","params":{}}'
    events = peer.receive_data(b"\n".join([typed, other, typed.replace(b"1,", b"3,")]) + b"\n")
    assert [type(event) for event in events] == [Whole, Request, Whole]
    first, _, third = events
    assert isinstance(first, Whole) and first.line == typed and first.route == "route"
    assert first.params == b'{"a":[1]}' and first.head == b'{"jsonrpc":"2.0","id":1'
    assert isinstance(third, Whole) and third.head == b'{"jsonrpc":"2.0","id":3'
    assert peer.read_line(first.line) == Request(1, "typed", {"a": [1]})
    # A read of one line is the I/O layer's to check (Peer.request_of): it comes parsed.
    assert peer.request_of(typed + b"\n") == (b'{"jsonrpc":"2.0","id":1', "route", b'{"a":[1]}')
    assert peer.receive_data(typed + b"\n") == [Request(1, "typed", {"a": [1]})]
    # A line begun in an earlier read is parsed too.
    assert peer.receive_data(typed[:10]) == []
    assert peer.receive_data(typed[10:] + b"\n" + typed + b"\n") == [
        Request(1, "typed", {"a": [1]}),
        Whole(typed, "route", b'{"jsonrpc":"2.0","id":1', b'{"a":[1]}'),
    ]
    assert peer.request_of(typed + b"\n" + typed + b"\n") is None


def test_request_lines_are_split_as_jitpc_and_node_write_them_and_nothing_else() -> None:
    peer = Peer()
    peer.whole = {b"m": "route"}
    head = b'{"jsonrpc":"2.0","id":7'
    for line in [
        b'{"jsonrpc":"2.0","id":7,"method":"m","params":{"x":"}"}}',
        b'{"method":"m","params":{"x":"}"},"id":7}',  # Node's
    ]:
        assert peer.request_of(line + b"\n") == (head, "route", b'{"x":"}"}')
        (event,) = peer.receive_data(b"\n" + line + b"\n")  # (a blank line first: several)
        assert event == Whole(line, "route", head, b'{"x":"}"}')
    # Only exactly those forms: anything else is for the parser, which reads it as it is.
    refused = [
        b'{"jsonrpc":"2.0","id":7,"method":"m","params":{}}',  # no newline: not read yet
        b'{"jsonrpc":"2.0","id":7,"method":"m","params":{}}\r\n',
        b'{"jsonrpc":"2.0","id":0,"method":"m","params":{}}\n',  # Node's notification
        b'{"jsonrpc":"2.0","id":07,"method":"m","params":{}}\n',
        b'{"jsonrpc":"2.0","id":-7,"method":"m","params":{}}\n',
        b'{"jsonrpc":"2.0","id":7.0,"method":"m","params":{}}\n',
        b'{"jsonrpc":"2.0","id":"7","method":"m","params":{}}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"\\u006d","params":{}}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"other","params":{}}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"m"}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"m","params":{}} \n',
        b'{"method":"m","params":{},"id":7,"x":1}\n',
        b'{"params":{},"method":"m","id":7}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"m","params":"' + b"x" * SPLIT_MAX + b'"}\n',
    ]
    for line in refused:
        assert peer.request_of(line) is None, line
    peer.whole[b"m\tx"] = "route"  # a raw tab is no JSON: the parser refuses it (-32700)
    assert peer.request_of(b'{"jsonrpc":"2.0","id":7,"method":"m\tx","params":{}}\n') is None
    peer = Peer(max_message_bytes=40)
    peer.whole = {b"m": "route"}
    assert peer.request_of(b'{"jsonrpc":"2.0","id":7,"method":"m","params":{}}\n') is None
    peer = Peer()
    peer.whole = {b"m": "route"}
    assert peer.receive_data(b'{"jsonrpc":"2.0","id":7') == []
    assert peer.request_of(b',"method":"m","params":{}}\n') is None  # (the start came before)


def seen(result: bytes) -> tuple[str, bytes]:
    """A result reader that keeps the bytes it was given (and refuses "no")."""
    if result == b'"no"':
        raise ValueError("refused")
    return ("read", result)


def test_result_lines_are_split_as_jitpc_and_node_write_them_and_nothing_else() -> None:
    for line in [
        b'{"jsonrpc":"2.0","id":1,"result":{"x":"}"}}\n',
        b'{"result":{"x":"}"},"error":null,"id":1}\n',  # Node's
    ]:
        peer = Peer()
        peer.send_request("m", waiter="w", reader=seen)
        assert peer.take_result(line) == ("w", ("read", b'{"x":"}"}'))
        assert peer.outstanding == 0 and peer.result_readers == {}
        assert peer.receive_data(line) == [Response(1, {"x": "}"}, None)]  # (answered already)
    # Only exactly those forms, for a request with a reader that takes the result; anything
    # else is for receive_data, which reads it as it is.
    peer = Peer()
    peer.send_request("m", waiter="w", reader=seen)
    peer.send_request("m", waiter="w2")  # no reader
    refused = [
        b'{"jsonrpc":"2.0","id":1,"result":1}',  # no newline: not read yet
        b'{"jsonrpc":"2.0","id":1,"result":1}\r\n',
        b'{"jsonrpc":"2.0","id":1,"result":1}\n{"jsonrpc":"2.0","id":2,"result":1}\n',
        b'{"jsonrpc":"2.0","id":01,"result":1}\n',
        b'{"jsonrpc":"2.0","id":"1","result":1}\n',
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"no"}}\n',
        b'{"jsonrpc":"2.0","result":1,"id":1}\n',
        b'{"result":1,"id":1}\n',
        b'{"result":1,"error":null,"id":1} \n',
        b'{"jsonrpc":"2.0","id":1,"result":"' + b"x" * SPLIT_MAX + b'"}\n',
        b'{"jsonrpc":"2.0","id":1,"result":"no"}\n',  # the reader refuses it
        b'{"jsonrpc":"2.0","id":2,"result":1}\n',  # sent without a reader
        b'{"jsonrpc":"2.0","id":3,"result":1}\n',  # not outstanding
    ]
    for line in refused:
        assert peer.take_result(line) is None, line
    assert peer.outstanding == 2
    peer = Peer(max_message_bytes=20)
    peer.send_request("m", reader=seen)
    assert peer.take_result(b'{"jsonrpc":"2.0","id":1,"result":1}\n') is None
    peer = Peer()
    peer.send_request("m", reader=seen)
    assert peer.receive_data(b'{"jsonrpc":"2.0","id":1') == []
    assert peer.take_result(b',"result":1}\n') is None  # (the start came before)


def test_result_lines_of_a_read_of_several_come_read_for_requests_with_a_reader() -> None:
    peer = Peer()
    peer.send_request("m", waiter="w1", reader=seen)
    peer.send_request("m", waiter="w2")
    peer.send_request("m", waiter="w3", reader=seen)
    peer.send_request("m", waiter="w4", reader=seen)
    lines = [
        b'{"jsonrpc":"2.0","id":1,"result":{"x":"}"}}',
        b'{"jsonrpc":"2.0","id":2,"result":2}',  # no reader: parsed
        b'{"result":[3],"error":null,"id":3}',  # Node's
        b'{"jsonrpc":"2.0","id":4,"result":"no"}',  # refused by the reader: parsed
    ]
    assert peer.receive_data(b"\n".join(lines) + b"\n") == [
        Response(1, ("read", b'{"x":"}"}'), "w1"),
        Response(2, 2, "w2"),
        Response(3, ("read", b"[3]"), "w3"),
        Response(4, "no", "w4"),
    ]
    assert peer.outstanding == 0 and peer.result_readers == {}


def test_a_reader_goes_with_its_request() -> None:
    peer = Peer()
    first, _ = peer.send_request("m", reader=seen)
    second, _ = peer.send_request("m", reader=seen)
    third, _ = peer.send_request("m", reader=seen)
    peer.receive_data(b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"no"}}\n')
    peer.cancel(second)
    assert list(peer.result_readers) == [third]
    peer.abandon()
    assert peer.result_readers == {}


def test_an_answer_by_its_head_is_the_answer_by_its_id() -> None:
    peer = Peer()
    peer.send_answer(b'{"jsonrpc":"2.0","id":7', {"a": 1})
    peer.send_result(7, {"a": 1})
    first, second = peer.data_to_send().splitlines(keepends=True)
    assert first == second == b'{"jsonrpc":"2.0","id":7,"result":{"a":1}}\n'


def test_a_request_made_now_is_returned_only_with_nothing_queued_before_it() -> None:
    peer = Peer()
    line = b'{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}\n'
    assert peer.send_request("m", [1], "w", now=True) == (1, line)
    assert peer.data_to_send() == b""  # (returned, not queued; outstanding all the same)
    assert peer.receive_data(b'{"jsonrpc":"2.0","id":1,"result":2}\n') == [Response(1, 2, "w")]
    peer.send_notification("n")
    assert peer.send_request("m", [1], now=True) == (2, b"")  # queued behind it
    assert peer.data_to_send() == b'{"jsonrpc":"2.0","method":"n"}\n' + line.replace(b"1", b"2", 1)


def test_an_answer_made_now_is_returned_only_with_nothing_queued_before_it() -> None:
    peer = Peer()
    head = b'{"jsonrpc":"2.0","id":7'
    answer = b'{"jsonrpc":"2.0","id":7,"result":{"a":1}}\n'
    assert peer.send_answer(head, {"a": 1}, now=True) == answer
    assert peer.data_to_send() == b""  # (returned, not queued)
    peer.send_notification("progress", {"n": 1})
    assert peer.send_answer(head, {"a": 1}, now=True) == b""  # queued behind it
    assert peer.send_answer(head, {"a": 1}) == b""
    assert peer.data_to_send() == (
        b'{"jsonrpc":"2.0","method":"progress","params":{"n":1}}\n' + answer + answer
    )
