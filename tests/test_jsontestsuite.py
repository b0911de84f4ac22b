"""Every JSONTestSuite parser case, sent as a message line to a live server.

nst/JSONTestSuite's ``test_parsing/`` holds 318 JSON texts no one here wrote: ``y_`` must be
accepted, ``n_`` rejected, ``i_`` either (see its ``SOURCE.md``). Each goes to the server as one
line; what the server owes (research §3):

* ``n_`` (not JSON): one -32700 reply with ``"id":null``. The two ``n_`` files that are empty or
  a single space become a blank line, which jitpc ignores (B27): no reply, counted apart.
* ``y_`` (JSON): never -32700. A value that is not an object gets -32600 with ``"id":null``;
  an object gets what the core rules give it (none of the corpus objects has a ``method``, so
  each one is a response to no request: ignored, no reply).
* ``i_``: either of the two; never anything else, never a crash.

Framing: a raw ``\\n`` would cut a file into two lines, and five files hold one inside (four as
whitespace between tokens, one inside a string). Every raw ``\\n`` (and ``\\r``) is sent as a
raw ``\\t`` instead. That keeps each file's verdict: in JSON's grammar the three are the same
class of byte: whitespace between tokens, and a control character that is invalid unescaped
inside a string.

After each file a probe request on the same connection is answered next (so "no reply" really
is none), and another client, on its own connection, still gets its answer. The counts are
printed at the end and asserted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

import jitpc
from rawpeer import RawPeer, parse_line, raw_peer
from support import ROOT

SUITE = ROOT.parent / "shared" / "testdata" / "JSONTestSuite"
CASES = SUITE / "test_parsing"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not CASES.is_dir(),
        reason=f"the JSONTestSuite corpus is not at {CASES} (../shared/testdata)",
    ),
]

PARSE, INVALID = -32700, -32600
PROBE = b'{"jsonrpc":"2.0","method":"echo","params":"probe","id":"probe"}\n'


def as_line(content: bytes) -> bytes:
    """A file's bytes as one message line, with the same JSON verdict (see the module doc)."""
    return content.replace(b"\n", b"\t").replace(b"\r", b"\t") + b"\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def reference_parse(content: bytes) -> tuple[bool, Any]:
    """(parsed?, value) by the strict reference: UTF-8, RFC 8259, no NaN or Infinity."""
    try:
        return True, json.loads(content.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value (PROTOCOL.md §4)."""
    return value not in (None, False, 0, "") or isinstance(value, list | dict)


def null_id_error(reply: Any) -> Any:
    """The code of an error reply with ``"id":null`` (as owed to a bad line), else None."""
    if isinstance(reply, dict) and set(reply) == {"jsonrpc", "id", "error"}:
        error = reply["error"]
        if reply["id"] is None and isinstance(error, dict) and isinstance(error["message"], str):
            return error.get("code")
    return None


def accepted_reply_ok(parsed: bool, value: Any, replies: list[Any]) -> bool:
    """Whether ``replies`` are what an accepted (parsed) line is owed."""
    one_invalid = len(replies) == 1 and null_id_error(replies[0]) == INVALID
    if parsed and isinstance(value, dict):
        if not truthy(value.get("method")):
            return replies == []  # a response to no request: ignored
        # A request or notification: whatever it gets, it is not a parse error.
        return all(null_id_error(r) != PARSE for r in replies)
    if parsed:
        return one_invalid
    # Our reference rejects it and the server took it (an i_ case): still one of those.
    return replies == [] or one_invalid


async def exchange(peer: RawPeer, line: bytes) -> list[Any] | None:
    """Send ``line`` and a probe; the replies before the probe's, or None if the server closed
    the connection."""
    await peer.send(line + PROBE)
    replies: list[Any] = []
    while True:
        raw = await peer.read_line()
        if not raw:
            return None
        reply = parse_line(raw)
        if isinstance(reply, dict) and reply.get("id") == "probe":
            assert reply == {"jsonrpc": "2.0", "id": "probe", "result": "probe"}, reply
            return replies
        replies.append(reply)


def corpus() -> list[tuple[str, bytes]]:
    """Every file of the corpus, by name: (name, content)."""
    return [(path.name, path.read_bytes()) for path in sorted(CASES.iterdir())]


async def check_file(peer: RawPeer, name: str, content: bytes, counts: Counter[str]) -> Any:
    """Send one file; True if the server's answer is right, else the replies (None: the
    server closed the connection)."""
    kind = name[:2]
    counts["tried"] += 1
    line = as_line(content)
    replies = await exchange(peer, line)
    if replies is None:
        return None
    rejected = len(replies) == 1 and null_id_error(replies[0]) == PARSE
    parsed, value = reference_parse(content)
    if kind == "n_":
        if not line.strip():
            ok = replies == []  # a blank line: ignored (B27)
            counts["n blank, ignored"] += ok
        else:
            ok = rejected
            counts["n rejected"] += ok
    elif kind == "y_":
        ok = parsed and not rejected and accepted_reply_ok(parsed, value, replies)
        counts["y accepted"] += ok
    else:
        ok = rejected or accepted_reply_ok(parsed, value, replies)
        counts["i rejected" if rejected else "i accepted"] += ok
    return True if ok else replies


async def test_jsontestsuite(jitpc_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus()
    counts: Counter[str] = Counter()
    wrong: list[str] = []

    def on_client(client: jitpc.Client) -> None:
        client.respond("echo", lambda params: params)

    server = await jitpc.listen(jitpc_id, on_client=on_client, spindown=False)
    assert server is not None
    async with server, jitpc.connect(jitpc_id) as other:
        index = 0
        while index < len(files):
            async with raw_peer(jitpc_id) as peer:
                while index < len(files):
                    name, content = files[index]
                    index += 1
                    ok = await check_file(peer, name, content, counts)
                    if ok is None:  # only an oversize line may close it, and none is
                        counts["connection closed"] += 1
                        wrong.append(f"{name}: the server closed the connection")
                        break  # and reconnect
                    if ok is not True:
                        wrong.append(f"{name}: {ok!r:.300}")
                    # Another client, on its own connection, is still served.
                    try:
                        answer = await other.request("echo", index)
                    except jitpc.JitpcError as exc:
                        answer = exc
                    if answer != index:
                        counts["server deaths"] += 1
                        wrong.append(f"{name}: the server stopped answering: {answer!r}")
                        index = len(files)  # nothing more to learn
    by_kind = Counter(name[:2] for name, _ in files)
    summary = (
        f"JSONTestSuite: {counts['tried']} tried; y accepted {counts['y accepted']}/"
        f"{by_kind['y_']}; n rejected {counts['n rejected']}/{by_kind['n_']} "
        f"(+{counts['n blank, ignored']} blank, ignored); i accepted {counts['i accepted']}, "
        f"rejected {counts['i rejected']} (of {by_kind['i_']}); connections closed "
        f"{counts['connection closed']}; server deaths {counts['server deaths']}"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert not wrong, "\n".join([summary, *wrong])
    assert counts["tried"] == len(files) == 318, summary
    assert counts["y accepted"] == by_kind["y_"], summary
    assert counts["n rejected"] + counts["n blank, ignored"] == by_kind["n_"], summary
    assert counts["n blank, ignored"] == 2, summary
    assert counts["i accepted"] + counts["i rejected"] == by_kind["i_"], summary
    assert counts["server deaths"] == counts["connection closed"] == 0, summary
