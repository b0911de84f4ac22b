"""Where a server lives: the same paths Node's jitpc computes (PROTOCOL.md §1)."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest

import jitpc
from jitpc._paths import address, tmpdir

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "/tmp"),
        ({"TMPDIR": "/a", "TMP": "/b", "TEMP": "/c"}, "/a"),
        ({"TMPDIR": "", "TMP": "/b", "TEMP": "/c"}, "/b"),
        ({"TMP": "/b", "TEMP": "/c"}, "/b"),
        ({"TEMP": "/c"}, "/c"),
        ({"TMPDIR": "/a/"}, "/a"),
        ({"TMPDIR": "/a//"}, "/a/"),
        ({"TMPDIR": "/"}, "/"),
    ],
)
def test_posix_tmpdir_follows_node(env: dict[str, str], expected: str) -> None:
    assert tmpdir(env, platform="linux") == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TEMP": "C:\\T", "TMP": "C:\\U"}, "C:\\T"),
        ({"TMP": "C:\\U\\"}, "C:\\U"),
        ({"TEMP": "C:\\"}, "C:\\"),
        ({"SystemRoot": "C:\\Windows"}, "C:\\Windows\\temp"),
        ({"windir": "D:\\Win"}, "D:\\Win\\temp"),
    ],
)
def test_windows_tmpdir_follows_node(env: dict[str, str], expected: str) -> None:
    assert tmpdir(env, platform="win32") == expected


def test_posix_address() -> None:
    addr = address("my-app", {"TMPDIR": "/run/user/1000/"}, platform="linux")
    assert (addr.socket, addr.lock) == ("/run/user/1000/my-app.sock", "/run/user/1000/my-app.lock")


def test_address_normalises_like_node_path_join() -> None:
    addr = address("a/../b", {"TMPDIR": "/tmp"}, platform="linux")
    assert addr.socket == "/tmp/b.sock"


def test_an_address_is_an_immutable_value() -> None:
    addr = jitpc.address("my-app", {"TMPDIR": "/tmp"}, platform="linux")
    same = jitpc.address("my-app", {"TMPDIR": "/tmp"}, platform="linux")
    other = jitpc.address("my-app", {"TMPDIR": "/var/tmp"}, platform="linux")
    assert addr == same and hash(addr) == hash(same) and addr != other
    assert len({addr, same, other}) == 2
    assert addr != ("my-app", addr.socket, addr.lock)  # a value of its own, not a tuple
    with pytest.raises(AttributeError):
        addr.socket = "/elsewhere.sock"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del addr.lock
    assert copy.copy(addr) == pickle.loads(pickle.dumps(addr)) == addr
    assert repr(addr) == (
        "Address(server_id='my-app', socket='/tmp/my-app.sock', lock='/tmp/my-app.lock')"
    )


def test_windows_address() -> None:
    addr = address("my-app", {"TEMP": "C:\\Users\\me\\AppData\\Local\\Temp"}, platform="win32")
    assert addr.socket == "\\\\.\\pipe\\my-app"
    assert addr.lock == "C:\\Users\\me\\AppData\\Local\\Temp\\my-app.lock"


def test_too_long_socket_path_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="over this platform's limit"):
        address("x" * 200, {"TMPDIR": "/tmp"}, platform="linux")


@pytest.mark.parametrize("bad", ["", "a\0b"])
def test_unusable_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        address(bad)


async def test_the_public_address_names_a_servers_files(
    jitpc_id: str, jitpc_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = jitpc.address(jitpc_id)
    assert (where.socket, where.lock, where.log) == tuple(
        str(jitpc_tmpdir / f"{jitpc_id}.{suffix}") for suffix in ("sock", "lock", "log")
    )
    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    async with server:
        assert sorted(os.listdir(jitpc_tmpdir)) == sorted(
            os.path.basename(path) for path in (where.socket, where.lock)
        )
    # Read at each call, as Node's os.tmpdir() (tempfile.gettempdir() would cache it).
    monkeypatch.setenv("TMPDIR", "/elsewhere")
    assert jitpc.address(jitpc_id).lock == f"/elsewhere/{jitpc_id}.lock"
