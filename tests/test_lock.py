"""The id lock, on real lock files, contended from other processes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jitpc._lock import try_acquire
from support import HANG, python_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX lock files")

HOLDER = """
import sys
from jitpc._lock import try_acquire
lock = try_acquire(sys.argv[1])
print("held" if lock else "busy", flush=True)
sys.stdin.read()
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    return proc


def test_second_acquire_in_one_process_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock = try_acquire(str(path))
    assert lock is not None
    assert try_acquire(str(path)) is None
    lock.release()
    lock.release()
    again = try_acquire(str(path))
    assert again is not None
    again.release()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    try:
        assert try_acquire(str(path)) is None
    finally:
        holder.communicate("", timeout=HANG)
    lock = try_acquire(str(path))
    assert lock is not None
    lock.release()


def test_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    assert try_acquire(str(path)) is None
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=HANG)
    lock = try_acquire(str(path))
    assert lock is not None
    lock.release()


def test_lock_file_is_never_truncated_nor_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.write_bytes(b"keep me")
    lock = try_acquire(str(path))
    assert lock is not None
    lock.release()
    assert path.read_bytes() == b"keep me"


def test_new_lock_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock = try_acquire(str(path))
    assert lock is not None
    lock.release()
    assert path.stat().st_mode & 0o777 == 0o600


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"data")
    path = tmp_path / "x.lock"
    path.symlink_to(target)
    with pytest.raises(OSError) as info:
        try_acquire(str(path))
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b"data"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_lock_file_of_another_user_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.touch()
    os.chown(path, 4321, 4321)
    with pytest.raises(PermissionError, match="owned by uid 4321"):
        try_acquire(str(path))


def test_lock_path_that_is_not_a_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.mkdir()
    with pytest.raises(OSError):
        try_acquire(str(path))


def test_lock_knows_when_its_file_was_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock = try_acquire(str(path))
    assert lock is not None and lock.still_ours()
    path.unlink()
    assert not lock.still_ours()
    other = try_acquire(str(path))  # a fresh inode: nothing contends for the orphaned one
    assert other is not None
    other.release()
    lock.release()
