"""The documentation site: it builds without a warning, and every code sample in it runs as
printed.

The pages are ``docs/**/*.md`` (with what they include from other files through
``--8<-- "FILE:SECTION"``) and ``README.md``. Each page is one test: its fenced blocks run in
order, in a working directory of the page's own, with the test's private ``TMPDIR``. What a
block is comes from its language, and from an HTML comment on the line before its fence:

* ````` ```python `````: a script. It is written to a file in the working directory and run with
  this interpreter (this checkout's jitpc importable), and must exit 0. Where it shows its
  output, the output is checked: the text after each ``# >`` (a comment on its own line, or
  after code) is a line the script must print on stdout, and a block with such lines must print
  exactly those lines, in order (stderr is not checked: a handler's logged traceback, say).
* ````` ```js `````: a Node script, run with ``node``, ``NODE_PATH`` reaching jitpc@2.2.7 (the
  ``node_modules`` fixture); a page with a js block is skipped where node and npm are missing.
* ````` ```console `````: a shell session. Each ``$ COMMAND`` line runs in ``sh`` in the working
  directory, ``PATH`` starting with this interpreter's directory (``python``, ``jitpc``,
  ``mypy``, ``pytest``), and must exit 0 (a page shows a failing command's status with
  ``; echo "exit $?"``). The lines after a command, if there are any, are what it must print,
  stdout and stderr together. A command ending in `` &`` runs in the background until the block
  ends; its output is not checked.
* ``<!-- docs-test: file NAME -->`` before a block of any language: the block is written to
  ``NAME`` in the working directory, for the blocks after it, and is not run by itself. This
  is how a daemon module, its client and the session that runs them make one program.
* ``<!-- docs-test: skip (REASON) -->``: not run (a command that needs the network or minutes,
  a diagram); the reason is required.

Any other block (another language, a session that does not start with ``$``, an unknown
marker) fails its page's test: no block escapes silently. In expected output ``...`` stands for
any text (a pid, a path in the private ``TMPDIR``), a line that is only ``...`` for any number
of lines, and a run of spaces for any run of spaces (a table whose columns move with a pid).
After each script and each session, any server left running in ``TMPDIR`` (a spawned daemon)
is stopped with ``jitpc stop --force``, so that every block starts with none.

The build test also counts the code blocks of each rendered page, so that an indented
(unfenced) code block, which the extraction here would not see, fails too.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import HANG, ROOT, python_env

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the samples include POSIX shell sessions"
)

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]
BIN = Path(sys.executable).parent

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>.*?)\s*-->\s*$")
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
SECTION = re.compile(r"--8<--\s*\[(?P<edge>start|end):(?P<name>[\w-]+)\]")
# ``#>``, or ``# >`` as ruff's formatter writes it (it formats the pages' blocks too).
SHOWN = re.compile(r"(?:^|\s)# ?> ?(?P<line>.*)$")


@dataclass
class Block:
    where: str  # file:line of the opening fence
    lang: str
    text: str
    marker: str | None


def expand(path: Path) -> list[tuple[str, str]]:
    """The page's lines, each with its file:line, with ``--8<--`` includes put in."""
    lines: list[tuple[str, str]] = []
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found = SNIPPET.match(line)
        if found is None:
            lines.append((f"{name}:{number}", line))
            continue
        included = ROOT / found["file"]
        body = list(enumerate(included.read_text().splitlines(), 1))
        if found["section"]:
            edges = {
                (m["edge"], m["name"]): i
                for i, (_, text) in enumerate(body)
                if (m := SECTION.search(text))
            }
            start = edges[("start", found["section"])]
            body = body[start + 1 : edges[("end", found["section"])]]
        lines += [(f"{found['file']}:{n}", text) for n, text in body if not SECTION.search(text)]
    return lines


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, in order, each with the marker on the line before it."""
    found: list[Block] = []
    lines = expand(path)
    i = 0
    while i < len(lines):
        where, line = lines[i]
        opening = FENCE.match(line)
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        before = [text for _, text in lines[:i] if text.strip()]
        marked = MARKER.match(before[-1]) if before else None
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i][1].strip().startswith(fence):
            body.append(lines[i][1].removeprefix(indent))
            i += 1
        assert i < len(lines), f"{where}: the code block is not closed"
        i += 1
        found.append(
            Block(
                where, opening["lang"], "\n".join(body) + "\n", marked["what"] if marked else None
            )
        )
    return found


def expected_output(lines: list[str]) -> re.Pattern[str]:
    """The pattern that output shown as ``lines`` must match in full."""
    parts = []
    for line in lines:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = (re.sub(r"(?:\\ )+", " +", re.escape(piece)) for piece in line.split("..."))
        parts.append(".*?".join(pieces) + r"\n")
    return re.compile("".join(parts))


def check_output(where: str, what: str, shown: list[str], printed: str) -> None:
    if not printed.endswith("\n") and printed:
        printed += "\n"
    assert expected_output(shown).fullmatch(printed), (
        f"{where}: {what} printed\n{printed}\nbut the docs show\n" + "\n".join(shown)
    )


class Page:
    """Runs one page's blocks in ``cwd``."""

    def __init__(self, cwd: Path, tmpdir: Path, node_path: Path | None) -> None:
        self.cwd = cwd
        self.tmpdir = tmpdir
        self.env = python_env(PATH=os.pathsep.join([str(BIN), os.environ["PATH"]]))
        # No bytecode cache for the samples' own modules: daemons.md edits daemon.py with sed
        # within a second of importing it, and the edit keeps its size, so Python would run the
        # cached bytecode of the old text (a pyc is checked by mtime in seconds, and size).
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        # mypy finds jitpc through PYTHONPATH, as an installed library; a cache that outlives
        # the run saves the seconds of checking pydantic each time (git-ignored, as mypy's own).
        self.env["MYPY_CACHE_DIR"] = str(ROOT / ".mypy_cache" / "test_docs")
        if node_path is not None:
            self.env["NODE_PATH"] = str(node_path)

    def run(self, block: Block) -> None:
        marker = block.marker
        if marker is not None:
            if re.fullmatch(r"skip \(.+\)", marker):
                return
            named = re.fullmatch(r"file (\S+)", marker)
            assert named, f"{block.where}: unknown marker <!-- docs-test: {marker} -->"
            (self.cwd / named[1]).write_text(block.text)
            return
        try:
            if block.lang == "python":
                self.script(block, [sys.executable], ".py")
            elif block.lang == "js":
                self.script(block, ["node"], ".js")
            elif block.lang == "console":
                self.session(block)
            else:
                pytest.fail(
                    f"{block.where}: a ```{block.lang} block needs a marker: "
                    "<!-- docs-test: file NAME --> or <!-- docs-test: skip (REASON) -->"
                )
        finally:
            self.stop_servers()

    def script(self, block: Block, command: list[str], suffix: str) -> None:
        path = self.cwd / f"sample_{block.where.replace(':', '_').replace('/', '_')}{suffix}"
        path.write_text(block.text)
        done = subprocess.run(
            [*command, path.name],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=HANG,
        )
        assert done.returncode == 0, (block.where, done.returncode, done.stdout, done.stderr)
        shown = [m["line"] for line in block.text.splitlines() if (m := SHOWN.search(line))]
        if shown:
            check_output(block.where, "the script", shown, done.stdout)

    def session(self, block: Block) -> None:
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, f"{block.where}: a console block starts with a `$ ` command"
                steps[-1][1].append(line)
        background: list[subprocess.Popen[bytes]] = []
        try:
            for command, shown in steps:
                if command.rstrip().endswith("&"):
                    background.append(
                        subprocess.Popen(
                            command.rstrip().removesuffix("&"),
                            shell=True,
                            cwd=self.cwd,
                            env=self.env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    )
                    continue
                done = subprocess.run(
                    command,
                    shell=True,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=HANG,
                )
                assert done.returncode == 0, (block.where, command, done.stdout)
                if shown:
                    check_output(block.where, f"`{command}`", shown, done.stdout)
        finally:
            for proc in background:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(HANG)

    def stop_servers(self) -> None:
        """Stop what a block left serving in TMPDIR (a spawned daemon), Python's or Node's."""
        for sock in self.tmpdir.glob("*.sock"):
            subprocess.run(
                [sys.executable, "-m", "jitpc", "stop", sock.stem, "--force", "--timeout", "20"],
                env=self.env,
                capture_output=True,
                timeout=HANG,
            )


@pytest.fixture(autouse=True)
def _once(request: pytest.FixtureRequest) -> None:
    # The samples run the same under either loop option (they choose their own loop), so
    # `make test`'s second pass, --loop=uvloop, would only repeat them.
    if request.config.getoption("--loop") == "uvloop":
        pytest.skip("loop-independent: runs under --loop=asyncio")


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_every_sample_runs_as_printed(
    path: Path, tmp_path: Path, jitpc_tmpdir: Path, request: pytest.FixtureRequest
) -> None:
    found = blocks(path)
    node_path = None
    if any(block.lang == "js" and not (block.marker or "").startswith("skip") for block in found):
        node_path = request.getfixturevalue("node_modules")
    page = Page(tmp_path, jitpc_tmpdir, node_path)
    for block in found:
        page.run(block)


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=python_env(NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    # Every code block the site shows is one the tests saw (an indented block would not be).
    for path in sorted(DOCS.rglob("*.md")):
        page = path.relative_to(DOCS).with_suffix("")
        html = site / (page.parent if page.name == "index" else page) / "index.html"
        if page.parts[0] == "reference":
            continue  # signatures and docstrings: the code's own
        shown = html.read_text().count("<pre")
        assert shown == len(blocks(path)), (page, shown, len(blocks(path)))


def test_a_block_that_cannot_run_must_be_marked(tmp_path: Path, jitpc_tmpdir: Path) -> None:
    source = tmp_path / "page.md"
    source.write_text(
        "A page.\n\n```text\na diagram\n```\n\n"
        "<!-- docs-test: skip (a diagram) -->\n```text\nthe same\n```\n\n"
        "<!-- docs-test: fiel x.py -->\n```python\npass\n```\n"
    )
    unmarked, skipped, misspelt = blocks(source)
    page = Page(tmp_path, jitpc_tmpdir, None)
    with pytest.raises(pytest.fail.Exception, match="needs a marker"):
        page.run(unmarked)
    page.run(skipped)
    with pytest.raises(AssertionError, match="unknown marker"):
        page.run(misspelt)


def test_shown_output_matches_as_the_docstring_says() -> None:
    shown = expected_output(["pid ...: ok", "ID  STATE", "...", "end"])
    assert shown.fullmatch("pid 4321: ok\nID    STATE\nmore\nlines\nend\n")
    assert shown.fullmatch("pid 1: ok\nID STATE\nend\n")
    assert not shown.fullmatch("pid 1: ok\nIDSTATE\nend\n")
    assert not shown.fullmatch("pid 1: ok\nID STATE\nend\nmore\n")


def test_the_reference_has_every_public_name() -> None:
    import jitpc

    text = "\n".join(path.read_text() for path in (DOCS / "reference").glob("*.md"))
    rendered = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    assert {f"jitpc.{name}" for name in jitpc.__all__} | {"jitpc.sync", "jitpc.testing"} <= rendered


def literal_blocks(doc: str) -> list[str]:
    """The ``::`` literal blocks of a docstring (``inspect.getdoc``'s text), dedented."""
    found = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        body = list(itertools.takewhile(lambda text: not text or text[0] == " ", lines[i + 1 :]))
        found.append(textwrap.dedent("\n".join(body)).strip("\n") + "\n")
    return found


#: Docstring code that runs elsewhere than on a page: where.
RUN_ELSEWHERE = {
    "jitpc.testing": "tests/test_testing.py::test_the_module_docstring_example_passes",
}


def test_every_docstring_example_the_reference_shows_is_run() -> None:
    """The reference renders docstrings, and their code: each example is a page's sample
    (which the page's test runs), or is run by the test named in RUN_ELSEWHERE."""
    import jitpc
    import jitpc.sync
    import jitpc.testing

    objects: dict[str, Any] = {"jitpc.sync": jitpc.sync, "jitpc.testing": jitpc.testing}
    for owner_name, owner in [("jitpc", jitpc), ("jitpc.sync", jitpc.sync)]:
        for name in owner.__all__:
            objects[f"{owner_name}.{name}"] = obj = getattr(owner, name)
            if inspect.isclass(obj):
                for member in dir(obj):
                    if not member.startswith("_"):
                        objects[f"{owner_name}.{name}.{member}"] = getattr(obj, member)
    samples = [block.text for page in PAGES for block in blocks(page) if block.lang == "python"]
    examples = 0
    for name, obj in objects.items():
        for code in literal_blocks(inspect.getdoc(obj) or ""):
            if name in RUN_ELSEWHERE:
                continue
            examples += 1
            assert any(code in sample for sample in samples), (
                f"{name}'s docstring shows code that no page runs:\n{code}"
            )
    assert examples >= 1  # (jitpc.sync's)
