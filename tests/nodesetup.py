"""Install the Node package ``jitpc`` (the reference implementation) for the interop tests.

``ensure_node_jitpc()`` runs ``npm install --prefix <repo>/.node jitpc@2.2.7`` once and returns
the ``node_modules`` folder to put on ``NODE_PATH``. It is idempotent and safe to call from
several test processes at once: a file lock inside ``.node/`` serialises the installers, and an
install is skipped when ``.node/node_modules/jitpc/package.json`` already says 2.2.7.

A failed install raises: when ``node`` and ``npm`` are present the interop tests must fail, not
skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["JITPC_VERSION", "NODE_PREFIX", "ensure_node_jitpc", "installed_version"]

ROOT = Path(__file__).resolve().parent.parent
#: Where npm installs the Node package (git-ignored).
NODE_PREFIX = ROOT / ".node"
#: The version of Node jitpc the Python port is wire-compatible with.
JITPC_VERSION = "2.2.7"
#: How long one ``npm install`` may take before it counts as failed.
INSTALL_TIMEOUT = 600.0


def installed_version(prefix: Path = NODE_PREFIX) -> str | None:
    """The version of jitpc installed under ``prefix``, or ``None``."""
    try:
        manifest = json.loads((prefix / "node_modules" / "jitpc" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return version if isinstance(version, str) else None


@contextmanager
def _install_lock(prefix: Path) -> Iterator[None]:
    prefix.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":  # no fcntl; concurrent installers are not expected there
        yield
        return
    import fcntl

    fd = os.open(prefix / ".install.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_node_jitpc(prefix: Path = NODE_PREFIX, version: str = JITPC_VERSION) -> Path:
    """Install jitpc@``version`` under ``prefix`` unless it is there; return its node_modules.

    Raises:
        RuntimeError: npm is missing, or the install failed or did not give that version.
    """
    node_modules = prefix / "node_modules"
    if installed_version(prefix) == version:
        return node_modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: cannot install the Node jitpc package")
    with _install_lock(prefix):
        if installed_version(prefix) == version:  # another process installed it meanwhile
            return node_modules
        command = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            f"jitpc@{version}",
            "--no-audit",
            "--no-fund",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=prefix,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{' '.join(command)} took over {INSTALL_TIMEOUT} s") from exc
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed with exit code {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        found = installed_version(prefix)
        if found != version:
            raise RuntimeError(
                f"{' '.join(command)} succeeded but {node_modules}/jitpc is version {found!r}, "
                f"not {version}:\n{done.stdout}\n{done.stderr}"
            )
    return node_modules
