"""jitpc: just-in-time IPC for Python.

Connect to a machine-local server by a string id, starting it on demand; the server holds the id
alone (a lock file) and spins itself down when idle. Both ends may request, notify and respond.
Wire-compatible with the Node package ``jitpc`` 2.x.

The names below are imported when first used, so that ``import jitpc`` costs next to nothing
and a program that only catches jitpc's errors never imports asyncio or pydantic; in a program
that has imported asyncio already, they are imported at once.
"""

from __future__ import annotations

import importlib
import sys

from ._version import __version__ as __version__

# Not typing's: importing typing would be most of what `import jitpc` costs (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._client import Client as Client
    from ._client import connect as connect
    from ._errors import ClosedError as ClosedError
    from ._errors import ConnectError as ConnectError
    from ._errors import InternalError as InternalError
    from ._errors import InvalidParams as InvalidParams
    from ._errors import InvalidRequest as InvalidRequest
    from ._errors import JitpcError as JitpcError
    from ._errors import MethodNotFound as MethodNotFound
    from ._errors import ParseError as ParseError
    from ._errors import ProtocolError as ProtocolError
    from ._errors import RemoteError as RemoteError
    from ._errors import RequestCancelled as RequestCancelled
    from ._errors import ResultValidationError as ResultValidationError
    from ._errors import RPCError as RPCError
    from ._errors import VersionMismatch as VersionMismatch
    from ._method import Method as Method
    from ._paths import address as address
    from ._server import Server as Server
    from ._server import listen as listen
    from ._spawn import spawn as spawn
    from ._typed import Router as Router

__all__ = (
    # connecting and serving
    "connect",
    "listen",
    "spawn",
    "address",
    "Client",
    "Server",
    # typed methods
    "Method",
    "Router",
    # errors
    "JitpcError",
    "ConnectError",
    "VersionMismatch",
    "ClosedError",
    "ProtocolError",
    "ResultValidationError",
    "RemoteError",
    "RPCError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "RequestCancelled",
)

#: Where each public name is defined.
_HOMES = {
    "connect": "_client",
    "Client": "_client",
    "listen": "_server",
    "Server": "_server",
    "spawn": "_spawn",
    "address": "_paths",
    "Method": "_method",
    "Router": "_typed",
    **dict.fromkeys(__all__[__all__.index("JitpcError") :], "_errors"),  # the rest: errors
}


def _claim() -> None:
    """Make each public object of the modules imported so far say it comes from ``jitpc``,
    where users import it (and pickle finds it). Called when a name is first used, and by the
    public module that imports private ones itself (``jitpc.sync``)."""
    for name, home in _HOMES.items():
        module = sys.modules.get(f"{__name__}.{home}")
        if module is not None:
            getattr(module, name).__module__ = __name__


# Only at run time: to a type checker the names are the imports above, and any other is an error.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        _claim()
        globals()[name] = value  # later lookups are plain attribute reads
        return value

    if "asyncio" in sys.modules:
        # An asyncio program: load the rest now rather than at first use, which would hold
        # its running loop for the imports' time (asyncio's debug mode reports the stall).
        for _name in __all__:
            __getattr__(_name)
        del _name


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
