"""``Method[R]``: a params model that knows its method name and its result type.

    class Inc(jitpc.Method[Counter], method="inc"):
        key: str

The result type is read back from the parametrised base (pydantic records ``Method[Counter]``'s
arguments), so it is written once, where mypy sees it too: ``client.call(Inc(...))`` is a
``Counter`` to the type checker and is validated as one at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = [
    "Method",
    "MethodSpec",
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
    """

    #: The wire name of the method.
    __jitpc_method__: ClassVar[str]
    #: The result type ``R``.
    __jitpc_result_type__: ClassVar[Any]
    #: Validates a result (set at first use).
    __jitpc_validate_result__: ClassVar[Callable[[Any], Any]]

    def __init_subclass__(cls, method: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, method: str | None = None, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
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
    TypeAdapter wrapper's per-call overhead."""
    validate = params_type.__dict__.get("__jitpc_validate_result__")
    if validate is None:
        validator = result_adapter(params_type).validator
        validate = validator.validate_python
        params_type.__jitpc_validate_result__ = validate
    return validate


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


def type_name(tp: Any) -> str:
    """A type's name for messages: ``Counter``, or the repr of ``list[Counter]``."""
    return getattr(tp, "__name__", None) or repr(tp)
