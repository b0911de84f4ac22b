"""jitpc: just-in-time IPC for Python.

Connect to a machine-local server by a string id, starting it on demand; the server holds the id
alone (a lock file) and spins itself down when idle. Both ends may request, notify and respond.
Wire-compatible with the Node package ``jitpc`` 2.x.
"""

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
from ._server import Server as Server
from ._server import listen as listen
from ._spawn import spawn as spawn
from ._typed import Router as Router
from ._version import __version__ as __version__

__all__ = (
    # connecting and serving
    "connect",
    "listen",
    "spawn",
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

# Public objects say they come from `jitpc`, where users import them (and pickle finds them).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
