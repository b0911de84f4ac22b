"""``Method[R]``: a params model that knows its method name and its result type.

    class Inc(jitpc.Method[Counter], method="inc"):
        key: str

The result type is read back from the parametrised base (pydantic records ``Method[Counter]``'s
arguments), so it is written once, where mypy sees it too: ``client.call(Inc(...))`` is a
``Counter`` to the type checker and is validated as one at run time.

Params and results evolve differently: a params model refuses fields it does not know (a typo
or a newer client's field must not be dropped silently), a result accepts them (a newer server
may add result fields without breaking older clients).
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
)

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ._errors import ResultValidationError

__all__ = [
    "Method",
    "MethodSpec",
    "check_result",
    "fingerprint",
    "json_agrees",
    "json_reader",
    "result_reader",
    "first_error",
    "invalid_result",
    "result_adapter",
    "result_validator",
    "type_name",
    "validation_errors",
]

# Covariant: R only comes out (a Method[Counter] is a Method[object]).
R_co = TypeVar("R_co", covariant=True)


class Method(BaseModel, Generic[R_co]):
    """Base class of typed params models: ``class Inc(Method[Counter], method="inc")``.

    ``R`` is the result type: a pydantic model, or any type pydantic validates (``int``,
    ``list[Counter]``, ...). ``Method[None]`` declares a notification: its handler returns
    nothing, and the client may send it with ``client.notify(params)``. The method name is the
    ``method=`` class keyword, or the class name.

    Unknown fields are refused (pydantic's ``extra="forbid"``): the server answers
    :class:`InvalidParams` naming them. A model overrides it with pydantic's own
    ``model_config = ConfigDict(extra="ignore")`` (or ``"allow"``). Inside a result type, a
    params model ignores unknown fields, as results do (see :func:`result_validator`).
    """

    model_config = ConfigDict(extra="forbid")

    #: The wire name of the method.
    __jitpc_method__: ClassVar[str]
    #: The result type ``R``.
    __jitpc_result_type__: ClassVar[Any]
    #: Validates a result (set at first use; ``None`` until then).
    __jitpc_validate_result__: ClassVar[Callable[[Any], Any] | None]
    #: See :func:`fingerprint` (set at first use).
    __jitpc_fingerprint__: ClassVar[str]
    #: See :func:`result_reader` (set at first use; ``False`` until then).
    __jitpc_read_result__: ClassVar[Callable[[bytes], Any] | None | Literal[False]]

    def __init_subclass__(cls, method: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, method: str | None = None, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Each class's own empty caches: read as attributes (a third of the instructions of
        # reading the class's __dict__), they must never find a base class's.
        cls.__jitpc_validate_result__ = None
        cls.__jitpc_read_result__ = False
        if cls.__pydantic_generic_metadata__["origin"] is not None:
            return  # Method[Counter] itself, not a user's params model
        if method is not None:
            if not isinstance(cast(object, method), str) or not method:
                raise TypeError(f"{cls.__name__}: method= must be a non-empty string")
            cls.__jitpc_method__ = method
        elif "__jitpc_method__" not in cls.__dict__:
            cls.__jitpc_method__ = cls.__name__
        for base in cls.__mro__:
            meta = getattr(base, "__pydantic_generic_metadata__", None)
            if meta and meta["origin"] is Method and meta["args"]:
                result = meta["args"][0]
                cls.__jitpc_result_type__ = type(None) if result is None else result
                return
        raise TypeError(
            f"{cls.__name__} must name its result type: class {cls.__name__}(jitpc.Method[Result])"
        )


_adapters: dict[Any, TypeAdapter[Any]] = {}


def result_adapter(params_type: type[Method[Any]]) -> TypeAdapter[Any]:
    """The (cached) validator of ``params_type``'s result type."""
    result_type = params_type.__jitpc_result_type__
    adapter = _adapters.get(result_type)
    if adapter is None:
        adapter = _adapters[result_type] = TypeAdapter(result_type)
    return adapter


def result_validator(params_type: type[Method[Any]]) -> Callable[[Any], Any]:
    """The (cached) ``validate_python`` of ``params_type``'s result type, without the
    TypeAdapter wrapper's per-call overhead.

    A result type that holds params models (``Method[list[Job]]``, ``Job`` a params model) is
    validated with pydantic's ``extra="ignore"`` throughout (pydantic 2.12 and later, as
    required): params models forbid unknown fields as params, not in results."""
    validate = params_type.__dict__.get("__jitpc_validate_result__")
    if validate is None:
        adapter = result_adapter(params_type)
        validate = adapter.validator.validate_python
        if _holds_strict_params(adapter.core_schema):
            validate = functools.partial(validate, extra="ignore")
        params_type.__jitpc_validate_result__ = validate
    return validate


def invalid_result(
    params_type: type[Method[Any]], raw: Any, exc: ValidationError
) -> ResultValidationError:
    """The error of a typed call whose result ``raw`` does not fit ``params_type``'s result
    type (a :class:`ResultValidationError`)."""
    return ResultValidationError(
        f"the result of {params_type.__jitpc_method__!r} does not fit "
        f"{type_name(params_type.__jitpc_result_type__)}: {exc}",
        validation_errors(exc),
        raw,
    )


def check_result(params_type: type[Method[Any]], raw: Any) -> Any:
    """A typed call's result ``raw``, validated against ``params_type``'s result type.

    Raises:
        ResultValidationError: it does not fit.
    """
    try:
        return result_validator(params_type)(raw)
    except ValidationError as exc:
        raise invalid_result(params_type, raw, exc) from None


def _holds_strict_params(schema: Any) -> bool:
    """Whether the core ``schema`` holds a ``Method`` model that forbids unknown fields."""
    if isinstance(schema, (list, tuple)):
        return any(_holds_strict_params(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    cls = schema.get("cls")
    if (
        schema.get("type") == "model"
        and isinstance(cls, type)
        and issubclass(cls, Method)
        and (schema.get("config") or {}).get("extra_fields_behavior") == "forbid"
    ):
        return True
    return any(_holds_strict_params(value) for value in schema.values())


#: Core schema types that validate JSON otherwise than the Python values parsed from it
#: (a Decimal from the number's text, not from a float; an instance check, which JSON fails).
_PYTHON_ONLY = frozenset({"decimal", "is-instance", "is-subclass", "callable"})
#: Core schema types that may take a NaN or an infinity from pydantic's JSON parser.
_FLOATS = frozenset(
    {"float", "any", "complex", "function-plain", "function-before", "function-wrap"}
)


def takes_non_finite(schema: Any) -> bool:
    """Whether a core schema may take the NaN or Infinity of a JSON text (not a float field
    with ``allow_inf_nan=False``)."""
    if isinstance(schema, list):
        return any(takes_non_finite(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind in _FLOATS and not (kind == "float" and schema.get("allow_inf_nan") is False):
        return True
    return any(takes_non_finite(value) for value in schema.values())


def json_agrees(schema: Any) -> bool:
    """Whether a core schema validates a JSON text as it validates the Python values parsed
    from it (in lax mode). Strict mode does not: it takes a string for a datetime only in
    JSON. Nor do bytes read as base64 or hex from JSON, nor the types of ``_PYTHON_ONLY``."""
    if isinstance(schema, list):
        return all(json_agrees(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("strict") is True or schema.get("type") in _PYTHON_ONLY:
        return False
    if schema.get("val_json_bytes", "utf8") != "utf8":
        return False
    return all(json_agrees(value) for value in schema.values())


def _finite(validate_json: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``validate_json`` refusing NaN and Infinity, which pydantic's JSON parser takes and
    jitpc's reader does not."""

    def read(line: bytes) -> Any:
        if b"NaN" in line or b"Infinity" in line:
            raise ValueError("NaN and Infinity are not JSON")
        return validate_json(line)

    return read


def json_reader(validate_json: Callable[[bytes], Any], schema: Any) -> Callable[[bytes], Any]:
    """``validate_json``, refusing NaN and Infinity if the core ``schema`` of what it reads
    could take them."""
    return _finite(validate_json) if takes_non_finite(schema) else validate_json


def result_reader(params_type: type[Method[Any]]) -> Callable[[bytes], Any] | None:
    """The (cached) validator of the result of a request for ``params_type``'s method, as
    written (the core splits the answer line: see Peer.take_result); ``None`` unless the result
    type is a model for which validating it as JSON could not differ from validating it parsed
    (see :func:`json_agrees`)."""
    cached = params_type.__dict__.get("__jitpc_read_result__", False)
    if cached is not False:
        return cast("Callable[[bytes], Any] | None", cached)
    result_type = params_type.__jitpc_result_type__
    reader: Callable[[bytes], Any] | None = None
    if isinstance(result_type, type) and issubclass(result_type, BaseModel):
        schema = result_adapter(params_type).core_schema
        if json_agrees(schema) and not _holds_strict_params(schema):
            reader = json_reader(result_type.__pydantic_validator__.validate_json, schema)
    params_type.__jitpc_read_result__ = reader
    return reader


def _shape(schema: Any) -> Any:
    """A JSON Schema without its prose (titles and descriptions), which a fingerprint should
    not depend on."""
    if isinstance(schema, dict):
        return {
            key: _shape(value)
            for key, value in schema.items()
            if not (key in ("title", "description") and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    return schema


def fingerprint(params_type: type[Method[Any]]) -> str:
    """16 hex digits that change when the wire shape of ``params_type``'s method does: its
    name, params and result schemas (not their titles or descriptions). Both ends compute it
    from the same model, so equal fingerprints mean both read and write the same JSON."""
    cached = params_type.__dict__.get("__jitpc_fingerprint__")
    if cached is None:
        notification = params_type.__jitpc_result_type__ is type(None)
        shape = {
            "method": params_type.__jitpc_method__,
            "params": _shape(params_type.model_json_schema(mode="validation")),
            "result": None
            if notification
            else _shape(result_adapter(params_type).json_schema(mode="serialization")),
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        cached = hashlib.sha256(text.encode()).hexdigest()[:16]
        params_type.__jitpc_fingerprint__ = cached
    return cached


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What a router knows of one typed method: its name, params model and handler."""

    name: str
    params_type: type[Method[Any]]
    handler: Callable[..., Any]
    #: Whether the handler runs in a worker thread.
    thread: bool = False

    @property
    def notification(self) -> bool:
        """Whether the method is a notification (``Method[None]``)."""
        return self.params_type.__jitpc_result_type__ is type(None)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as plain JSON: ``loc``, ``type`` and ``msg`` of each."""
    return [
        {"loc": list(error["loc"]), "type": error["type"], "msg": error["msg"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def first_error(errors: list[dict[str, Any]]) -> str:
    """The first of ``errors`` (from :func:`validation_errors`) for a message, such as
    ``key: Field required (+1 more)``: Node jitpc drops an error's ``data``."""
    if not errors:
        return "no details"
    where = ".".join(str(part) for part in errors[0]["loc"])
    text = f"{where}: {errors[0]['msg']}" if where else str(errors[0]["msg"])
    return f"{text} (+{len(errors) - 1} more)" if len(errors) > 1 else text


def type_name(tp: Any) -> str:
    """A type's name for messages: ``Counter``, ``list[Counter]``, ``Counter | None``."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None and args:
        if origin is Literal:
            return f"Literal[{', '.join(map(repr, args))}]"
        inner = ", ".join(
            type_name(arg) if not isinstance(arg, list) else f"[{', '.join(map(type_name, arg))}]"
            for arg in args
        )
        return f"{type_name(origin)}[{inner}]"
    if isinstance(tp, type):
        return tp.__name__
    return getattr(tp, "__name__", None) or repr(tp)
