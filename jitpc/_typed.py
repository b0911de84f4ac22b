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

A request line is validated whole from its bytes (one ``validate_json`` of its id, method and
params: see :func:`_request_reader`); what that does not take (see docs/typed-methods.md) has
its params validated once, from the parsed message; both answer the same. A result that is
already an instance of the declared model is not validated again. Error messages name the first
validation error (Node jitpc shows a peer's ``message`` but drops its ``data``).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import logging
import types
import typing
import weakref
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, NewType, NoReturn, TypeVar, overload

import typing_extensions
from pydantic import ValidationError

from ._client import Client, TypedFast, TypedResponder, TypedServe, _Watcher
from ._connection import is_awaitable
from ._errors import InternalError, InvalidParams
from ._method import (
    Method,
    MethodSpec,
    first_error,
    json_agrees,
    json_reader,
    result_validator,
    type_name,
    validation_errors,
)
from ._openrpc import document
from ._threads import run_in_thread

__all__ = ["Handler", "Registrar", "Router"]

logger = logging.getLogger("jitpc")

H = TypeVar("H", bound=Callable[..., Any])
Handler = Callable[..., Any]


class Router:
    """A registry of typed methods, mountable on servers and clients.

    ``@router.method`` registers a handler under its params model's method name. The handler
    takes the params model (and optionally the calling :class:`Client`, by annotation) and
    returns the result type, sync or async. Several servers, or a client that answers
    server-to-client calls, can mount the same router; methods added later are served too.
    """

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._responders: dict[str, TypedResponder] = {}
        #: Per method: the validator of its params as written and what serves them, for the
        #: connection's fast path (see TypedFast; none for a model JSON-mode validation might
        #: differ for).
        self._fast: dict[str, TypedFast] = {}
        self._watchers: weakref.WeakSet[_Watcher] = weakref.WeakSet()

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    @property
    def methods(self) -> list[str]:
        """The registered method names."""
        return list(self._specs)

    @overload
    def method(self, handler: H, /) -> H: ...
    @overload
    def method(self, handler: None = None, /, *, thread: bool = False) -> Registrar: ...
    def method(self, handler: Handler | None = None, /, *, thread: bool = False) -> Any:
        """Register ``handler`` (a decorator; returns it unchanged).

        ``@router.method(thread=True)`` runs a synchronous handler in a worker thread (a pool
        of at most 16 per process), so that it may block; other synchronous handlers run on
        the event loop and must not block: while one runs, nothing else is served.

        The return annotation must be ``R`` or a subtype of it: ``typing.List[X]`` for
        ``list[X]``, ``X`` for ``X | None``, a subclass, ``list[Sub]`` for ``list[Base]``; an
        ``Annotated`` type counts as the type it annotates (on both sides). Forms this check
        cannot judge (protocols, TypedDicts, type variables) are accepted; mypy with the
        ``jitpc.mypy`` plugin is the strict judge. A handler without a return annotation is
        accepted unchecked: what it returns is validated against ``R`` at each call anyway.

        Raises:
            TypeError: the handler has no parameter annotated with a ``Method[R]`` subclass,
                or its return annotation is clearly not ``R`` (``str`` for a model, ``X | None``
                for ``X``); or ``thread=True`` for an async handler.
            ValueError: the method name is already registered here.
        """
        if handler is None:
            return Registrar(functools.partial(self.add_method, thread=thread))
        self.add_method(handler, thread=thread)
        return handler

    def add_method(
        self, handler: Handler, *, name: str | None = None, thread: bool = False
    ) -> None:
        """Register ``handler``; ``name`` overrides the params model's method name.

        Raises:
            TypeError: the handler's annotations are unusable (see :meth:`method`).
            ValueError: the method name is already registered here.
        """
        params_type, params_arg, client_arg = _inspect_handler(handler)
        if thread and inspect.iscoroutinefunction(handler):
            raise TypeError(f"handler {_what(handler)}: thread=True is for synchronous handlers")
        name = name or params_type.__jitpc_method__
        if name in self._specs:
            raise ValueError(f"method {name!r} is already registered")
        spec = MethodSpec(name, params_type, handler, thread)
        self._specs[name] = spec
        respond, serve, alone = _responder(spec, params_arg, client_arg)
        self._responders[name] = respond
        reader = _request_reader(params_type)
        if reader is not None:
            self._fast[name] = (reader, serve, alone)
        for watcher in list(self._watchers):
            watcher._routes_changed()

    def openrpc(self, *, title: str = "jitpc", version: str = "0.0.0") -> dict[str, Any]:
        """This router's methods as an OpenRPC 1.3 document (JSON Schema from pydantic)."""
        return document(self._specs.values(), title=title, version=version)

    def _lookup(self, method: str) -> TypedResponder | None:
        return self._responders.get(method)

    def _lookup_fast(self, method: str) -> TypedFast | None:
        return self._fast.get(method)

    def _items(self) -> Iterable[tuple[str, TypedResponder, MethodSpec]]:
        for name, spec in self._specs.items():
            yield name, self._responders[name], spec

    def _watch(self, owner: _Watcher) -> None:
        self._watchers.add(owner)


class Registrar:
    """The decorator ``@router.method(thread=True)`` makes: it registers what it decorates and
    returns it unchanged. (A class, not a closure, so the mypy plugin can check its calls.)"""

    __slots__ = ("_register",)

    def __init__(self, register: Callable[[Handler], None]) -> None:
        self._register = register

    def __call__(self, handler: H, /) -> H:
        self._register(handler)
        return handler


def _what(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))


def _inspect_handler(handler: Handler) -> tuple[type[Method[Any]], str, str | None]:
    """The handler's params model, its parameter's name, and its Client parameter's if any."""
    what = _what(handler)
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
    # get_type_hints strips Annotated; _fits strips it from the result type too.
    expected = params_type.__jitpc_result_type__
    if "return" in hints:  # else unchecked: results are validated at each call anyway
        declared = hints["return"]
        if typing.get_origin(declared) in _AWAITABLES and not _fits(declared, expected):
            declared = typing.get_args(declared)[-1]  # a sync def returning an awaitable
        if not _fits(declared, expected):
            raise TypeError(
                f"handler {what} returns {type_name(declared)}, but {params_type.__name__} "
                f"declares the result type {type_name(expected)}"
            )
    return params_type, params_arg, client_arg


_UNIONS = (typing.Union, types.UnionType)
_AWAITABLES = (collections.abc.Awaitable, collections.abc.Coroutine)
_BOTTOM = (NoReturn, typing.Never)
# PEP 484's numeric tower, as mypy applies it.
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}
# Generic classes whose type arguments line up with those of their generic bases.
_STANDARD_MODULES = frozenset({"builtins", "collections", "collections.abc"})


def _plain(tp: Any) -> Any:
    """``tp`` without what does not change its type: Annotated, NewType, type aliases."""
    while True:
        if tp is None:
            return type(None)
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, NewType):
            tp = tp.__supertype__
        elif isinstance(tp, typing_extensions.TypeAliasType):
            tp = tp.__value__
        else:
            return tp


def _generic(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``tp``'s class and type arguments: ``(list, (int,))``; for pydantic's ``Page[Counter]``,
    a class of its own, ``(Page, (Counter,))``."""
    origin = typing.get_origin(tp)
    if origin is not None:
        return origin, typing.get_args(tp)
    meta = getattr(tp, "__pydantic_generic_metadata__", None)
    if meta and meta["origin"] is not None:
        return meta["origin"], tuple(meta["args"])
    return tp, ()


def _fits(declared: Any, expected: Any) -> bool:
    """Whether a handler returning ``declared`` answers for the result type ``expected``:
    ``declared`` is a subtype, or something this check cannot judge (then mypy will)."""
    declared, expected = _plain(declared), _plain(expected)
    if declared == expected or expected in (Any, object) or declared is Any:
        return True
    if any(declared is bottom for bottom in _BOTTOM):
        return True  # a handler that always raises
    d_origin, e_origin = typing.get_origin(declared), typing.get_origin(expected)
    if d_origin in _UNIONS:
        return all(_fits(member, expected) for member in typing.get_args(declared))
    if e_origin in _UNIONS:
        return any(_fits(declared, member) for member in typing.get_args(expected))
    if e_origin is Literal:
        return d_origin is Literal and set(typing.get_args(declared)) <= set(
            typing.get_args(expected)
        )
    if d_origin is Literal:
        return all(_fits(type(value), expected) for value in typing.get_args(declared))
    (d_class, d_args), (e_class, e_args) = _generic(declared), _generic(expected)
    if not isinstance(d_class, type) or not isinstance(e_class, type):
        return True  # a type variable, a special form, ...
    try:
        if not issubclass(d_class, e_class) and not issubclass(
            d_class, _PROMOTIONS.get(e_class, ())
        ):
            return False
    except TypeError:
        return True  # TypedDicts, protocols with data: structural, mypy's to judge
    if not d_args or not e_args:
        return True  # a bare list is list[Any]
    if d_class is not e_class and d_class.__module__ not in _STANDARD_MODULES:
        return True  # a user's generic subclass: its arguments need not be its base's
    if e_class is tuple and e_args[-1] is Ellipsis:
        return all(_fits(arg, e_args[0]) for arg in d_args if arg is not Ellipsis)
    if d_class is tuple and d_args[-1] is not Ellipsis and len(d_args) != len(e_args):
        return False  # tuple[int] for tuple[int, int]
    if len(d_args) != len(e_args):
        return True
    # Covariantly even for list and dict: a result is handed over, never written through R.
    return all(_fits(d, e) for d, e in zip(d_args, e_args, strict=True))


class _NoResult:
    pass


def _responder(
    spec: MethodSpec, params_arg: str, client_arg: str | None
) -> tuple[TypedResponder, TypedServe, Callable[[Any], Any] | None]:
    """What answers a request for ``spec``'s method from its raw params; what answers it from
    params already validated; and the same without the client, if the handler takes none and
    runs in the loop (else ``None``)."""
    name, params_type, handler = spec.name, spec.params_type, spec.handler
    validate = params_type.__pydantic_validator__.validate_python
    validate_result = result_validator(params_type)
    result_type = params_type.__jitpc_result_type__
    # A type no result can have, when R is not a class (list[Counter], a union, ...).
    exact = result_type if isinstance(result_type, type) else _NoResult
    is_async = inspect.iscoroutinefunction(handler)
    thread = spec.thread

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
            errors = validation_errors(exc)
            raise InternalError(
                f"the server's result for {name!r} failed validation: {first_error(errors)}",
                data=errors,
            ) from None

    async def finish(awaitable: Any) -> Any:
        return check(await awaitable)

    def call(params: Any, client: Client) -> Any:
        if client_arg is None:
            return handler(params)
        return handler(**{params_arg: params, client_arg: client})

    def settle(result: Any) -> Any:
        if type(result) is exact:
            return result  # the usual case, first: a model built (so validated) by the handler
        if is_async or is_awaitable(result):
            return finish(result)
        return check(result)

    def alone(params: Any) -> Any:
        result = handler(params)
        # (settle's first step written out: a call less per request.)
        return result if type(result) is exact else settle(result)

    def serve(client: Client, params: Any) -> Any:
        if thread:
            return finish(run_in_thread(call, params, client))
        if client_arg is None:
            return alone(params)
        result = handler(**{params_arg: params, client_arg: client})
        return result if type(result) is exact else settle(result)

    def respond(client: Client, raw: Any) -> Any:
        try:
            params = validate({} if raw is None else raw)
        except ValidationError as exc:
            errors = validation_errors(exc)
            raise InvalidParams(
                f"invalid params for {name!r}: {first_error(errors)}", data=errors
            ) from None
        return serve(client, params)

    # (A handler that takes no client is served unbound: no partial per client, ~450
    # instructions a request.)
    return respond, serve, alone if client_arg is None and not thread else None


def _request_reader(params_type: type[Method[Any]]) -> Callable[[bytes], Any] | None:
    """A validator of the params of a request for ``params_type``'s method as written (the
    core splits the line: see Peer.request_of), or ``None`` where validating them as JSON could
    differ from validating them parsed (see :func:`json_agrees`)."""
    schema = params_type.__pydantic_core_schema__
    if not json_agrees(schema):
        return None
    return json_reader(params_type.__pydantic_validator__.validate_json, schema)
