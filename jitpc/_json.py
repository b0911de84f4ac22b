"""JSON as jitpc reads and writes it: one parser's limits, and a writer that keeps to them.

The reader is pydantic's parser (strict JSON, at most :data:`MAX_DEPTH` deep, no integer over
4,300 digits), with the json module as a second chance for escaped lone surrogates, held to
the same depth. :func:`dump` never writes what that reader refuses.

Global state: a cache of at most 4,096 pydantic serializers by type, filled as types are first
seen; it never changes what is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from pydantic_core import PydanticSerializationError, from_json, to_json

__all__ = ["MAX_DEPTH", "dump", "encode", "reject_constant", "second_chance", "too_deep"]

#: The deepest nesting read, as pydantic's parser counts it: the message object is level 1,
#: and every value inside a level is the next one, scalars too (``[[1]]`` has 3).
MAX_DEPTH: Final = 201
#: The longest integer read (Python's and pydantic's default limit).
MAX_DIGITS: Final = 4300


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests deeper than ``limit`` levels, counted as pydantic's parser
    counts them (for the second parser, which would read deeper than the first; and for the
    CLI's params). No recursion: the value may be nested nearly as deep as the stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True  # (a scalar is a level too, as pydantic counts)
        if type(node) is dict:
            stack.extend((child, depth + 1) for child in node.values())
        elif type(node) is list:
            stack.extend((child, depth + 1) for child in node)
    return False


def second_chance(line: bytes | bytearray, exc: ValueError) -> Any:
    """Parse a line pydantic's parser refused with ``exc``, if the second parser may; raise
    ValueError with the reason otherwise.

    pydantic's parser rejects escaped lone surrogates ("\\ud800"), which Node's JSON.stringify
    writes and JSON.parse accepts: such lines get a second chance (not one too deep for
    pydantic: the limit must be the same on both paths).
    """
    if b"\\u" not in line or "recursion limit" in str(exc):
        raise exc
    # Decode strictly first: json.loads(bytes) would also take UTF-16, a BOM and
    # UTF-8-encoded surrogates.
    try:
        value = json.loads(bytes(line).decode(), parse_constant=reject_constant)
    except RecursionError as deep:
        raise ValueError(str(deep)) from None
    if too_deep(value):
        raise ValueError(f"nesting deeper than {MAX_DEPTH}")
    return value


def reject_constant(name: str) -> Any:
    """For ``json.loads(parse_constant=...)``: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


try:
    import orjson
except ImportError:  # the optional fast path (jitpc[fast])
    _fast_dumps: Callable[..., bytes] | None = None
    _FAST_OPTIONS = 0
else:
    _fast_dumps = orjson.dumps
    # Only plain JSON values: what pydantic would write differently (datetimes, dataclasses,
    # subclasses of str or dict...) is declined, and goes the pydantic way.
    _FAST_OPTIONS = (
        orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )

# type -> its pydantic serializer, or None for anything that is not a pydantic model.
_serializers: dict[type, Any] = {}


def _new_serializer(tp: type) -> Any:
    """The serializer of a type not in ``_serializers`` yet (callers look there first: a call
    less per message)."""
    # Its own serializer, as pydantic sets one on each model class (and pydantic dataclass):
    # no isinstance(BaseModel), which would import pydantic (and is an ABC check, slow here).
    ser = tp.__dict__.get("__pydantic_serializer__")
    if len(_serializers) < 4096:
        _serializers[tp] = ser
    return ser


# -- what is written can be read ---------------------------------------------------------------
#
# Written as a message's params or result, a value is one level down: it may nest 200 deep.
# Checking costs nothing for the usual short message, a memchr scan for a long one, and a
# second encode only for a long one with many brackets (a list of records, say): never a
# parse, but to decide the rare case at the limit.

#: Output shorter than this cannot nest too deep (that takes 200 brackets and their closers)
#: nor hold too long an integer.
_SHORT: Final = 2 * (MAX_DEPTH - 1)
#: Wrapped in this many lists, a value too deep for the reader is too deep for the writer
#: too: pydantic's serializer refuses past 255 levels, counted as the reader counts them.
_PYDANTIC_WRAP: Final = 255 - (MAX_DEPTH - 1)
#: orjson refuses past 254 containers (it does not count a scalar): wrapped in this many, it
#: refuses every value too deep, and a few at the limit, which are then read back.
_ORJSON_WRAP: Final = 254 - (MAX_DEPTH - 2)
#: A run of more than MAX_DIGITS digits covers two samples this far apart and all between.
_STRIDE: Final = (MAX_DIGITS + 1) // 2
_TWO_DIGITS = re.compile(rb"(?=[0-9][0-9])")
_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (_STRIDE + 1))


_TOO_DEEP: Final = f"it would nest deeper than {MAX_DEPTH} levels in a message"


def _refused(reason: str) -> TypeError:
    return TypeError(f"cannot encode as JSON a reader takes: {reason}")


def _few_brackets(data: bytes) -> bool:
    """Whether ``data`` has too few brackets to nest too deep (brackets in strings count too:
    a quick answer, and a safe one; find() is memchr, count() five times slower)."""
    left = MAX_DEPTH - 2  # the message object, and the innermost scalar
    for bracket in (b"[", b"{"):
        at = data.find(bracket)
        while at >= 0:
            left -= 1
            if left < 0:
                return False
            at = data.find(bracket, at + 1)
    return True


def _wrapped(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def _may_hold_a_long_integer(data: bytes) -> bool:
    """Whether ``data`` has a run of more than MAX_DIGITS digits (in a number or a string)."""
    samples = data[::_STRIDE]
    for pair in _TWO_DIGITS.finditer(samples):
        if _DIGIT_RUN.match(data, pair.start() * _STRIDE) is not None:
            return True
    return False


def _read_back(data: bytes) -> None:
    """Read ``data`` as the reader would, one level down (the exact check, and the slow one).

    Raises:
        TypeError: the reader would refuse it.
    """
    line = b"[%b]" % data
    try:
        from_json(line, allow_inf_nan=False)
    except ValueError as exc:
        try:
            second_chance(line, exc)
        except ValueError as refused:
            reason = str(refused)
            if "recursion limit" in reason or "nesting deeper" in reason:
                raise _refused(_TOO_DEEP) from None
            if "number out of range" in reason:
                raise _refused(f"an integer has more than {MAX_DIGITS:,} digits") from None
            raise _refused(reason) from None


def _check_fast(plain: Any, out: bytes) -> None:
    """Refuse ``out``, orjson's encoding of ``plain``, if the reader would (orjson writes no
    integer past 64 bits, so only the depth is in question)."""
    assert _fast_dumps is not None
    if not _few_brackets(out):
        try:
            _fast_dumps(_wrapped(plain, _ORJSON_WRAP), option=_FAST_OPTIONS)
        except TypeError:
            _read_back(out)  # too deep, or just at the limit


def _check_pydantic(value: Any, out: bytes) -> None:
    """Refuse ``out``, pydantic's encoding of ``value``, if the reader would."""
    if not _few_brackets(out):
        try:
            to_json(_wrapped(value, _PYDANTIC_WRAP), inf_nan_mode="null", by_alias=True)
        except PydanticSerializationError as exc:
            if "depth" in str(exc):
                raise _refused(_TOO_DEEP) from None
    if len(out) > MAX_DIGITS and _may_hold_a_long_integer(out):
        _read_back(out)


def dump(value: Any) -> bytes:
    """One JSON value, compact. A pydantic model is written by its own serializer, by alias
    (as it validates); anything else by pydantic's general encoder, non-finite floats as
    ``null`` (as JSON.stringify does). With orjson installed (``jitpc[fast]``), orjson writes
    the plain JSON values, ten times faster on long strings; anything it declines takes the
    pydantic path, so the output means the same either way.

    What is written can be read: a value that, as a message's params or result, would nest
    deeper than :data:`MAX_DEPTH` or hold an integer over 4,300 digits is refused.

    Raises:
        TypeError: ``value`` cannot be written as JSON (an unknown type, say), or not as JSON
            the reader takes.
    """
    # (One function, not a wrapper around a second: a call more per message is ~300
    # instructions on the hottest path.)
    try:
        tp = type(value)
        ser = _serializers[tp] if tp in _serializers else _new_serializer(tp)
        if _fast_dumps is not None:
            try:
                plain = value if ser is None else ser.to_python(value, mode="json", by_alias=True)
                out = _fast_dumps(plain, option=_FAST_OPTIONS)
            except (TypeError, PydanticSerializationError):
                pass  # a big int, a non-str key, a lone surrogate, an unknown type...
            else:
                if len(out) >= _SHORT:
                    _check_fast(plain, out)
                return out
        try:
            if ser is not None:
                out = ser.to_json(value, by_alias=True)
            else:
                out = to_json(value, inf_nan_mode="null", by_alias=True)
        except PydanticSerializationError as exc:
            error = exc
        else:
            if len(out) >= _SHORT:
                _check_pydantic(value, out)
            return out
        if ser is None:
            # A string with a lone surrogate (Node's JSON.parse gives one for "\ud800") is not
            # UTF-8: the json module writes it as the same escape, as JSON.stringify does.
            try:
                out = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError):
                pass
            else:
                if len(out) >= _SHORT and not _few_brackets(out):
                    _read_back(out)  # (the json module refuses a long integer itself)
                return out
        raise TypeError(f"cannot encode as JSON: {error}") from None
    except TypeError:
        raise
    except Exception as exc:
        # A serializer of the user's that raised, a RecursionError...: one bad value must fail
        # its own message, never the connection.
        raise TypeError(f"cannot encode as JSON: {exc!r}") from exc


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of compact JSON (see :func:`dump`)."""
    return dump(message) + b"\n"
