"""The public surface: few names, all from ``jitpc``, errors in one tree that pickles."""

from __future__ import annotations

import pickle

import pytest

import jitpc

PUBLIC = {
    "connect",
    "listen",
    "spawn",
    "Client",
    "Server",
    "Method",
    "Router",
    "JitpcError",
    "ConnectError",
    "VersionMismatch",
    "ClosedError",
    "ProtocolError",
    "RemoteError",
    "RPCError",
    "ResultValidationError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "RequestCancelled",
}


def test_all_is_the_documented_tuple() -> None:
    assert isinstance(jitpc.__all__, tuple)
    assert len(set(jitpc.__all__)) == len(jitpc.__all__)
    assert set(jitpc.__all__) == PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_resolve_and_live_in_jitpc(name: str) -> None:
    obj = getattr(jitpc, name)
    assert obj.__module__ == "jitpc"
    assert obj.__doc__


def test_modules_are_private_but_sync_and_the_mypy_plugin() -> None:
    import pkgutil

    public = {"mypy", "sync"}
    names = [m.name for m in pkgutil.iter_modules(jitpc.__path__) if m.name not in public]
    assert names and all(n.startswith("_") for n in names), names


def test_errors_form_one_tree() -> None:
    for name in PUBLIC:
        obj = getattr(jitpc, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, jitpc.JitpcError)
    assert issubclass(jitpc.ConnectError, ConnectionError)
    assert issubclass(jitpc.VersionMismatch, jitpc.ConnectError)
    assert issubclass(jitpc.ClosedError, ConnectionError)
    for cls in (jitpc.InvalidParams, jitpc.MethodNotFound, jitpc.InternalError):
        assert issubclass(cls, jitpc.RemoteError)


@pytest.mark.parametrize(
    "error",
    [
        jitpc.RemoteError("boom", "E_BOOM", {"x": 1}, stack="Error: boom"),
        jitpc.InvalidParams("bad params", data=[{"loc": ["key"]}]),
        jitpc.ConnectError("no server", server_id="a", path="/tmp/a.sock"),
        jitpc.VersionMismatch(
            "m", server_id="a", path="/p", expected="2", found=None, methods=("inc",)
        ),
        jitpc.ClosedError("closed"),
        jitpc.RPCError(-32001, "quota", {"limit": 1}),
        jitpc.ResultValidationError("bad result", [{"loc": ["count"]}], {"count": "x"}),
    ],
)
def test_errors_pickle(error: jitpc.JitpcError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_remote_error_from_wire_picks_the_class_by_code() -> None:
    assert type(jitpc.RemoteError.from_wire({"code": -32602, "message": "m"})) is (
        jitpc.InvalidParams
    )
    assert type(jitpc.RemoteError.from_wire({"code": "E_X", "message": "m"})) is jitpc.RemoteError
    odd = jitpc.RemoteError.from_wire("just a string")
    assert type(odd) is jitpc.RemoteError and odd.data == "just a string"
    assert repr(jitpc.MethodNotFound("x")) == "MethodNotFound(message='x', code=-32601)"
