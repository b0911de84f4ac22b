"""The jitpc error tree.

Every error jitpc raises on purpose derives from :class:`JitpcError`::

    JitpcError
    ├── ConnectError(JitpcError, ConnectionError)  no server, even after spinup and back-off
    │   └── VersionMismatch                        the server runs another version than asked for
    ├── ClosedError(JitpcError, ConnectionError)   the connection closed before the response
    ├── ProtocolError                              the peer broke the framing or message rules
    ├── ResultValidationError(JitpcError, ValueError)  a typed call's result failed its model
    └── RemoteError                                the peer answered a request with an error object
        ├── RPCError                               raised by a handler to choose its error code
        ├── ParseError        -32700
        ├── InvalidRequest    -32600
        ├── MethodNotFound    -32601  (and Node's code-less "Unknown method: NAME")
        ├── InvalidParams     -32602
        ├── InternalError     -32603
        └── RequestCancelled  -32800

`listen()` returning ``None`` because another process serves the id is not an error.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = (
    False  # (not typing's: a program that only catches jitpc's errors need not import it)
)
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = [
    "ClosedError",
    "ConnectError",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "JitpcError",
    "MethodNotFound",
    "ParseError",
    "ProtocolError",
    "RPCError",
    "RemoteError",
    "RequestCancelled",
    "ResultValidationError",
    "VersionMismatch",
]


#: How Node jitpc 2.x begins the message of its (code-less) error for an unknown method.
_NODE_UNKNOWN_METHOD = "Unknown method: "


class JitpcError(Exception):
    """Base class of every error raised by jitpc."""


class ConnectError(JitpcError, ConnectionError):
    """No server answered at the id's socket, after spinup and the whole back-off.

    ``__cause__`` is the last OS error seen (or the exception raised by the spinup hook).
    """

    def __init__(self, message: str, *, server_id: str, path: str) -> None:
        super().__init__(message)
        self.server_id = server_id
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_connect_error, (str(self), self.server_id, self.path))


def _rebuild_connect_error(message: str, server_id: str, path: str) -> ConnectError:
    return ConnectError(message, server_id=server_id, path=path)


class VersionMismatch(ConnectError):
    """The server runs another version, or other method schemas, than the client asked for
    (``connect(version=..., methods=...)``), and was not (or could not be) restarted.

    Attributes:
        expected: the version asked for (``None``: only ``methods`` were checked).
        found: the version the server reports (``None``: it reports none; a Node jitpc
            server, which has no ``rpc.status``, never does).
        methods: the names of the methods whose schemas differ from the client's, or that the
            server does not report.
    """

    def __init__(
        self,
        message: str,
        *,
        server_id: str,
        path: str,
        expected: str | None,
        found: str | None,
        methods: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, server_id=server_id, path=path)
        self.expected = expected
        self.found = found
        self.methods = methods

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_version_mismatch,
            (str(self), self.server_id, self.path, self.expected, self.found, self.methods),
        )


def _rebuild_version_mismatch(
    message: str,
    server_id: str,
    path: str,
    expected: str | None,
    found: str | None,
    methods: tuple[str, ...],
) -> VersionMismatch:
    return VersionMismatch(
        message, server_id=server_id, path=path, expected=expected, found=found, methods=methods
    )


class ClosedError(JitpcError, ConnectionError):
    """The connection was closed or destroyed before the request got its response.

    A request that fails with this error may or may not have run on the peer: jitpc never
    resends it.
    """


class ProtocolError(JitpcError):
    """The peer broke the framing or message rules (for example an over-long line)."""


class ResultValidationError(JitpcError, ValueError):
    """A typed call's result did not fit the method's result type.

    The peer ran the request; what it answered is kept, unvalidated, in ``result``.

    Attributes:
        errors: pydantic's error list (``loc``, ``type``, ``msg``, ...).
        result: the raw result as received.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]], result: Any) -> None:
        super().__init__(message)
        self.errors = errors
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.errors, self.result))


class RemoteError(JitpcError):
    """The peer answered a request with an error object.

    Attributes:
        code: the error's ``code``: an ``int`` for JSON-RPC peers, often a string such as
            ``"E_BOOM"`` from a Node peer, ``None`` when absent.
        message: the error's message.
        data: the JSON-RPC ``data`` member, ``None`` when absent.
        stack: the remote stack trace a Node peer sends, ``None`` when absent.
    """

    #: The JSON-RPC code a subclass stands for (``None`` for the base class).
    CODE: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        code: Any = None,
        data: Any = None,
        *,
        stack: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: Any = self.CODE if code is None else code
        self.data: Any = data
        self.stack = stack

    def __str__(self) -> str:
        return self.message if self.code is None else f"{self.message} (code {self.code!r})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, code={self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_remote_error, (type(self), self.message, self.code, self.data, self.stack))

    @staticmethod
    def from_wire(error: object) -> RemoteError:
        """Build the error for a wire error object, choosing the subclass by its ``code``.

        Node jitpc answers a request for a method it lacks with no code, only the message
        ``Unknown method: NAME`` (and a stack): such an error is a :class:`MethodNotFound`
        too, its ``code`` -32601 (the class's), its message and stack as sent.
        """
        if not isinstance(error, Mapping):
            return RemoteError(f"malformed error object: {error!r}", data=error)
        message = error.get("message")
        if not isinstance(message, str):
            message = "" if message is None else repr(message)
        code = error.get("code")
        stack = error.get("stack")
        if type(code) is int:
            cls = _BY_CODE.get(code, RemoteError)
        elif code is None and message.startswith(_NODE_UNKNOWN_METHOD):
            cls = MethodNotFound
        else:
            cls = RemoteError
        return cls(
            message,
            code,
            error.get("data"),
            stack=stack if isinstance(stack, str) else None,
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON error object for this error, as sent in a response."""
        obj: dict[str, Any] = {"message": self.message}
        if self.code is not None:
            obj["code"] = self.code
        if self.data is not None:
            obj["data"] = self.data
        if self.stack is not None:
            obj["stack"] = self.stack
        return obj


def _rebuild_remote_error(
    cls: type[RemoteError], message: str, code: Any, data: Any, stack: str | None
) -> RemoteError:
    return cls(message, code, data, stack=stack)


class RPCError(RemoteError):
    """Raise it from a handler to answer with this code, message and data.

    ``raise jitpc.RPCError(-32001, "quota exceeded", {"limit": 10})``. The caller receives a
    :class:`RemoteError` (or the subclass for a standard code) with the same fields.
    """

    def __init__(self, code: Any, message: str, data: Any = None) -> None:
        super().__init__(message, code, data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message, self.data))


class ParseError(RemoteError):
    """The peer could not parse what was sent (JSON-RPC -32700)."""

    CODE = -32700


class InvalidRequest(RemoteError):
    """The peer received JSON that is not a valid request (JSON-RPC -32600)."""

    CODE = -32600


class MethodNotFound(RemoteError):
    """The peer has no responder for the method (JSON-RPC -32601).

    Also what a Node jitpc server's code-less ``Unknown method: NAME`` error becomes; its
    ``code`` is -32601 all the same, so a handler that lets it propagate sends a Node client
    ``{"message": "Unknown method: NAME", "code": -32601, "stack": ...}``.
    """

    CODE = -32601


class InvalidParams(RemoteError):
    """The params did not fit the method (JSON-RPC -32602); ``data`` says why."""

    CODE = -32602


class InternalError(RemoteError):
    """The peer's handler failed (JSON-RPC -32603)."""

    CODE = -32603


class RequestCancelled(RemoteError):
    """The request was cancelled before it finished (-32800, as in LSP).

    A jitpc peer answers a cancelled request with it once; the caller that cancelled has
    already given the request up, so it is seen only by peers that send the cancel by hand.
    """

    CODE = -32800


_BY_CODE: dict[Any, type[RemoteError]] = {
    cls.CODE: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        RequestCancelled,
    )
}
