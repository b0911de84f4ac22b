"""How a peer's requests are answered, and its faults logged: the rules both I/O layers keep.

The asyncio :class:`~._connection.Connection` and the blocking :class:`~._blocking.Connection`
dispatch the peer's requests to responders; what an unknown method, a responder's exception, a
result that cannot be written or a cancel become is decided here, once. No I/O, and nothing
imported that a one-shot does not need (``logging`` is imported when something is logged).
"""

from __future__ import annotations

from ._errors import InternalError, MethodNotFound, RemoteError, RequestCancelled

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "COMPLAINTS_LOGGED",
    "cancelled",
    "complain",
    "error_for",
    "log_fields",
    "no_responder",
    "unencodable",
    "unknown_method",
]

#: Complaints about a peer logged one by one; past them, a count at each power of two.
COMPLAINTS_LOGGED = 10


def _logger() -> Any:
    import logging

    return logging.getLogger("jitpc")


def log_fields(server_id: str, client_id: int | None = None) -> dict[str, Any]:
    """The ``extra`` of jitpc's log records: ``jitpc_id``, the server id, and ``jitpc_client``,
    the server's number for the client (``None`` on the client's side, or for the server)."""
    return {"jitpc_id": server_id, "jitpc_client": client_id}


def unknown_method(method: str) -> MethodNotFound:
    """The answer to a request for a method nobody responds to (Node's message, -32601)."""
    return MethodNotFound(f"Unknown method: {method}")


def no_responder(method: str, extra: dict[str, Any]) -> None:
    """A notification for a method nobody responds to: dropped, and said at debug level."""
    _logger().debug("jitpc: no responder for notification %r", method, extra=extra)


def cancelled(id_: Any) -> RequestCancelled:
    """The answer to a request the peer cancelled while its responder ran (-32800)."""
    return RequestCancelled(f"request {id_!r} was cancelled")


def unencodable(id_: Any, exc: TypeError, extra: dict[str, Any]) -> InternalError:
    """The answer to a request whose result cannot be written as JSON (logged)."""
    _logger().error("jitpc: result of request %r cannot be sent: %s", id_, exc, extra=extra)
    return InternalError(f"result cannot be encoded: {exc}")


def error_for(method: str, exc: Exception, extra: dict[str, Any]) -> RemoteError:
    """What a responder's exception is sent as: a :class:`RemoteError` as it is (its code and
    data kept), any other as an :class:`InternalError` with its message, and logged."""
    if isinstance(exc, RemoteError):
        return exc
    _logger().error("jitpc: responder for %r raised", method, exc_info=exc, extra=extra)
    try:
        message = str(exc) or type(exc).__name__
    except Exception:  # an exception whose __str__ raises, too
        message = type(exc).__name__
    return InternalError(message)


def complain(n: int, label: str, message: str, args: tuple[Any, ...], extra: Any) -> None:
    """Log the ``n``-th thing the peer ``label`` did wrong: the first ``COMPLAINTS_LOGGED``
    in full, then only a count at each power of two, so that a peer that floods garbage
    cannot flood the log."""
    if n <= COMPLAINTS_LOGGED:
        _logger().warning("jitpc peer %r " + message, label, *args, extra=extra)
    elif n & (n - 1) == 0:
        _logger().warning(
            "jitpc peer %r: %d bad messages so far; %d more not logged one by one",
            label,
            n,
            n - COMPLAINTS_LOGGED,
            extra=extra,
        )
