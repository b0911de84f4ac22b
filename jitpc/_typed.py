"""Typed methods: handlers bound to ``Method[R]`` params models, validated at both ends.

A :class:`Router` holds handlers by method name. Servers have one (``@server.method``), and any
router can be mounted on servers and clients alike. On the wire nothing changes: a Node peer can
call a typed Python server and gets JSON-RPC error objects it can read.

What the serving end answers:

* params that fail the model: -32602 (:class:`InvalidParams`), pydantic's errors in ``data``;
* a handler that raises: -32603, or the code of the :class:`RemoteError` (for example
  :class:`RPCError`) it raised;
* a result that fails the result type: -32603, and an error in the server's log, because that is
  a bug in the server.

Each request's params are validated once, from the already-parsed message; a result that is
already an instance of the declared model is not validated again.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterable
from types import CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from ._errors import InternalError, InvalidParams
from ._method import Method, result_validator

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "PLAIN_TYPES",
    "Cache",
    "Handler",
    "Router",
    "TypedResponder",
    "changed",
    "is_awaitable",
    "validation_errors",
]

logger = logging.getLogger("jitpc")

#: What a router keeps per method: takes the raw params and the calling client.
TypedResponder = Callable[[Any, "Client"], Any]

H = TypeVar("H", bound=Callable[..., Any])
Handler = Callable[..., Any]


#: Bumped whenever any router or mount changes, so that clients' lookup caches know.
version = 0


def changed() -> None:
    global version
    version += 1


class Cache(dict[str, TypedResponder]):
    """A client's method name -> typed responder cache, valid for one :data:`version`."""

    version = -1


#: Types whose values are known not to be awaitable: results are checked once per type.
PLAIN_TYPES: set[type] = {dict, list, str, int, float, bool, type(None)}


def is_awaitable(value: Any) -> bool:
    """:func:`inspect.isawaitable`, without its ABC check for the usual plain results."""
    tp = type(value)
    if tp in PLAIN_TYPES:
        return False
    if tp is CoroutineType:
        return True
    if inspect.isawaitable(value):
        return True
    # A generator's awaitability depends on its code, not its type. The cap bounds the set in a
    # program that makes result types at run time (past it, such types take the full check).
    if tp is not GeneratorType and len(PLAIN_TYPES) < 4096:
        PLAIN_TYPES.add(tp)
    return False


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as plain JSON: ``loc``, ``type`` and ``msg`` of each."""
    return [
        {"loc": list(error["loc"]), "type": error["type"], "msg": error["msg"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


class _Entry:
    __slots__ = ("handler", "name", "notification", "params_type", "respond")

    def __init__(
        self,
        name: str,
        params_type: type[Method[Any]],
        handler: Handler,
        respond: TypedResponder,
    ) -> None:
        self.name = name
        self.params_type = params_type
        self.handler = handler
        self.notification = params_type.__jitpc_result_type__ is type(None)
        self.respond = respond


class Router:
    """A registry of typed methods, mountable on servers and clients.

    ``@router.method`` registers a handler under its params model's method name. The handler
    takes the params model (and optionally the calling :class:`Client`, by annotation) and
    returns the result type, sync or async. Several servers, or a client that answers
    server-to-client calls, can mount the same router.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def methods(self) -> list[str]:
        """The registered method names."""
        return list(self._entries)

    def method(self, handler: H) -> H:
        """Register ``handler`` (a decorator; returns it unchanged).

        Raises:
            TypeError: the handler has no parameter annotated with a ``Method[R]`` subclass,
                or its return annotation is not ``R``.
            ValueError: the method name is already registered here.
        """
        self.add_method(handler)
        return handler

    def add_method(self, handler: Handler, *, name: str | None = None) -> None:
        """Register ``handler``; ``name`` overrides the params model's method name.

        Raises:
            TypeError: the handler's annotations are unusable (see :meth:`method`).
            ValueError: the method name is already registered here.
        """
        params_type, params_arg, client_arg = _inspect_handler(handler)
        name = name or params_type.__jitpc_method__
        if name in self._entries:
            raise ValueError(f"method {name!r} is already registered")
        respond = _responder(name, params_type, handler, params_arg, client_arg)
        self._entries[name] = _Entry(name, params_type, handler, respond)
        changed()

    def lookup(self, name: str) -> TypedResponder | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.respond

    def entries(self) -> Iterable[_Entry]:
        return self._entries.values()

    def openrpc(self, *, title: str = "jitpc", version: str = "0.0.0") -> dict[str, Any]:
        """This router's methods as an OpenRPC 1.3 document (JSON Schema from pydantic)."""
        from ._openrpc import document

        return document(self._entries.values(), title=title, version=version)


def _inspect_handler(handler: Handler) -> tuple[type[Method[Any]], str, str | None]:
    """The handler's params model, its parameter's name, and its Client parameter's if any."""
    from ._client import Client

    what = getattr(handler, "__qualname__", repr(handler))
    try:
        hints = typing.get_type_hints(handler)
        params = list(inspect.signature(handler).parameters.values())
    except (NameError, TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot read the annotations of handler {what}: {exc}. Define its models where "
            "the handler's module can see them (module level)."
        ) from exc
    params_type: type[Method[Any]] | None = None
    params_arg: str | None = None
    client_arg: str | None = None
    for param in params:
        hint = hints.get(param.name)
        if isinstance(hint, type) and issubclass(hint, Method) and params_type is None:
            params_type, params_arg = hint, param.name
        elif hint is Client and client_arg is None:
            client_arg = param.name
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TypeError(
                f"handler {what}: parameter {param.name!r} must be annotated with a "
                "jitpc.Method subclass (the params) or jitpc.Client (the caller)"
            )
    if params_type is None or params_arg is None:
        raise TypeError(
            f"handler {what} needs a parameter annotated with its params model, a subclass of "
            "jitpc.Method[Result]"
        )
    if params_type.__pydantic_generic_metadata__["parameters"]:
        raise TypeError(f"handler {what}: {params_type.__name__} is still generic")
    expected = params_type.__jitpc_result_type__
    if "return" in hints:
        declared = hints["return"]
        if declared is None:
            declared = type(None)
        if declared != expected and not (
            isinstance(declared, type)
            and isinstance(expected, type)
            and issubclass(declared, expected)
        ):
            raise TypeError(
                f"handler {what} returns {_name(declared)}, but {params_type.__name__} declares "
                f"the result type {_name(expected)}"
            )
    return params_type, params_arg, client_arg


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


class _NoResult:
    pass


def _responder(
    name: str,
    params_type: type[Method[Any]],
    handler: Handler,
    params_arg: str,
    client_arg: str | None,
) -> TypedResponder:
    validate = params_type.__pydantic_validator__.validate_python
    validate_result = result_validator(params_type)
    result_type = params_type.__jitpc_result_type__
    # A type no result can have, when R is not a class (list[Counter], a union, ...).
    exact = result_type if isinstance(result_type, type) else _NoResult
    is_async = inspect.iscoroutinefunction(handler)

    def check(result: Any) -> Any:
        if type(result) is exact:
            return result  # validated when it was built
        try:
            return validate_result(result)
        except ValidationError as exc:
            logger.error(
                "jitpc: the result of handler %r does not fit its result type: %s",
                name,
                exc,
            )
            raise InternalError(
                f"the server's result for {name!r} failed validation",
                data=validation_errors(exc),
            ) from None

    async def finish(awaitable: Any) -> Any:
        return check(await awaitable)

    def respond(raw: Any, client: Client) -> Any:
        try:
            params = validate({} if raw is None else raw)
        except ValidationError as exc:
            raise InvalidParams(
                f"invalid params for {name!r}", data=validation_errors(exc)
            ) from None
        if client_arg is None:
            result = handler(params)
        else:
            result = handler(**{params_arg: params, client_arg: client})
        if type(result) is exact:
            return result  # the usual case, first: a model built (so validated) by the handler
        if is_async or is_awaitable(result):
            return finish(result)
        return check(result)

    return respond
