"""A mypy plugin that checks typed handlers: enable it with ``plugins = jitpc.mypy``.

Python's type system cannot tie a decorated handler's return type to the result type ``R`` of
its params model's ``Method[R]`` base through a bare ``@server.method``. This plugin does, for
``@server.method``, ``@router.method``, their ``(thread=True)`` forms and ``add_method(fn)``: a
handler whose return type (awaited, for ``async def``) is not a subtype of ``R`` is reported with
the error code ``jitpc-method``. Generic results are compared covariantly (``list[Sub]`` answers
for ``list[Base]``): a result is handed over, never written to through ``R``. Everything else in
jitpc type-checks without the plugin.

    [mypy]
    plugins = jitpc.mypy
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ErrorCode
from mypy.maptype import map_instance_to_supertype
from mypy.messages import format_type
from mypy.nodes import CONTRAVARIANT
from mypy.plugin import MethodContext, Plugin
from mypy.subtypes import is_subtype
from mypy.types import CallableType, Instance, Type, UnionType, get_proper_type

__all__ = ["JITPC_METHOD", "plugin"]

JITPC_METHOD = ErrorCode(
    "jitpc-method", "Check that a typed handler returns its method's result type", "jitpc"
)

_METHOD = "jitpc._method.Method"
_DECORATORS = frozenset(
    {
        "jitpc._server.Server.method",
        "jitpc._server.Server.add_method",
        "jitpc._typed.Router.method",
        "jitpc._typed.Router.add_method",
        "jitpc._typed.Registrar.__call__",
        "jitpc.Server.method",
        "jitpc.Server.add_method",
        "jitpc.Router.method",
        "jitpc.Router.add_method",
    }
)
_AWAITABLES = frozenset({"typing.Coroutine", "typing.Awaitable", "collections.abc.Coroutine"})


def _params_model(handler: CallableType) -> Instance | None:
    for arg in handler.arg_types:
        proper = get_proper_type(arg)
        if isinstance(proper, Instance) and proper.type.has_base(_METHOD):
            return proper
    return None


def _fits(returned: Type, expected: Type) -> bool:
    """Whether ``returned`` answers for ``expected``: a subtype, invariant arguments taken
    covariantly."""
    if is_subtype(returned, expected):
        return True
    returned, expected = get_proper_type(returned), get_proper_type(expected)
    if isinstance(returned, UnionType):
        return all(_fits(item, expected) for item in returned.items)
    if isinstance(expected, UnionType):
        return any(_fits(returned, item) for item in expected.items)
    if not (
        isinstance(returned, Instance)
        and isinstance(expected, Instance)
        and returned.type.has_base(expected.type.fullname)
    ):
        return False
    mapped = map_instance_to_supertype(returned, expected.type)
    type_vars = expected.type.defn.type_vars
    if not (len(mapped.args) == len(expected.args) == len(type_vars)):
        return False
    return all(
        is_subtype(want, got)
        if getattr(var, "variance", None) == CONTRAVARIANT
        else _fits(got, want)
        for got, want, var in zip(mapped.args, expected.args, type_vars, strict=True)
    )


def _check_handler(ctx: MethodContext) -> Type:
    if not ctx.arg_types or not ctx.arg_types[0]:
        return ctx.default_return_type
    handler = get_proper_type(ctx.arg_types[0][0])
    if not isinstance(handler, CallableType) or handler.is_ellipsis_args:
        return ctx.default_return_type  # (a Callable[..., X] says nothing to check)
    params = _params_model(handler)
    if params is None:
        ctx.api.fail(
            "A typed handler needs a parameter annotated with a jitpc.Method[...] subclass",
            ctx.context,
            code=JITPC_METHOD,
        )
        return ctx.default_return_type
    method_info = next(info for info in params.type.mro if info.fullname == _METHOD)
    expected = map_instance_to_supertype(params, method_info).args[0]
    returned = get_proper_type(handler.ret_type)
    # An async handler (or one returning an awaitable) answers with what it awaits to.
    if isinstance(returned, Instance) and returned.type.fullname in _AWAITABLES and returned.args:
        returned = get_proper_type(returned.args[-1])
    if not _fits(returned, expected):
        options = ctx.api.options
        ctx.api.fail(
            f"Handler returns {format_type(returned, options)}, but "
            f"{format_type(params, options)} declares the result type "
            f"{format_type(expected, options)}",
            ctx.context,
            code=JITPC_METHOD,
        )
    return ctx.default_return_type


class JitpcPlugin(Plugin):
    """Checks ``@server.method`` and ``@router.method`` handlers against their params model."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _check_handler if fullname in _DECORATORS else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return JitpcPlugin
