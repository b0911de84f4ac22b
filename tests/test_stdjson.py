"""The json-module codec (a connection made where pydantic_core is not loaded) takes and writes
what pydantic's does: the same texts accepted and refused, the same values read, the same
values refused on writing, output that reads back the same.

Its reason to exist is checked last: a peer that reads and writes messages in a fresh
interpreter never imports pydantic_core.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jitpc import _json, _protocol, _stdjson
from support import HANG, ROOT, python_env

CASES = ROOT.parent / "shared" / "testdata" / "JSONTestSuite" / "test_parsing"


def pydantic_reads(line: bytes) -> tuple[bool, Any]:
    """What a pydantic-backed Peer makes of a line: (accepted?, value)."""
    try:
        return True, _json.from_json(line, allow_inf_nan=False)
    except ValueError as exc:
        try:
            return True, _json.second_chance(line, exc)
        except ValueError:
            return False, None


def stdlib_reads(line: bytes) -> tuple[bool, Any]:
    try:
        return True, _stdjson.loads(line, allow_inf_nan=False)
    except ValueError:
        return False, None


def same(a: Any, b: Any) -> bool:
    """Equal, with the types (1 and 1.0 and True differ) and -0.0 told apart."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or a != a and b != b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.skipif(not CASES.is_dir(), reason=f"the JSONTestSuite corpus is not at {CASES}")
def test_every_jsontestsuite_text_is_read_alike() -> None:
    differ = []
    files = sorted(CASES.iterdir())
    for path in files:
        line = path.read_bytes()
        a, b = pydantic_reads(line), stdlib_reads(line)
        if a[0] != b[0] or not same(a[1], b[1]):
            differ.append((path.name, a, b))
    assert len(files) == 318
    assert differ == []


EDGES = [
    b"[1e400]",
    b"[-1e400]",
    b"[NaN]",
    b"[Infinity]",
    b"\xef\xbb\xbf{}",
    b'{"a":1,"a":2}',
    b"[-0]",
    b"[-0.0]",
    b"[1E2,0.1e1]",
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'["\\ud800\\udc00"]',
    b'"\xff"',
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8
    b'"a\tb"',  # a raw control character
    b"[1,]",
    b'{"a":1}x',
    b'{"a":1}\r\n',
    b" {} ",
    b"\x00",
    b"[" + b"1" * 4300 + b"]",
    b"[" + b"1" * 4301 + b"]",
    b"[-" + b"1" * 4300 + b"]",
    b"[1." + b"0" * 5000 + b"1]",
    b"[1e" + b"9" * 5000 + b"]",
]


@pytest.mark.parametrize("line", EDGES, ids=range(len(EDGES)))
def test_edges_are_read_alike(line: bytes) -> None:
    a, b = pydantic_reads(line), stdlib_reads(line)
    assert a[0] == b[0]
    assert same(a[1], b[1])


def nested(depth: int, shape: str) -> Any:
    """A value ``depth`` levels deep, counted as the reader counts (a scalar is a level)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = [value] if shape == "list" else {"k": value}
    return value


@pytest.mark.parametrize("shape", ["list", "object"])
def test_depths_around_the_limit_are_read_and_refused_alike(shape: str) -> None:
    for depth in range(_stdjson.MAX_DEPTH - 12, _stdjson.MAX_DEPTH + 14):
        line = json.dumps(nested(depth, shape)).encode()
        a, b = pydantic_reads(line), stdlib_reads(line)
        assert (a[0], b[0]) == (depth <= _stdjson.MAX_DEPTH,) * 2, depth
        # With an escape in it the pydantic way takes its second chance: the same limit.
        escaped = json.dumps([nested(depth - 1, shape), "\ud800"]).encode()
        assert pydantic_reads(escaped)[0] == stdlib_reads(escaped)[0], depth
    deep = b"[" * 100_000 + b"]" * 100_000
    assert pydantic_reads(deep)[0] is stdlib_reads(deep)[0] is False


def writes(dump: Any, value: Any) -> tuple[bool, Any]:
    try:
        out = dump(value)
    except TypeError:
        return False, None
    return True, json.loads(out)


@pytest.mark.parametrize("shape", ["list", "object"])
def test_depths_around_the_limit_are_written_and_refused_alike(shape: str) -> None:
    # As params or a result a value is one level down: 200 levels is the most written.
    for depth in range(_stdjson.MAX_DEPTH - 12, _stdjson.MAX_DEPTH + 14):
        value = nested(depth, shape)
        a, b = writes(_json.dump, value), writes(_protocol._plain_dump, value)
        assert a[0] is b[0] is (depth < _stdjson.MAX_DEPTH), depth
        assert same(a[1], b[1])


class Point(BaseModel):
    x: int
    at: datetime.date


ODD_VALUES: list[Any] = [
    float("nan"),
    [float("inf"), -math.inf],
    "\ud800",
    {"k": "lone \udfff"},
    10**4299,
    10**4300,  # 4,301 digits: refused by both
    -(10**4299),
    {1: "int key", None: "none key", 1.5: "float key", math.nan: "nan key"},
    {True: "bool key", "null": "a key null", -math.inf: 0},
    (1, 2, (3,)),
    datetime.date(2026, 12, 2),
    {"model": Point(x=1, at=datetime.date(2026, 1, 1))},
    Point(x=2, at=datetime.date(2026, 1, 2)),
    b"bytes",
    {"a": object()},
    '\u2028\u2029\x7f\x1f\x00"\\/é\U0001f600',
    -0.0,
    1e16,
    1e-7,
    5e-324,
    1.7976931348623157e308,
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_odd_values_are_written_as_pydantic_writes_them(value: Any) -> None:
    assert same(writes(_protocol._plain_dump, value), writes(_json.dump, value))


def test_plain_values_are_written_by_the_json_module_when_it_can() -> None:
    # (The point: pydantic's writer is not imported for them. Float spelling may differ.)
    assert _protocol._plain_dump({"a": [1, "é", None, True]}) == '{"a":[1,"é",null,true]}'.encode()
    assert _protocol._plain_dump(1e-7) == b"1e-07"  # pydantic: 1e-7, the same number


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.text(st.characters(exclude_categories=()), max_size=8)  # lone surrogates too
    | st.integers(min_value=-(10**4300), max_value=10**4300),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_any_value_is_written_and_read_back_alike(value: Any) -> None:
    a, b = writes(_json.dump, value), writes(_protocol._plain_dump, value)
    assert a[0] == b[0]
    if a[0]:
        full, plain = _json.dump(value), _protocol._plain_dump(value)
        for out in (full, plain):
            assert same(pydantic_reads(out), stdlib_reads(out))
        assert same(stdlib_reads(full), stdlib_reads(plain))


PEER_ROUND_TRIP = """
import sys
from jitpc._protocol import Peer, Response, Request

client, server = Peer(), Peer()
client.send_request("echo", {"text": "é", "n": [1, 2.5, None], "deep": [[[[1]]]]})
client.send_notification("log", "\\ud800")
events = server.receive_data(client.data_to_send())
assert [type(e) for e in events] == [Request, type(events[1])], events
server.send_result(events[0].id, events[0].params)
server.receive_data(b"not json\\n")
(answer,) = client.receive_data(server.data_to_send().split(b"\\n", 1)[0] + b"\\n")
assert type(answer) is Response and answer.result == events[0].params, answer
assert events[1].params == "\\ud800", events[1]
print(sorted(m for m in ("pydantic_core", "pydantic", "asyncio", "typing") if m in sys.modules))
"""


def test_a_peer_reads_and_writes_without_pydantic_core() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PEER_ROUND_TRIP],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "[]\n"
