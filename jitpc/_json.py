"""JSON as jitpc reads and writes it: one parser's limits, and a writer that keeps to them.

The reader is pydantic's parser (strict JSON, at most :data:`MAX_DEPTH` deep, no integer over
4,300 digits), with the json module as a second chance for escaped lone surrogates, held to
the same depth. :func:`dump` never writes what that reader refuses. (Where pydantic_core is not
loaded, connections read and write with the json module instead: :mod:`._stdjson`, which also
holds the limits.)

Global state: a cache of at most 4,096 pydantic serializers by type, filled as types are first
seen, and a set of at most 4,096 model types seen written long (orjson writes those, where it
is installed); neither changes what is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from pydantic_core import PydanticSerializationError, from_json, to_json

from ._stdjson import (
    MAX_DEPTH,
    MAX_DIGITS,
    SHORT,
    few_brackets,
    reject_constant,
    second_chance,
    too_deep,
)

__all__ = [
    "MAX_DEPTH",
    "dump",
    "encode",
    "from_json",
    "reject_constant",
    "second_chance",
    "too_deep",
]

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
#: Model types written once to at least LONG bytes: with orjson, they go its way from then on.
_long_types: set[type] = set()
LONG: Final = 16 * 1024


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
    if not few_brackets(out):
        try:
            _fast_dumps(_wrapped(plain, _ORJSON_WRAP), option=_FAST_OPTIONS)
        except TypeError:
            _read_back(out)  # too deep, or just at the limit


def _check_pydantic(value: Any, out: bytes) -> None:
    """Refuse ``out``, pydantic's encoding of ``value``, if the reader would."""
    if not few_brackets(out):
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
    the plain JSON values, and the models of a type once written :data:`LONG` or longer: ten
    times faster on long strings; anything it declines takes the pydantic path, so the output
    is the same either way.

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
        if ser is not None and tp not in _long_types:
            # A model, by its own serializer at once: for a short text, 1,250 instructions
            # fewer than to_python and orjson (callgrind), the same bytes.
            try:
                out: bytes = ser.to_json(value, by_alias=True)
            except PydanticSerializationError:
                pass  # the general way below says why
            else:
                if len(out) >= SHORT:
                    if len(out) >= LONG and _fast_dumps is not None and len(_long_types) < 4096:
                        _long_types.add(tp)  # orjson writes long strings ten times faster
                    _check_pydantic(value, out)
                return out
        if _fast_dumps is not None:
            try:
                plain = value if ser is None else ser.to_python(value, mode="json", by_alias=True)
                out = _fast_dumps(plain, option=_FAST_OPTIONS)
            except (TypeError, PydanticSerializationError):
                pass  # a big int, a non-str key, a lone surrogate, an unknown type...
            else:
                if len(out) >= SHORT:
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
            if len(out) >= SHORT:
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
                if len(out) >= SHORT and not few_brackets(out):
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
