"""The distribution as users get it: ``python -m build`` makes an sdist and a wheel, and the
wheel, installed into a fresh virtualenv with no source tree on the path, runs the demo and the
CLI on every Python this machine has from 3.11 on (the classifiers name no other)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import jitpc
from support import ROOT


def _python(version: str) -> str | None:
    """An interpreter of ``version`` that runs (a pyenv shim may name one that does not)."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


# The interpreters to install into: this one, and the newer ones the classifiers claim.
PYTHONS = {"3.11": sys.executable} | {
    version: found for version in ("3.12", "3.13") if (found := _python(version)) is not None
}
SLOW = 600  # building and installing reach the package index


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=SLOW,
    )
    return out


def test_the_sdist_and_the_wheel_hold_what_users_need(dist: Path) -> None:
    version = jitpc.__version__
    [wheel] = dist.glob(f"jitpc-{version}-py3-none-any.whl")  # pure Python, this version
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"jitpc-{version}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {"jitpc/py.typed", "jitpc/mypy.py", "jitpc/sync.py", "jitpc/__main__.py"} <= names
    assert f"{info}/licenses/LICENSE" in names
    assert not any(name.startswith(("tests/", "bench/", "examples/")) for name in names)
    assert f"Version: {version}\n" in metadata and "License-Expression: MIT" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    for python in PYTHONS:
        assert f"Classifier: Programming Language :: Python :: {python}" in metadata
    assert "jitpc = jitpc.__main__:main" in entry_points
    [sdist] = dist.glob(f"jitpc-{version}.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[-1] for name in archive.getnames()}
    assert {"README.md", "LICENSE", "pyproject.toml", "jitpc/_version.py"} <= members
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in changelog or f"## {version}" in changelog


@pytest.mark.parametrize("python", sorted(PYTHONS))
def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo_and_the_cli(
    dist: Path, tmp_path: Path, jitpc_tmpdir: Path, python: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([PYTHONS[python], "-m", "venv", str(venv)], check=True, timeout=SLOW)
    bin_ = venv / ("Scripts" if sys.platform == "win32" else "bin")
    [wheel] = dist.glob("*.whl")
    subprocess.run(
        [bin_ / "python", "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=SLOW,
    )
    # Far from the source tree, and nothing of it on the path: only the installed jitpc.
    demo = shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def run(*argv: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(arg) for arg in argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SLOW,
        )

    where = run(bin_ / "python", "-c", "import jitpc; print(jitpc.__file__, jitpc.__version__)")
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(venv) and version == jitpc.__version__, where
    for argv in ([bin_ / "python", "-m", "jitpc", "--help"], [bin_ / "jitpc", "--help"]):
        shown = run(*argv)
        assert shown.returncode == 0 and "usage: jitpc" in shown.stdout, shown
    try:
        out = run(bin_ / "python", demo / "counter_client.py", "demo")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[:4] == [
            "inc -> Counter(key='demo', count=1)",
            "inc -> Counter(key='demo', count=2)",
            "inc -> Counter(key='demo', count=3)",
            "get -> Counter(key='demo', count=3)",
        ]
    finally:
        stopped = run(bin_ / "jitpc", "stop", "demo", "--force")  # the daemon it spawned
    assert stopped.returncode == 0, stopped.stderr
