"""One-shot benchmark: a fresh process asking a warm daemon one thing, and exiting (issue 13).

Run from the repository root::

    .venv/bin/python bench/oneshot.py                 # 15 rounds, about a minute
    .venv/bin/python bench/oneshot.py --rounds 12
    .venv/bin/python bench/oneshot.py --pin           # every process on CPU 0 (taskset -c 0)
    .venv/bin/python bench/oneshot.py --json bench/results-oneshot.json

It starts one warm daemon (bench/oneshot_server.py: jitpc for Python, in its own process, in a
private ``TMPDIR``), then runs each system below as a fresh process, in rounds: a Node one-shot
client before and after every other run (``node, bare, node, floor, node, cli, ...``, the order
of the others rotated each round). Each run's wall time is taken from spawn to exit, and its
output is checked. A run's ratio to Node is over the mean of the two Node runs beside it; its
ratio to the floor is over the floor run of the same round. The table gives medians and IQRs of
those per-round figures, with issue 13's goals. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVER_ID = "oneshot"
NODE_JITPC_VERSION = "2.2.7"

#: A one-shot run still going after this long is a hang.
RUN_TIMEOUT_S = 60.0
#: How long the daemon may take to say it is ready.
READY_TIMEOUT_S = 30.0

ECHO = {"a": 1}

SYNC_CODE = f"""\
import jitpc.sync
with jitpc.sync.connect({SERVER_ID!r}) as c:
    print(c.request('echo', {{'a': 1}}))
"""


# -- the systems -----------------------------------------------------------------------------------


def _json_is(expected: Any) -> Callable[[str], bool]:
    def check(out: str) -> bool:
        try:
            return bool(json.loads(out) == expected)
        except ValueError:
            return False

    return check


def _text_is(expected: str) -> Callable[[str], bool]:
    return lambda out: out.strip() == expected


@dataclass(frozen=True)
class System:
    """One way of making the one-shot call (or of starting an interpreter), run fresh each time."""

    key: str
    label: str
    #: The command, given the interpreter, the daemon's socket path and node's path.
    argv: Callable[[str, str, str], list[str]]
    #: Whether the process wrote the right thing on stdout.
    check: Callable[[str], bool]
    expected: str


NODE = "node"
FLOOR = "floor"
TYPED_FLOOR = "typed_floor"
BARE = "bare"
IMPORT = "import"

SYSTEMS: tuple[System, ...] = (
    System(BARE, "bare: python -c pass", lambda py, s, n: [py, "-c", "pass"], _text_is(""), ""),
    System(
        IMPORT,
        "python -c 'import jitpc'",
        lambda py, s, n: [py, "-c", "import jitpc"],
        _text_is(""),
        "",
    ),
    System(
        FLOOR,
        "floor: raw socket + json",
        lambda py, s, n: [py, str(BENCH / "oneshot_floor.py"), s],
        _json_is({"jsonrpc": "2.0", "id": 1, "result": ECHO}),
        '{"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}',
    ),
    System(
        TYPED_FLOOR,
        "typed floor: + pydantic",
        lambda py, s, n: [py, str(BENCH / "oneshot_typed_floor.py"), s],
        _json_is(ECHO),
        '{"a":1}',
    ),
    System(
        NODE,
        "node: Node jitpc client",
        lambda py, s, n: [n, str(BENCH / "oneshot_node.js"), SERVER_ID],
        _json_is(ECHO),
        '{"a":1}',
    ),
    System(
        "cli",
        "cli: python -m jitpc call",
        lambda py, s, n: [py, "-m", "jitpc", "call", SERVER_ID, "echo", '{"a":1}'],
        _json_is(ECHO),
        '{"a": 1}',
    ),
    System(
        "sync",
        "sync: jitpc.sync request",
        lambda py, s, n: [py, "-c", SYNC_CODE],
        _text_is("{'a': 1}"),
        "{'a': 1}",
    ),
    System(
        "typed_sync",
        "typed sync: jitpc.sync call",
        lambda py, s, n: [py, str(BENCH / "oneshot_typed_sync.py"), SERVER_ID],
        _json_is(ECHO),
        '{"a":1}',
    ),
)
BY_KEY = {s.key: s for s in SYSTEMS}


@dataclass(frozen=True)
class Goal:
    """Issue 13's goal for one system: its per-round ratio to ``ref`` (or, for ``ref="bare"``,
    its difference from bare, in ms), median over the rounds, at most ``limit``."""

    system: str
    ref: str
    limit: float

    def label(self) -> str:
        if self.ref == BARE:
            return f"adds <= {self.limit:g} ms over bare"
        return f"<= {self.limit:g}x {self.ref.replace('_', ' ')}"


GOALS: tuple[Goal, ...] = (
    Goal("cli", NODE, 0.6),
    Goal("cli", FLOOR, 1.6),
    Goal("sync", NODE, 0.6),
    Goal("sync", FLOOR, 1.6),
    Goal("typed_sync", TYPED_FLOOR, 1.15),
    Goal(IMPORT, BARE, 15.0),
)

REFS = (NODE, FLOOR, TYPED_FLOOR)

LAYOUTS = ("venv", "installed")


# -- running ---------------------------------------------------------------------------------------


class RunError(RuntimeError):
    """A one-shot run failed, printed the wrong thing, or hung."""


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    cpu_ms: float


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def children_cpu_s() -> float:
    """User + system CPU of every waited-for child so far: one run's is the difference."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    """Runs the systems, one process at a time, in a private directory (the children's TMPDIR
    and working directory) where the daemon listens."""

    def __init__(
        self, tmp: Path, python: str, node: str, node_modules: Path, prefix: list[str]
    ) -> None:
        self.tmp = tmp
        self.python = python
        self.node = node
        self.prefix = prefix
        self.socket = str(tmp / f"{SERVER_ID}.sock")
        self.env = dict(os.environ)
        self.env["TMPDIR"] = str(tmp)
        self.env["NODE_PATH"] = str(node_modules)
        # Bytecode caches as a user's install has them: written once, then read.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.daemon: subprocess.Popen[bytes] | None = None

    def command(self, system: System) -> list[str]:
        return [*self.prefix, *system.argv(self.python, self.socket, self.node)]

    def start_daemon(self) -> None:
        cmd = [*self.prefix, self.python, str(BENCH / "oneshot_server.py"), SERVER_ID]
        self.daemon = subprocess.Popen(
            cmd,
            cwd=self.tmp,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.daemon.stdout is not None
        ready, _, _ = select.select([self.daemon.stdout], [], [], READY_TIMEOUT_S)
        line = self.daemon.stdout.readline() if ready else b""
        try:
            said = json.loads(line)
        except ValueError:
            said = None
        if said != {"ready": True}:
            raise RunError(f"the daemon did not start: {' '.join(cmd)} said {line!r}")

    def stop_daemon(self) -> None:
        daemon, self.daemon = self.daemon, None
        if daemon is None:
            return
        assert daemon.stdin is not None
        try:
            daemon.stdin.close()  # it exits when its stdin closes
            daemon.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            daemon.kill()
            daemon.wait()
        finally:
            if daemon.stdout is not None:
                daemon.stdout.close()

    def run(self, system: System) -> Sample:
        if self.daemon is None or self.daemon.poll() is not None:
            raise RunError("the daemon has exited")
        cmd = self.command(system)
        cpu0 = children_cpu_s()
        t0 = time.perf_counter_ns()
        try:
            done = subprocess.run(
                cmd,
                cwd=self.tmp,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RunError(f"{system.key}: {cmd} ran over {RUN_TIMEOUT_S:g} s") from exc
        t1 = time.perf_counter_ns()
        cpu1 = children_cpu_s()
        out = done.stdout.decode(errors="replace")
        err = done.stderr.decode(errors="replace")
        if done.returncode != 0 or err or not system.check(out):
            raise RunError(
                f"{system.key}: {cmd} exited {done.returncode}, expected output "
                f"{system.expected!r}\nstdout: {out!r}\nstderr: {err}"
            )
        return Sample((t1 - t0) / 1e6, (cpu1 - cpu0) * 1e3)


@dataclass
class Round:
    """One round: every system once, with a Node run before and after each."""

    order: list[str]
    samples: dict[str, Sample]
    #: The mean wall time of the two Node runs beside each system's run.
    node_beside: dict[str, float]
    node_runs: list[Sample]


def run_round(runner: Runner, order: Sequence[str]) -> Round:
    node = BY_KEY[NODE]
    node_runs = [runner.run(node)]
    samples: dict[str, Sample] = {}
    beside: dict[str, float] = {}
    for key in order:
        samples[key] = runner.run(BY_KEY[key])
        node_runs.append(runner.run(node))
        beside[key] = (node_runs[-2].wall_ms + node_runs[-1].wall_ms) / 2
    # Node's own run, for the table: the mean of its runs this round.
    samples[NODE] = Sample(
        statistics.fmean(s.wall_ms for s in node_runs),
        statistics.fmean(s.cpu_ms for s in node_runs),
    )
    beside[NODE] = samples[NODE].wall_ms
    return Round(list(order), samples, beside, node_runs)


# -- figures ---------------------------------------------------------------------------------------


def quartiles(values: Sequence[float]) -> dict[str, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3}


def per_round(rounds: Sequence[Round], key: str, ref: str) -> list[float]:
    """``key``'s per-round figure against ``ref``: a ratio, or for ``ref="bare"`` the difference
    in wall ms. Against Node, the ratio is over the Node runs beside ``key``'s run; for Node
    itself against a floor, it is the Node runs beside the floor's run over the floor's."""
    out = []
    for r in rounds:
        if ref == BARE:
            out.append(r.samples[key].wall_ms - r.samples[BARE].wall_ms)
        elif ref == NODE:
            out.append(r.samples[key].wall_ms / r.node_beside[key])
        elif key == NODE:
            out.append(r.node_beside[ref] / r.samples[ref].wall_ms)
        else:
            out.append(r.samples[key].wall_ms / r.samples[ref].wall_ms)
    return out


def summarise(rounds: Sequence[Round]) -> list[dict[str, Any]]:
    rows = []
    for system in SYSTEMS:
        key = system.key
        if key == NODE:
            wall = [s.wall_ms for r in rounds for s in r.node_runs]
            cpu = [s.cpu_ms for r in rounds for s in r.node_runs]
        else:
            wall = [r.samples[key].wall_ms for r in rounds]
            cpu = [r.samples[key].cpu_ms for r in rounds]
        row: dict[str, Any] = {
            "system": key,
            "label": system.label,
            "wall_ms": quartiles(wall),
            "cpu_ms": quartiles(cpu),
            "runs": len(wall),
        }
        for ref in REFS:
            row[f"vs_{ref}"] = None if ref == key else quartiles(per_round(rounds, key, ref))
        if key == IMPORT:
            row["over_bare_ms"] = quartiles(per_round(rounds, key, BARE))
            row["cpu_over_bare_ms"] = quartiles(
                [r.samples[key].cpu_ms - r.samples[BARE].cpu_ms for r in rounds]
            )
        goals = []
        for goal in GOALS:
            if goal.system != key:
                continue
            figure = row["over_bare_ms" if goal.ref == BARE else f"vs_{goal.ref}"]["median"]
            goals.append(
                {
                    "ref": goal.ref,
                    "limit": goal.limit,
                    "label": goal.label(),
                    "median": figure,
                    "met": figure <= goal.limit,
                }
            )
        row["goals"] = goals
        rows.append(row)
    return rows


def q_cells(q: dict[str, float] | None, spec: str, unit: str = "") -> list[str]:
    if q is None:
        return ["-", ""]
    return [
        f"{format(q['median'], spec)}{unit}",
        f"{format(q['q1'], spec)}..{format(q['q3'], spec)}",
    ]


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    headers = ["system", "wall ms", "IQR", "CPU ms", "/ node", "IQR", "/ floor", "IQR"]
    headers += ["/ typed floor", "IQR", "goal (median)", "met"]
    lines = []
    for row in rows:
        cells = [row["label"], *q_cells(row["wall_ms"], ".1f")]
        cells.append(format(row["cpu_ms"]["median"], ".1f"))
        for ref in REFS:
            cells += q_cells(row[f"vs_{ref}"], ".2f", "x")
        goals = row["goals"]
        cells.append(", ".join(g["label"] for g in goals) or "-")
        cells.append(" ".join("yes" if g["met"] else "NO" for g in goals) or "")
        lines.append(cells)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    text = {0, len(headers) - 2, len(headers) - 1}

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in text else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(render(headers))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(render(line))


# -- machine facts ---------------------------------------------------------------------------------


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def command_output(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.stdout.strip() or None


def git_commit() -> str | None:
    """The checkout's commit, ``-dirty`` when jitpc/ or this benchmark's files differ from it."""
    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    commit = command_output([*git, "rev-parse", "--short", "HEAD"])
    if commit is None:
        return None
    changed = command_output([*git, "status", "--porcelain", "--", "jitpc", "bench/oneshot*"])
    return commit + ("-dirty" if changed else "")


def jitpc_version() -> str | None:
    try:
        import jitpc
    except ImportError:
        return None
    return jitpc.__version__


def node_jitpc() -> Path:
    """Node jitpc's node_modules, installed by the test helper (tests/nodesetup.py) on first use.

    Loaded by path, as tests/ is no package and not on this script's path.
    """
    spec = importlib.util.spec_from_file_location("nodesetup", ROOT / "tests" / "nodesetup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ensure: Callable[..., Path] = module.ensure_node_jitpc
    return ensure(version=NODE_JITPC_VERSION)


def installed_python(tmp: Path) -> str:
    """The interpreter of ``--layout installed``: a throwaway venv in ``tmp`` made from this
    venv's base interpreter, with a copy of jitpc/ on its path as a wheel would install it, and
    this venv's site-packages (pydantic, orjson, ...) after it, through a .pth file of its own.

    The .pth files of this venv's site-packages are not run there (a directory a .pth names is
    put on the path, its own .pth files are not read), so no start-up imports setuptools'
    editable finder, which every interpreter of an editable install's venv does.
    """
    import venv

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = str(env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    src = tmp / "src"
    shutil.copytree(ROOT / "jitpc", src / "jitpc", ignore=shutil.ignore_patterns("__pycache__"))
    ask = "import platform, sysconfig; print(sysconfig.get_paths()['purelib'], "
    ask += "platform.python_version())"
    said = command_output([python, "-c", ask])
    if said is None:
        raise RunError(f"the throwaway venv {env_dir} does not run")
    purelib, version = said.rsplit(" ", 1)
    if version != platform.python_version():
        raise RunError(f"the throwaway venv runs Python {version}, not this one's")
    paths = sysconfig.get_paths()
    ours = dict.fromkeys([str(src), paths["purelib"], paths["platlib"]])
    (Path(purelib) / "oneshot.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="One-shot benchmark: fresh processes making one call to a warm jitpc daemon, "
        "interleaved with a Node jitpc one-shot client, reported as ratios.",
    )
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run every process (the daemon too) with taskset -c 0, for a less noisy variant",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="venv",
        help="venv (default): every Python process is this interpreter (sys.executable), with "
        "this venv's editable install of jitpc, whose finder every interpreter start imports; "
        "installed: a throwaway venv from the same base interpreter with jitpc copied in, as "
        "`pip install jitpc` would leave it, and this venv's packages on its path",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.warmup < 0:
        parser.error("--rounds must be >= 2 and --warmup >= 0")
    return args


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the daemon


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    node = shutil.which("node")
    if node is None:
        progress("oneshot.py: node is not on PATH; the figures are ratios to Node's one-shot")
        return 2
    node_modules = node_jitpc()
    prefix: list[str] = []
    if args.pin:
        taskset = shutil.which("taskset")
        if taskset is None:
            notes.append("--pin: taskset is not on PATH; the processes ran unpinned")
        else:
            prefix = [taskset, "-c", "0"]
    if args.rounds < 12:
        notes.append(f"{args.rounds} rounds: issue 13 asks for at least 12")

    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "uvloop": package_version("uvloop"),
        "orjson": package_version("orjson"),
        "pydantic": package_version("pydantic"),
        "node": command_output([node, "--version"]),
        "node_jitpc": NODE_JITPC_VERSION,
        "jitpc": jitpc_version(),
        "commit": git_commit(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load(),
        "pinned": " ".join(prefix[1:]) or None,
        "layout": args.layout,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "commands": {},
    }

    others = [s.key for s in SYSTEMS if s.key != NODE]
    rounds: list[Round] = []
    tmp = Path(tempfile.mkdtemp(prefix="jo", dir="/tmp"))
    runner: Runner | None = None
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    began = time.monotonic()
    try:
        python = sys.executable if args.layout == "venv" else installed_python(tmp)
        runner = Runner(tmp, python, node, node_modules, prefix)
        meta["commands"] = {s.key: runner.command(s) for s in SYSTEMS}
        runner.start_daemon()
        total = args.warmup + args.rounds
        for n in range(total):
            shift = n % len(others)
            order = others[shift:] + others[:shift]
            progress(f"round {n + 1}/{total}{' (warm-up)' if n < args.warmup else ''} ...")
            done = run_round(runner, order)
            if n >= args.warmup:
                rounds.append(done)
    except RunError as exc:
        progress(f"oneshot.py: {exc}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted; the daemon was stopped")
        return 130
    finally:
        if runner is not None:
            runner.stop_daemon()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - began
    meta["loadavg_at_end"] = load()
    meta["seconds"] = round(wall, 1)
    rows = summarise(rounds)

    def loads(key: str) -> str:
        return " ".join(f"{x:.2f}" for x in meta[key] or [])

    print(
        f"jitpc one-shot benchmark: Python {meta['python']}, uvloop {meta['uvloop'] or '-'}, "
        f"orjson {meta['orjson'] or '-'}, pydantic {meta['pydantic'] or '-'}, "
        f"node {meta['node'] or '-'}, Node jitpc {NODE_JITPC_VERSION}, "
        f"jitpc {meta['jitpc'] or '-'} ({meta['commit'] or 'no git'}), {meta['cpus']} CPUs, "
        f"load {loads('loadavg_at_start')} -> {loads('loadavg_at_end')}"
    )
    print(
        f"{args.rounds} rounds after {args.warmup} warm-up, {wall:.0f} s; "
        f"{'every process pinned: ' + ' '.join(prefix) if prefix else 'not pinned'}; "
        f"layout {args.layout}; one warm jitpc for Python daemon (bench/oneshot_server.py)"
    )
    print(
        "each run a fresh process, wall ms from spawn to exit, CPU ms its user + system time; "
        "a Node run before and after every other run"
    )
    print(
        "/ node: over the two Node runs beside it; / floor, / typed floor: over that floor's run "
        "in the same round; figures: median, IQR (q1..q3) over the rounds"
    )
    print()
    print_table(rows)
    imp = next(r for r in rows if r["system"] == IMPORT)
    over, cpu_over = imp["over_bare_ms"], imp["cpu_over_bare_ms"]
    goal = imp["goals"][0]
    print()
    print(
        f"import jitpc adds {over['median']:.1f} ms over bare (IQR {over['q1']:.1f}.."
        f"{over['q3']:.1f}; CPU {cpu_over['median']:+.1f} ms): goal {goal['label']}: "
        f"{'met' if goal['met'] else 'NOT met'}"
    )
    unmet = [f"{r['system']} {g['label']}" for r in rows for g in r["goals"] if not g["met"]]
    met = sum(1 for r in rows for g in r["goals"] if g["met"])
    print(
        f"goals met: {met} of {met + len(unmet)}"
        + (f"; not met: {', '.join(unmet)}" if unmet else "")
    )
    for note in notes:
        print(f"note: {note}")
    if args.json:
        raw = [
            {
                "order": r.order,
                "samples": {k: vars(s) for k, s in r.samples.items()},
                "node_beside": r.node_beside,
                "node_runs": [vars(s) for s in r.node_runs],
            }
            for r in rounds
        ]
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows, "rounds": raw, "notes": notes}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
