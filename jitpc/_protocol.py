"""The jitpc protocol core: bytes in, events out; calls in, bytes out. No I/O.

This module never touches a socket, a file or an event loop, so it can be tested byte by byte
and reused by any I/O layer. The integration contract:

* Feed every chunk read from the connection to :meth:`Peer.receive_data` and, at end of stream,
  call :meth:`Peer.receive_eof`. Both return the :data:`Event` objects that the bytes completed,
  in order.
* Call :meth:`Peer.send_request`, :meth:`Peer.send_notification`, :meth:`Peer.send_result` and
  :meth:`Peer.send_error` to queue outgoing messages. They only encode and queue.
* After either kind of call, write whatever :meth:`Peer.data_to_send` returns. The core queues
  replies of its own (a parse error for a line that is not JSON, for example), so check it after
  receiving too.
* When :attr:`Peer.state` becomes :attr:`State.FAILED` (a message over the size limit), write
  the queued bytes and close the connection: the rest of that line must never be read.
* :meth:`Peer.send_request` takes an opaque ``waiter`` (the I/O layer's future, say) and the
  core keeps it until the answer: a :class:`Response` or :class:`ErrorResponse` carries the
  waiter of the request it answers (``None`` when it answers nothing outstanding).
  :meth:`Peer.cancel` gives a request up: the peer is told (:data:`CANCEL_METHOD`) and a late
  answer is dropped here, without an event. :meth:`Peer.abandon` hands back every waiter still
  outstanding, for the I/O layer to fail when the connection ends.
* An I/O layer that validates some requests faster from their bytes (jitpc's typed methods)
  names their methods in :attr:`Peer.whole`: of a read of several lines, such a request comes
  as a :class:`Whole` event, its line unparsed, in order; what the layer does not take it hands
  to :meth:`Peer.read_line`. A read of one line it checks itself first, with
  :meth:`Peer.request_of`, and answers with :meth:`Peer.send_answer`. For the results of its
  own requests, it gives :meth:`Peer.send_request` a ``reader`` that validates a result from
  its bytes: a result line written as jitpc or Node writes one comes as a :class:`Response`
  of what the reader returned (or parsed, as always, if it raised); a read of one line it
  hands to :meth:`Peer.take_result` first.

Global state: a cache of at most 4,096 method names as JSON, filled as names are first seen;
it never changes what is written. The request and result patterns, compiled at first use.
And the JSON codec: the json module's (:mod:`._stdjson`) until a Peer is made once
pydantic_core is loaded, pydantic's (:mod:`._json`) from then on; the two take the same texts.

Wire rules (PROTOCOL.md §3-§4, relaxed JSON-RPC 2.0):

1. A message is one JSON object on one line; ``\\r\\n`` is accepted; a blank line is ignored.
2. An object with a truthy ``method`` is a request when its ``id`` is truthy and a notification
   otherwise (Node sends ``"id":0`` for notifications). Any other object is a response.
   "Truthy" is JavaScript's: ``{}`` and ``[]`` are true, ``0``, ``""``, ``false``, ``null`` not.
3. A response with a truthy ``error`` is an error response; otherwise its ``result`` (absent
   means ``null``) is the outcome.
4. A line that is not JSON is answered with a -32700 error, and JSON that is not a message with
   -32600, both with ``"id":null``; the connection stays usable because the framing is intact.
"""

from __future__ import annotations

import enum
import json
import re
import sys

from ._errors import InvalidRequest, ParseError, ProtocolError, RemoteError
from ._stdjson import loads as _plain_loads
from ._stdjson import plain_dump, second_chance

TYPE_CHECKING = False  # (not typing's: an untyped one-shot call need not import it, ~5 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final

__all__ = [
    "CANCEL_METHOD",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SPLIT_MAX",
    "BadMessage",
    "CancelRequest",
    "ErrorResponse",
    "Event",
    "Notification",
    "Peer",
    "Request",
    "Response",
    "State",
    "Whole",
    "head_id",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: The notification that gives a request up: ``{"method": "$/cancelRequest", "params": {"id":
#: ID}}``, LSP's name and shape. A jitpc peer cancels the handler (or never starts it) and
#: answers -32800 once; a Node jitpc peer ignores it.
CANCEL_METHOD: Final = "$/cancelRequest"
#: Cancelled ids whose late answers are still dropped quietly; the oldest are forgotten first.
MAX_CANCELLED: Final = 4096

# Events are plain slotted classes: not frozen (frozen costs 396 ns a message against 129 ns,
# measured, on the hottest path), and not dataclasses, whose import and class creation cost a
# fresh interpreter ~11 ms, a fifth of an untyped one-shot call.


class _Event:
    """What the events share: equality and a repr by their fields (as a dataclass's)."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass that has __eq__

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Request(_Event):
    """The peer asks us to run ``method`` and answer with its ``id``. Don't subclass."""

    __slots__ = ("id", "method", "params")

    def __init__(self, id: Any, method: str, params: Any) -> None:
        self.id = id
        self.method = method
        self.params = params


class Notification(_Event):
    """The peer asks us to run ``method`` and expects no answer. Don't subclass."""

    __slots__ = ("method", "params")

    def __init__(self, method: str, params: Any) -> None:
        self.method = method
        self.params = params


class Response(_Event):
    """The peer answered our request ``id`` with a result; ``waiter`` is what
    :meth:`Peer.send_request` was given for it (``None``: no such request outstanding). Don't
    subclass."""

    __slots__ = ("id", "result", "waiter")

    def __init__(self, id: Any, result: Any, waiter: Any = None) -> None:
        self.id = id
        self.result = result
        self.waiter = waiter


class ErrorResponse(_Event):
    """The peer answered our request ``id`` (or ``None``: a message it could not read) with an
    error; ``waiter`` as for :class:`Response`. Don't subclass."""

    __slots__ = ("error", "id", "waiter")

    def __init__(self, id: Any, error: RemoteError | ProtocolError, waiter: Any = None) -> None:
        self.id = id
        #: The peer's error; a :class:`ProtocolError` when its answer could not be read.
        self.error = error
        self.waiter = waiter


class CancelRequest(_Event):
    """The peer gives up its request ``id`` (a :data:`CANCEL_METHOD` notification). Don't
    subclass."""

    __slots__ = ("id",)

    def __init__(self, id: Any) -> None:
        self.id = id


class BadMessage(_Event):
    """The peer sent something that is not a message; ``fatal`` means the connection must close.

    Any reply owed has already been queued. Don't subclass.
    """

    __slots__ = ("fatal", "reason")

    def __init__(self, reason: str, fatal: bool = False) -> None:
        self.reason = reason
        self.fatal = fatal


class Whole(_Event):
    """A request line left unparsed, for a method in :attr:`Peer.whole` (its ``route``, the I/O
    layer's own value), as :meth:`Peer.request_of` splits one: the start of its answer
    (``head``, for :meth:`Peer.send_answer`) and its params as written. The I/O layer reads the
    params itself, or hands the ``line`` to :meth:`Peer.read_line`. Don't subclass."""

    __slots__ = ("head", "line", "params", "route")

    def __init__(self, line: bytes, route: Any, head: bytes, params: bytes) -> None:
        self.line = line
        self.route = route
        self.head = head
        self.params = params


Event = Request | Notification | Response | ErrorResponse | CancelRequest | BadMessage | Whole


class State(enum.IntEnum):
    """Where a :class:`Peer` stands. Only ``OPEN`` reads."""

    OPEN = 1
    #: The stream ended (:meth:`Peer.receive_eof`).
    CLOSED = 2
    #: The peer broke the framing (a line over the limit): close the connection.
    FAILED = 3


# The members as module constants: ``State.OPEN`` is a lookup on the enum class, ~85 ns on
# CPython 3.11 against ~5 ns for a global, on the hottest path.
_OPEN, _CLOSED, _FAILED = State


_VERSION: Final = "2.0"
#: How jitpc begins an answer: its id follows (at byte 22).
_ANSWER_HEAD: Final = b'{"jsonrpc":"2.0","id":'

_MISSING: Final = object()


def _truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value, as Node jitpc tests it: ``{}`` and ``[]`` are
    true; ``null``, ``false``, ``0`` and ``""`` are not."""
    if type(value) is int:
        return value != 0
    return value is not None and value is not False and value != 0 and value != ""


_ID = rb'(-?[0-9]{1,20}|"(?:[^"\\]|\\.){0,256}")'
# jitpc writes the id first; Node's JSON.stringify({method, params, id}) or ({result, error,
# id}) writes it last. Compiled at first use (re caches them): compiling costs an import 2 ms,
# and only an unreadable line needs them.
_JITPC_HEAD = rb'\{"jsonrpc":"2\.0","id":' + _ID + rb',"(method|result|error)":'
_NODE_TAIL = rb'"id":' + _ID + rb"\}\s*$"
_NODE_HEAD = rb'\{"(method|result|error)":'


def _guess(line: bytes | bytearray) -> tuple[str, Any]:
    """Whether an unreadable line looks like a request or a response, and its id."""
    head = re.compile(_JITPC_HEAD).match(line)
    if head is not None:
        token, field = head.group(1), head.group(2)
    else:
        first = re.compile(_NODE_HEAD).match(line)
        tail = re.compile(_NODE_TAIL).search(line, max(0, len(line) - 300))
        if first is None or tail is None:
            return "", None
        token, field = tail.group(1), first.group(1)
    try:
        id_ = json.loads(token)
    except ValueError:
        return "", None
    return ("request" if field == b"method" else "response"), id_


# The JSON reader and writer: the json module's until pydantic_core is loaded (see ._stdjson;
# the same texts either way, so a connection may switch mid-stream). Globals, not attributes
# of each Peer: calling an attribute costs ~400 instructions a request more (callgrind).
def _plain_dump(value: Any) -> bytes:
    """:func:`._json.dump`'s output, by the json module when it can (``_stdjson``)."""
    out = plain_dump(value)
    if out is None:
        from ._json import dump  # pydantic's way decides, as without the json module

        return dump(value)
    return out


def _codec() -> tuple[Callable[..., Any], Callable[[Any], bytes]]:
    """The reader and writer: pydantic's if pydantic_core is loaded, else the json module's."""
    if "pydantic_core" in sys.modules:
        from ._json import dump, from_json

        return from_json, dump
    return _plain_loads, _plain_dump


_loads, _dump = _codec()


# A request line as jitpc writes one, and as Node does (PROTOCOL.md §3), split without parsing
# (see Peer.request_of): an integer id from 1, a method name without escapes, the params as
# written up to the brace that ends the line. Whatever else a line is, it does not match.
_NAME = rb'"([^"\\\x00-\x1f]+)"'  # (no escape, no control character: JSON as it is written)
_JITPC_REQUEST = (
    rb'(\{"jsonrpc":"2\.0","id":[1-9][0-9]{0,19}),"method":' + _NAME + rb',"params":(.*)\}'
)
_NODE_REQUEST = rb'\{"method":' + _NAME + rb',"params":(.*),"id":([1-9][0-9]{0,19})\}'
# A result as jitpc writes one, and as Node does (see Peer.take_result): the same ids, the result
# as written up to the end of the line.
_JITPC_RESULT = rb'\{"jsonrpc":"2\.0","id":([1-9][0-9]{0,19}),"result":(.*)\}'
_NODE_RESULT = rb'\{"result":(.*),"error":null,"id":([1-9][0-9]{0,19})\}'
#: The longest read or line split so: the patterns scan the params (or result) byte by byte.
SPLIT_MAX: Final = 64 * 1024

_forms: tuple[Any, Any, Any, Any, Any, Any, Any, Any] | None = None


def _request_forms() -> tuple[Any, Any, Any, Any, Any, Any, Any, Any]:
    """The patterns' ``match``: requests of a read (the line and its newline), of a line; then
    results of a read, of a line. Compiled at first use: an untyped peer never needs them
    (compiling costs an import ~1 ms)."""
    global _forms
    if _forms is None:
        _forms = (
            re.compile(_JITPC_REQUEST + rb"\n\Z").match,
            re.compile(_NODE_REQUEST + rb"\n\Z").match,
            re.compile(_JITPC_REQUEST + rb"\Z").match,
            re.compile(_NODE_REQUEST + rb"\Z").match,
            re.compile(_JITPC_RESULT + rb"\n\Z").match,
            re.compile(_NODE_RESULT + rb"\n\Z").match,
            re.compile(_JITPC_RESULT + rb"\Z").match,
            re.compile(_NODE_RESULT + rb"\Z").match,
        )
    return _forms


def head_id(head: bytes) -> int:
    """The id of the request whose answer begins with ``head`` (see :meth:`Peer.request_of`)."""
    return int(head[len(_ANSWER_HEAD) :])


def _split_line(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A request line's (answer head, method, params), as :meth:`Peer.request_of` splits a
    read, for a line of a read that held several."""
    forms = _forms or _request_forms()
    found = forms[2](line)
    if found is not None:
        return found.groups()  # type: ignore[no-any-return]
    found = forms[3](line)
    if found is not None:
        method, params, id_ = found.groups()
        return _ANSWER_HEAD + id_, method, params
    return None


_method_names: dict[str, bytes] = {}


def _new_method_json(method: str) -> bytes:
    """A method name as JSON, for a name not in ``_method_names`` yet (callers look there
    first)."""
    encoded = _plain_dump(method)
    if len(_method_names) < 4096:
        _method_names[method] = encoded
    return encoded


class Peer:
    """One end of a jitpc connection, without the I/O.

    Args:
        max_message_bytes: the longest line accepted; a longer one is answered with a -32600
            error and fails the connection.
    """

    __slots__ = (
        "_buf",
        "_cancelled",
        "_next_id",
        "_outgoing",
        "_outstanding",
        "max_message_bytes",
        "state",
        "result_readers",
        "whole",
    )

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self._buf = bytearray()  # the partial last line
        self._outgoing: list[bytes] = []
        self._next_id = 1
        #: Our requests not answered yet: id -> waiter.
        self._outstanding: dict[int, Any] = {}
        #: Requests we gave up, whose late answers are dropped (a dict: insertion order).
        self._cancelled: dict[int, None] = {}
        self.state = _OPEN
        #: Methods whose request lines, when a read holds several lines, come out unparsed as
        #: :class:`Whole` events: the method name as written -> the I/O layer's route. (A read
        #: of one line is the I/O layer's to check first: see :meth:`request_of`.)
        self.whole: dict[bytes, Any] = {}
        #: Our requests sent with a ``reader`` (see :meth:`send_request`): id -> reader. An
        #: entry goes when its request is answered or given up. Read it, don't change it.
        self.result_readers: dict[int, Any] = {}
        global _loads, _dump
        if _dump is _plain_dump and "pydantic_core" in sys.modules:
            _loads, _dump = _codec()  # from now on, pydantic's: it is loaded anyway

    @property
    def pending_messages(self) -> int:
        """How many messages are queued for :meth:`data_to_send`."""
        return len(self._outgoing)

    @property
    def outstanding(self) -> int:
        """How many of our requests await their answer."""
        return len(self._outstanding)

    @property
    def failed(self) -> bool:
        """Whether the peer broke the framing (``state is _FAILED``)."""
        return self.state is _FAILED

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Take bytes read from the connection; return the events they complete."""
        if self.state is not _OPEN or not data:
            return []
        limit = self.max_message_bytes
        buf = self._buf
        first = data.find(b"\n")
        if first == len(data) - 1 and not buf and first <= limit:
            # The usual read: exactly one whole line. The parser skips the trailing newline
            # (JSON whitespace), so the line is not even copied.
            event = self._receive_line(data)
            return [] if event is None else [event]
        if first < 0:
            # Only the new bytes are scanned, and appended in place: a message that trickles
            # in costs linear time, not quadratic.
            buf += data
            return [self._too_large()] if len(buf) > limit else []
        if buf:
            buf += memoryview(data)[:first]
            lines: list[bytes | bytearray] = [buf]  # the parser reads a bytearray as it is
            self._buf = bytearray()
        else:
            lines = [data[:first]]
        last = data.rfind(b"\n")
        if last != first:
            # split() does not use memchr, so it only gets the (short) lines in between.
            lines.extend(data[first + 1 : last].split(b"\n"))
        events: list[Event] = []
        whole = self.whole
        readers = self.result_readers
        if readers:
            # Bound only here, and read only while `readers` is non-empty: nothing in the loop
            # adds a reader (send_request does), so an empty dict stays empty to the end.
            forms = _forms or _request_forms()
            results = forms[6], forms[7]
        for line in lines:
            if len(line) > limit:
                events.append(self._too_large())
                return events
            if whole and type(line) is bytes and len(line) <= SPLIT_MAX:
                split = _split_line(line)
                if split is not None:
                    route = whole.get(split[1])
                    if route is not None:
                        events.append(Whole(line, route, split[0], split[2]))
                        continue
            if readers and type(line) is bytes and len(line) <= SPLIT_MAX:
                found = results[0](line)
                if found is not None:
                    digits, result = found.groups()
                else:
                    found = results[1](line)
                    if found is not None:
                        result, digits = found.groups()
                if found is not None:
                    # (take_result's steps written out, as it writes them, with the line's two
                    # result forms inline: 900 instructions a result fewer, callgrind.)
                    id_ = int(digits)
                    reader = readers.get(id_)
                    if reader is not None:
                        try:
                            value = reader(result)
                        except Exception:  # (refused: parsed below, as any other line)
                            pass
                        else:
                            del readers[id_]
                            events.append(Response(id_, value, self._outstanding.pop(id_)))
                            continue
            event = self._receive_line(line)
            if event is not None:
                events.append(event)
        if last + 1 < len(data):
            rest = self._buf
            rest += memoryview(data)[last + 1 :]
            if len(rest) > limit:
                events.append(self._too_large())
        return events

    def request_of(self, data: bytes) -> tuple[bytes, Any, bytes] | None:
        """Split ``data``, if it is one whole request line this Peer would read at once, for a
        method in :attr:`whole`, written as jitpc or Node writes a request (an integer id, the
        method name without escapes, params): ``(head, route, params)``, ``head`` the start of
        its answer (for :meth:`send_answer`), ``params`` as written. Else ``None``. Nothing is
        taken.

        For an I/O layer that can read some methods' params faster itself (jitpc's typed
        methods): the line is matched, not parsed, so the layer must check the params whole,
        and hand anything it does not take to :meth:`receive_data`.
        """
        n = len(data)
        if self._buf or self.state is not _OPEN or n > SPLIT_MAX or n > self.max_message_bytes:
            return None
        forms = _forms or _request_forms()
        # (_split_line's two forms written out, for a read's patterns: a call less per typed
        # request, 800 instructions of 7,000, callgrind.)
        found = forms[0](data)
        if found is not None:
            head, method, params = found.groups()
        else:
            found = forms[1](data)
            if found is None:
                return None
            method, params, id_ = found.groups()
            head = _ANSWER_HEAD + id_
        route = self.whole.get(method)
        return None if route is None else (head, route, params)

    def take_result(self, data: bytes) -> tuple[Any, Any] | None:
        """Read ``data``, if it is one whole result line this Peer would read at once, written
        as jitpc or Node writes a result (an integer id, ``result``, nothing else), for a
        request sent with a ``reader`` that takes the result as written: the request is
        answered, and ``(waiter, what the reader returned)`` returned. Else ``None``, and
        nothing is taken: hand ``data`` to :meth:`receive_data`.
        """
        n = len(data)
        if self._buf or self.state is not _OPEN or n > SPLIT_MAX or n > self.max_message_bytes:
            return None
        forms = _forms or _request_forms()
        # (The two result forms, for a read's patterns, and the reader's steps written out here
        # and in receive_data rather than shared: each call is 1,000 instructions a result
        # more, callgrind, as in request_of.)
        found = forms[4](data)
        if found is not None:
            digits, result = found.groups()
        else:
            found = forms[5](data)
            if found is None:
                return None
            result, digits = found.groups()
        id_ = int(digits)
        readers = self.result_readers
        reader = readers.get(id_)
        if reader is None:
            return None
        try:
            value = reader(result)
        except Exception:  # (a ValidationError, or a validator's own error)
            return None
        del readers[id_]
        return self._outstanding.pop(id_), value

    def read_line(self, line: bytes) -> Event | None:
        """The event of one line, as :meth:`receive_data` would give it parsed (``None`` for a
        blank line, or a late answer dropped): for the line of a :class:`Whole` event that the
        I/O layer did not take."""
        return self._receive_line(line)

    def receive_eof(self) -> list[Event]:
        """The peer will send nothing more. Idempotent; a partial last line is dropped."""
        if self.state is not _OPEN:
            return []
        self.state = _CLOSED
        partial = self._buf.strip()
        self._buf = bytearray()
        if partial:
            return [BadMessage("the stream ended in the middle of a message")]
        return []

    def _too_large(self) -> BadMessage:
        self.state = _FAILED
        self._buf = bytearray()
        reason = f"message larger than {self.max_message_bytes} bytes"
        self._queue_error(None, InvalidRequest(reason))
        return BadMessage(reason, fatal=True)

    def _receive_line(self, line: bytes | bytearray) -> Event | None:
        # A trailing "\r" or "\n" is JSON whitespace: the parsers skip it.
        try:
            msg = _loads(line, allow_inf_nan=False)
        except ValueError as exc:
            if not line.strip():
                return None  # a blank line
            try:
                msg = second_chance(line, exc)
            except ValueError as refused:
                return self._unreadable(line, f"invalid JSON: {refused}")
        if type(msg) is not dict:
            reason = f"a message must be a JSON object, not {type(msg).__name__}"
            self._queue_error(None, InvalidRequest(reason))
            return BadMessage(reason)
        method = msg.get("method")
        if type(method) is str and method:  # the usual request or notification
            id_ = msg.get("id")
            if type(id_) is int or type(id_) is str:
                if id_:
                    return Request(id_, method, msg.get("params"))
            elif _truthy(id_) and type(id_) is not float:
                # JSON-RPC ids are strings or numbers: {} or [] or true cannot be answered.
                reason = f"id must be a string or a number, not {id_!r}"
                self._queue_error(None, InvalidRequest(reason))
                return BadMessage(reason)
            elif id_:
                return Request(id_, method, msg.get("params"))
            if method == CANCEL_METHOD:
                params = msg.get("params")
                if type(params) is dict and "id" in params:
                    return CancelRequest(params["id"])
            return Notification(method, msg.get("params"))
        if method is not None and _truthy(method):
            id_ = msg.get("id")
            reason = f"method must be a string, not {method!r}"
            echo = id_ if type(id_) in (int, float, str) and _truthy(id_) else None
            self._queue_error(echo, InvalidRequest(reason))
            return BadMessage(reason)
        id_ = msg.get("id")
        if type(id_) is int:
            waiter = self._outstanding.pop(id_, None)
            if self.result_readers:
                self.result_readers.pop(id_, None)
            if waiter is None and id_ in self._cancelled:
                del self._cancelled[id_]  # the late answer to a request we gave up
                return None
        else:
            waiter = None
        error = msg.get("error")
        if error is not None and _truthy(error):
            return ErrorResponse(id_, RemoteError.from_wire(error), waiter)
        return Response(id_, msg.get("result"), waiter)

    def _unreadable(self, line: bytes | bytearray, reason: str) -> Event | None:
        """A line that is not JSON we can read; if it is recognisably a message, fail or
        answer the request it belongs to, so that none waits for an answer that never comes.

        (A value jitpc or Node can write but this parser refuses: nesting deeper than the
        limit, an integer over 4,300 digits.) Only the framing of the two known writers is
        recognised: jitpc's ``{"jsonrpc":"2.0","id":ID,...`` and Node's ``{...,"id":ID}``.
        """
        kind, id_ = _guess(line)
        if kind == "response" and type(id_) is int:
            if id_ in self._outstanding:
                waiter = self._outstanding.pop(id_)
                self.result_readers.pop(id_, None)
                error = ProtocolError(f"the answer to request {id_} cannot be read: {reason}")
                return ErrorResponse(id_, error, waiter)
            if id_ in self._cancelled:
                del self._cancelled[id_]
                return None
        if kind == "request" and _truthy(id_):
            self._queue_error(id_, ParseError(reason))  # the peer's request fails, with its id
        else:
            self._queue_error(None, ParseError(reason))
        return BadMessage(reason)

    # -- sending -----------------------------------------------------------------------------

    def send_request(
        self,
        method: str,
        params: Any = None,
        waiter: Any = None,
        now: bool = False,
        reader: Any = None,
    ) -> tuple[int, bytes]:
        """Queue a request; return its id, which the response will carry with ``waiter``, and
        ``b""``; or, with ``now`` and nothing queued before it, its id and the line itself, not
        queued, for the caller to write at once (a request sent alone, written as it is made).

        ``reader``, if given, validates the result from its bytes (a callable taking the result
        as written; raising any Exception refuses it): a result line as jitpc or Node writes
        one comes as a :class:`Response` of what it returns (see :meth:`take_result`), and
        any other answer, or a result it refuses, as usual, parsed.

        Raises:
            TypeError: ``params`` cannot be written as JSON (nothing is queued then).
        """
        id_ = self._next_id
        name = _method_names[method] if method in _method_names else _new_method_json(method)
        if params is None:
            line = b'{"jsonrpc":"2.0","id":%d,"method":%b}\n' % (id_, name)
        else:
            # A body is joined, never formatted in: formatting copies a long body several
            # times as its buffer grows (0.43 ms against 0.05 ms for 1 MiB).
            head = b'{"jsonrpc":"2.0","id":%d,"method":%b,"params":' % (id_, name)
            line = b"".join((head, _dump(params), b"}\n"))
        self._next_id = id_ + 1
        self._outstanding[id_] = waiter
        if reader is not None:
            self.result_readers[id_] = reader
        if now and not self._outgoing:
            return id_, line
        self._outgoing.append(line)
        return id_, b""

    def cancel(self, id_: int) -> bool:
        """Give up our request ``id_``: queue the cancel notification, and drop its answer if
        it comes. Returns whether it was outstanding (``False``: answered already, or unknown).
        """
        if self._outstanding.pop(id_, _MISSING) is _MISSING:
            return False
        if self.result_readers:
            self.result_readers.pop(id_, None)
        cancelled = self._cancelled
        cancelled[id_] = None
        if len(cancelled) > MAX_CANCELLED:
            del cancelled[next(iter(cancelled))]
        if self.state is _OPEN:
            self.send_notification(CANCEL_METHOD, {"id": id_})
        return True

    def abandon(self) -> list[Any]:
        """Forget every outstanding request (the connection ended); return their waiters."""
        waiters = list(self._outstanding.values())
        self._outstanding.clear()
        self.result_readers.clear()
        return waiters

    def send_notification(self, method: str, params: Any = None) -> None:
        """Queue a notification (a request that gets no response).

        Raises:
            TypeError: ``params`` cannot be written as JSON (nothing is queued then).
        """
        name = _method_names[method] if method in _method_names else _new_method_json(method)
        if params is None:
            self._outgoing.append(b'{"jsonrpc":"2.0","method":%b}\n' % name)
        else:
            head = b'{"jsonrpc":"2.0","method":%b,"params":' % name
            self._outgoing.append(b"".join((head, _dump(params), b"}\n")))

    def send_result(self, id_: Any, result: Any, now: bool = False) -> bytes:
        """Queue the successful response to the peer's request ``id_``; return ``b""``. Or,
        with ``now`` and nothing queued before it, return the line itself, not queued, for
        the caller to write at once (one read's answer, written as it is made).

        Raises:
            TypeError: ``result`` cannot be written as JSON (nothing is queued then).
        """
        body = _dump(result)
        if type(id_) is int:
            head = b'{"jsonrpc":"2.0","id":%d,"result":' % id_
        else:
            head = b'{"jsonrpc":"2.0","id":%b,"result":' % _dump(id_)
        line = b"".join((head, body, b"}\n"))
        if now and not self._outgoing:
            return line
        self._outgoing.append(line)
        return b""

    def send_answer(self, head: bytes, result: Any, now: bool = False) -> bytes:
        """Queue the successful response to a request split by :meth:`request_of` (or given as
        a :class:`Whole` event), by its ``head``: the same bytes as :meth:`send_result`.
        Returns ``b""``; or, with ``now`` and nothing queued before it, the line itself, not
        queued, for the caller to write at once (one read's answer, written as it is made).

        Raises:
            TypeError: ``result`` cannot be written as JSON (nothing is queued then).
        """
        line = b"".join((head, b',"result":', _dump(result), b"}\n"))
        if now and not self._outgoing:
            return line
        self._outgoing.append(line)
        return b""

    def send_error(self, id_: Any, error: RemoteError) -> None:
        """Queue an error response to the peer's request ``id_``.

        An error whose ``data`` cannot be written as JSON is sent without it.
        """
        self._queue_error(id_, error)

    def _queue_error(self, id_: Any, error: RemoteError) -> None:
        wire = error.to_wire()
        try:
            line = _dump({"jsonrpc": _VERSION, "id": id_, "error": wire}) + b"\n"
        except TypeError:
            # Unencodable data, or a lone surrogate in a string: send what can be sent.
            code = error.code if type(error.code) is int else None
            message = error.message.encode("utf-8", "backslashreplace").decode("utf-8")
            error_ = {"code": code, "message": message}
            line = _dump({"jsonrpc": _VERSION, "id": id_, "error": error_}) + b"\n"
        self._outgoing.append(line)

    def data_to_send(self) -> bytes:
        """The bytes queued since the last call (``b""`` if none)."""
        out = self._outgoing
        if not out:
            return b""
        self._outgoing = []
        return out[0] if len(out) == 1 else b"".join(out)
