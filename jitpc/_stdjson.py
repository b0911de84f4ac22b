"""JSON with the standard library, held to the limits of jitpc's reader; no pydantic.

jitpc reads and writes JSON with pydantic's parser and serializer (:mod:`._json`), but
importing pydantic_core costs a fresh interpreter about as much as the rest of an untyped
one-shot call, so a :class:`~._protocol.Peer` made where pydantic_core is not loaded uses the
json module instead. Both take and refuse the same texts: UTF-8, no NaN or
Infinity, no nesting deeper than :data:`MAX_DEPTH`, no integer over :data:`MAX_DIGITS` digits.
The writers differ only in how some floats are spelled (``1e-07`` here, ``1e-7`` there): the
same numbers. A value the json module cannot write as pydantic would (a model, a datetime, a
non-finite float, a None key, anything near the limits) is left to pydantic's serializer.

Also the limits themselves, and the helpers both readers and writers share.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # (not typing's: an untyped one-shot call need not import it, ~5 ms)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "SHORT",
    "few_brackets",
    "loads",
    "plain_dump",
    "reject_constant",
    "second_chance",
    "too_deep",
]

#: The deepest nesting read, as pydantic's parser counts it: the message object is level 1,
#: and every value inside a level is the next one, scalars too (``[[1]]`` has 3).
MAX_DEPTH: Final = 201
#: The longest integer read (Python's and pydantic's default limit).
MAX_DIGITS: Final = 4300
#: A text shorter than this cannot nest too deep (that takes 200 brackets and their closers)
#: nor hold too long an integer.
SHORT: Final = 2 * (MAX_DEPTH - 1)
#: What a reader says of a text nested too deep; pydantic's parser says "recursion limit".
_DEEP: Final = f"recursion limit exceeded: nesting deeper than {MAX_DEPTH}"


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


def few_brackets(data: bytes | bytearray) -> bool:
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


def reject_constant(name: str) -> Any:
    """For ``json.loads(parse_constant=...)``: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def _parse(line: bytes | bytearray) -> Any:
    # Decode strictly first: json.loads(bytes) would also take UTF-16, a BOM and
    # UTF-8-encoded surrogates.
    try:
        value = json.loads(line.decode(), parse_constant=reject_constant)
    except RecursionError:
        raise ValueError(_DEEP) from None
    if len(line) >= SHORT and not few_brackets(line) and too_deep(value):
        raise ValueError(_DEEP)
    return value


def second_chance(line: bytes | bytearray, exc: ValueError) -> Any:
    """Parse a line pydantic's parser refused with ``exc``, if the second parser may; raise
    ValueError with the reason otherwise.

    pydantic's parser rejects escaped lone surrogates ("\\ud800"), which Node's JSON.stringify
    writes and JSON.parse accepts: such lines get a second chance (not one too deep for
    pydantic: the limit must be the same on both paths).
    """
    if b"\\u" not in line or "recursion limit" in str(exc):
        raise exc
    return _parse(line)


def loads(line: bytes | bytearray, allow_inf_nan: bool = False) -> Any:
    """One JSON text, as pydantic's ``from_json(line, allow_inf_nan=False)`` reads it (the
    same signature, for :class:`~._protocol.Peer`), escaped lone surrogates accepted (as
    :func:`second_chance` accepts them).

    Raises:
        ValueError: not JSON, or not JSON jitpc reads.
    """
    return _parse(line)


_encode: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


_encode_ascii: Final = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def plain_dump(value: Any) -> bytes | None:
    """One JSON value, compact, as pydantic would write it (see the module docstring); ``None``
    if the json module cannot: then pydantic's serializer (``_json.dump``) must."""
    try:
        out = _encode(value).encode()
    except UnicodeEncodeError:
        # A lone surrogate (Node's JSON.parse gives one for "\ud800") is not UTF-8: written as
        # the escape, as JSON.stringify and the pydantic way (by the json module too) write it.
        try:
            out = _encode_ascii(value).encode()
        except (TypeError, ValueError, RecursionError):
            return None
    except (TypeError, ValueError, RecursionError):
        return None  # not plain JSON, a non-finite float, an integer over the limit...
    # pydantic writes a None key as "None" where the json module writes "null": a text that
    # may hold one (a key "null" or, rarely, a string that contains the bytes) goes that way.
    if (len(out) < SHORT or few_brackets(out)) and b'"null":' not in out:
        return out
    return None
