"""The public surface: few names, all from ``jitpc``, errors in one tree that pickles."""

from __future__ import annotations

import pickle

import pytest

import jitpc

pytestmark = pytest.mark.anyio

PUBLIC = {
    "connect",
    "listen",
    "spawn",
    "address",
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


def test_modules_are_private_but_sync_the_mypy_plugin_and_the_pytest_plugin() -> None:
    import pkgutil

    public = {"mypy", "sync", "testing"}
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


def test_import_jitpc_imports_neither_asyncio_nor_pydantic_before_they_are_used() -> None:
    # Names load when first used: a program that only imports jitpc (or catches its errors)
    # pays for neither.
    import subprocess
    import sys

    code = (
        "import sys, jitpc\n"
        "jitpc.ConnectError, jitpc.RemoteError, jitpc.__version__\n"
        "print(sorted(m for m in ('asyncio', 'pydantic', 'pydantic_core') if m in sys.modules))\n"
        "jitpc.connect, jitpc.spawn, jitpc.address\n"  # an untyped client: no pydantic yet
        "print(sorted(m for m in ('asyncio', 'pydantic') if m in sys.modules))\n"
        "jitpc.Method\n"  # a typed one
        "print(sorted(m for m in ('asyncio', 'pydantic') if m in sys.modules))\n"
        "print(jitpc.ConnectError.__module__, jitpc.Client.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "['asyncio']", "['asyncio', 'pydantic']", "jitpc jitpc"]


def test_errors_say_they_come_from_jitpc_however_they_are_reached() -> None:
    import subprocess
    import sys

    code = (
        "import jitpc.sync, jitpc._errors as e\n"
        "print(e.ConnectError.__module__, e.VersionMismatch.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["jitpc", "jitpc"]


def test_dir_lists_the_public_names() -> None:
    assert set(jitpc.__all__) <= set(dir(jitpc))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jitpc.nope  # type: ignore[attr-defined]  # noqa: B018


def test_an_asyncio_program_loads_everything_at_import() -> None:
    # Not at first use inside the running loop, which would stall it (and -X dev says so).
    import subprocess
    import sys

    code = "import asyncio, sys, jitpc\nprint('jitpc._server' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True"]


async def test_an_untyped_one_shot_never_imports_pydantic(jitpc_id: str) -> None:
    # The commonest use: a short command asking the daemon one thing, untyped (the CLI, the
    # sync facade): pydantic's import is most of a one-shot's time, and it needs none of it.
    import asyncio
    import sys

    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    server.on_client(lambda client: client.respond("echo", lambda params: params))
    code = (
        "import sys, jitpc.sync\n"
        "with jitpc.sync.connect(sys.argv[1], timeout=30) as client:\n"
        "    print(client.request('echo', {'a': 1}))\n"
        "print('pydantic' in sys.modules)\n"
    )
    async with server:
        for argv in (["-c", code, jitpc_id], ["-m", "jitpc", "call", jitpc_id, "echo", "[1]"]):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "importtime", *argv, stdout=-1, stderr=-1
            )
            out, err = await asyncio.wait_for(child.communicate(), 60)
            assert child.returncode == 0, err
            imported = {line.rsplit("|", 1)[-1].strip() for line in err.decode().splitlines()}
            assert "pydantic" not in imported and "jitpc._method" not in imported, argv
            assert out.decode().split()[0] in ("{'a':", "[1]"), out
