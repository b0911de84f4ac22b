"""The README's "A complete pair" (Running a daemon on demand), run as printed: its daemon
module and client written out unchanged, its shell session run line by line, each command's
printed output checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import HANG, ROOT, python_env

BLOCK = re.compile(r"<!-- readme-test: (\S+) -->\n```\w+\n(.*?)\n```", re.DOTALL)


def sections() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text()))


def session(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines, each with the output lines printed after it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # `python` is this interpreter; jitpc is importable (from this checkout) as once installed.
    env = python_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    return subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG
    )


def test_the_readme_names_its_files() -> None:
    assert set(sections()) == {"daemon.py", "client.py", "shell"}


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell session")
def test_the_complete_pair_runs_as_printed(tmp_path: Path, jitpc_tmpdir: Path) -> None:
    blocks = sections()
    (tmp_path / "daemon.py").write_text(blocks["daemon.py"] + "\n")
    (tmp_path / "client.py").write_text(blocks["client.py"] + "\n")
    outputs: dict[str, str] = {}
    try:
        for command, printed in session(blocks["shell"]):
            done = run(command, tmp_path)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if printed:
                assert done.stdout.splitlines() == printed, command
            outputs[command.split("#")[0].strip()] = done.stdout
        listing = outputs["python -m jitpc ls"]
        assert re.search(r"\bcounters\b.*\b1\b", listing), listing  # the id, version 1
        assert "inc a -> 2" in outputs["python -m jitpc logs counters"]
        assert not (jitpc_tmpdir / "counters.sock").exists()  # stopped, cleanly

        # The upgrade the README describes: VERSION = "2" replaces a running version 1.
        assert run("python client.py a", tmp_path).stdout == "a = 1\n"
        old = json.loads(run("python -m jitpc status counters", tmp_path).stdout)
        daemon = tmp_path / "daemon.py"
        daemon.write_text(daemon.read_text().replace('VERSION = "1"', 'VERSION = "2"', 1))
        assert run("python client.py a", tmp_path).stdout == "a = 1\n"
        new = json.loads(run("python -m jitpc status counters", tmp_path).stdout)
        assert (old["version"], new["version"]) == ("1", "2")
        assert old["pid"] != new["pid"]
        assert "serving version 2" in run("python -m jitpc logs counters", tmp_path).stdout
    finally:
        run("python -m jitpc stop counters --force", tmp_path)
