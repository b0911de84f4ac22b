"""CPU instructions per request on jitpc's hot paths, counted by callgrind.

Run from the repository root (needs valgrind)::

    .venv/bin/python bench/instructions.py            # the full run, about 3 minutes
    .venv/bin/python bench/instructions.py --quick    # 2 minutes, within 1 % of the full run
    .venv/bin/python bench/instructions.py --json bench/results-instructions.json

Wall-clock figures on a shared VM vary by ±30 %; instruction counts do not, so a change to the
hot path shows up here even when it is a few per cent. Each row is one workload of
bench/_instructions_child.py (in-process, a fake transport, no socket) run under
``valgrind --tool=callgrind`` twice, with a small and a large number of requests: the difference
in instructions over the difference in requests is the cost of one request, and start-up,
imports and one-time costs cancel out. The runs go ``--jobs`` at a time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from _instructions_child import UNIT

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHILD = "_instructions_child.py"
#: The files of bench/ that the child runs, copied with jitpc/.
COPIED = (CHILD, "typed_echo.py")

#: Units of 64 requests in the small and the large run of a row.
UNITS = (20, 120)
QUICK_UNITS = (4, 24)

#: A child still running after this long is a hang.
CHILD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Workload:
    key: str
    label: str


WORKLOADS: tuple[Workload, ...] = (
    Workload("server1", "server, 1 request per read"),
    Workload("server64", "server, 64 requests per read"),
    Workload("client1", "client, sequential"),
    Workload("client64", "client, 64 in flight"),
)

#: The ratio column compares each row to the ``raw`` row of its workload.
RAW = "raw"
#: The typed floor: the raw baseline plus exactly the typed rows' pydantic steps.
FLOOR = "raw-typed"
#: The typed floor awaited from a coroutine of the caller's, as the typed client row is: its
#: ``typed_echo.call`` builds the params model and awaits ``client.call``.
CALLER_FLOOR = "raw-typed-caller"
IMPLS: dict[str, str] = {
    RAW: "raw (orjson)",
    "jitpc": "jitpc",
    "typed": "typed jitpc",
    FLOOR: "typed floor",
    CALLER_FLOOR: "typed floor, from a caller",
}
#: Implementations that have client workloads only.
CLIENT_ONLY = (CALLER_FLOOR,)


@dataclass(frozen=True)
class Run:
    """One child process: a workload, an implementation, and a size in units of 64 requests."""

    workload: str
    impl: str
    units: int

    def name(self) -> str:
        return f"{self.workload} {self.impl} x{self.units}"


class ChildError(RuntimeError):
    """A child failed: its row is broken, or valgrind could not count it."""


class Runner:
    """Runs children in a private directory ``tmp``: their ``TMPDIR``, their bytecode cache,
    the valgrind logs, and a copy of the code they run.

    The copy (jitpc/, typed_echo.py and the child, taken at start) keeps every run of one
    benchmark on the same code while someone edits the checkout, and the private cache, filled
    by the native runs of :meth:`check`, has every callgrind run load the same .pyc files.
    """

    def __init__(self, tmp: Path, loop: str) -> None:
        self.loop = loop
        self.tmp = tmp
        self.src = self.tmp / "src"
        shutil.copytree(
            ROOT / "jitpc", self.src / "jitpc", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name in COPIED:
            shutil.copy2(BENCH / name, self.src / name)
        self.env = dict(os.environ)
        self.env["TMPDIR"] = str(self.tmp)
        # The copy of this checkout's jitpc, not an installed one, even with PYTHONSAFEPATH.
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(self.src), os.environ.get("PYTHONPATH")])
        )
        # The same hashes, hence the same dict layouts, in every run.
        self.env["PYTHONHASHSEED"] = "0"
        self.env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def command(self, run: Run) -> list[str]:
        child = str(self.src / CHILD)
        return [sys.executable, child, run.workload, run.impl, self.loop, str(run.units)]

    def _run(self, cmd: list[str], run: Run) -> None:
        try:
            proc = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ChildError(f"{run.name()}: still running after {CHILD_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
            raise ChildError(f"{run.name()}: exited with status {proc.returncode}:\n{tail}")

    def check(self, run: Run) -> None:
        """Run a child natively: it fails fast if the row is broken, and fills the cache."""
        self._run(self.command(run), run)

    def count(self, run: Run) -> int:
        """The instructions a child executes, start to exit, as callgrind counts them."""
        log = self.tmp / f"{run.workload}-{run.impl}-{run.units}.log"
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            f"--log-file={log}",
        ]
        self._run(valgrind + self.command(run), run)
        found = re.search(r"Collected\s*:\s*(\d+)", log.read_text())
        if found is None:
            raise ChildError(f"{run.name()}: no 'Collected' line in the callgrind log {log}")
        return int(found.group(1))


def run_all(runner: Runner, runs: list[Run], jobs: int) -> dict[Run, int]:
    """Check every run natively, then count each under callgrind, ``jobs`` at a time."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        smallest = min(run.units for run in runs)
        progress("checking each row natively ...")
        list(pool.map(runner.check, [run for run in runs if run.units == smallest]))
        counts: dict[Run, int] = {}
        # The large runs first, so that no long run is left alone at the end.
        order = sorted(runs, key=lambda run: -run.units)
        futures = {pool.submit(runner.count, run): run for run in order}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                run = futures[future]
                counts[run] = future.result()
                progress(f"[{done}/{len(runs)}] {run.name():<20} {counts[run]:>15,} instructions")
        finally:
            for future in futures:
                future.cancel()
    return counts


def impls_of(workload: Workload, impls: list[str]) -> list[str]:
    """The implementations of ``impls`` that have ``workload``."""
    client = workload.key.startswith("client")
    return [impl for impl in impls if client or impl not in CLIENT_ONLY]


def summarize(
    counts: dict[Run, int], workloads: list[Workload], impls: list[str], units: tuple[int, int]
) -> list[dict[str, Any]]:
    small, large = units
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        present = impls_of(workload, impls)
        per_request = {
            impl: (counts[Run(workload.key, impl, large)] - counts[Run(workload.key, impl, small)])
            / ((large - small) * UNIT)
            for impl in present
        }
        raw = per_request.get(RAW)
        for impl in present:
            rows.append(
                {
                    "workload": workload.key,
                    "workload_label": workload.label,
                    "impl": impl,
                    "label": IMPLS[impl],
                    "instructions_per_request": per_request[impl],
                    "raw_over_this": raw / per_request[impl]
                    if raw is not None and impl != RAW
                    else None,
                    "instructions": {
                        str(n): counts[Run(workload.key, impl, n)] for n in (small, large)
                    },
                }
            )
    return rows


@dataclass(frozen=True)
class Goal:
    """Issue 13's goal for a row: at most ``at_most`` times its figure when the issue was
    filed (``before``, uvloop, orjson installed)."""

    workload: str
    impl: str
    before: float
    at_most: float


GOALS: tuple[Goal, ...] = (
    Goal("server1", "typed", 48_672, 0.7),
    Goal("client1", "typed", 81_733, 0.75),
)


def goals(rows: list[dict[str, Any]], loop: str) -> list[dict[str, Any]]:
    """Each goal whose row was measured, with its ratio and whether it holds (uvloop only:
    the figures before were measured there)."""
    if loop != "uvloop":
        return []
    found = {(row["workload"], row["impl"]): row for row in rows}
    out = []
    for goal in GOALS:
        row = found.get((goal.workload, goal.impl))
        if row is None:
            continue
        ratio = row["instructions_per_request"] / goal.before
        # What the goal leaves for jitpc's own glue over the floor of the same shape: the one
        # awaited from a caller's coroutine, as the typed client is, if it ran.
        floor = found.get((goal.workload, CALLER_FLOOR)) or found.get((goal.workload, FLOOR))
        out.append(
            {
                "workload": goal.workload,
                "impl": goal.impl,
                "label": f"{row['label']}, {row['workload_label']}",
                "before": goal.before,
                "now": row["instructions_per_request"],
                "ratio": ratio,
                "goal": goal.at_most,
                "met": ratio <= goal.at_most,
                "floor_impl": None if floor is None else floor["impl"],
                "floor": None if floor is None else floor["instructions_per_request"],
                "glue_allowed": None
                if floor is None
                else goal.before * goal.at_most - floor["instructions_per_request"],
            }
        )
    return out


def print_goals(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    print()
    print("issue 13's goals: instructions per request now over before the issue")
    width = max(len(r["label"]) for r in results)
    for r in results:
        print(
            f"{r['label']:<{width}}  {r['before']:>7,.0f} -> {r['now']:>7,.0f}  "
            f"{r['ratio']:.2f}x  <= {r['goal']}x  {'yes' if r['met'] else 'NO'}"
        )
        if r["floor"] is not None:
            print(
                f"  {r['goal']}x of {r['before']:,.0f} leaves {r['glue_allowed']:,.0f} a request "
                f"over the {IMPLS[r['floor_impl']]} ({r['floor']:,.0f}) for all of jitpc's glue"
            )
    print(f"goals met: {sum(r['met'] for r in results)} of {len(results)}")


def over_floor(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Typed jitpc's figure over the typed floor's, per workload where both were measured:
    what jitpc's own glue costs beyond the pydantic steps a typed call cannot avoid."""
    found = {(row["workload"], row["impl"]): row for row in rows}
    out = []
    for (workload, impl), row in found.items():
        if impl != "typed":
            continue
        typed_n = row["instructions_per_request"]
        for floor_impl in (FLOOR, CALLER_FLOOR):
            floor = found.get((workload, floor_impl))
            if floor is not None:
                floor_n = floor["instructions_per_request"]
                out.append(
                    {
                        "workload": workload,
                        "workload_label": row["workload_label"],
                        "floor_impl": floor_impl,
                        "typed": typed_n,
                        "floor": floor_n,
                        "ratio": typed_n / floor_n,
                    }
                )
    return out


def print_floor(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    print()
    print("typed jitpc over the typed floor (jitpc's own glue beyond the pydantic steps)")
    labels = [f"{r['workload_label']}, over the {IMPLS[r['floor_impl']]}" for r in results]
    width = max(map(len, labels))
    for label, r in zip(labels, results, strict=True):
        print(
            f"{label:<{width}}  {r['floor']:>7,.0f} -> {r['typed']:>7,.0f}  "
            f"{r['ratio']:.2f}x  (+{r['typed'] - r['floor']:,.0f})"
        )


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ["workload", "implementation", "instr/request", "raw / jitpc"]
    lines: list[list[str] | None] = []
    previous = None
    for row in rows:
        if previous is not None and row["workload"] != previous:
            lines.append(None)
        ratio = row["raw_over_this"]
        lines.append(
            [
                row["workload_label"] if row["workload"] != previous else "",
                row["label"],
                f"{row['instructions_per_request']:,.0f}",
                "-" if ratio is None else f"{ratio:.2f}x",
            ]
        )
        previous = row["workload"]
    widths = [max(len(h), *(len(line[i]) for line in lines if line)) for i, h in enumerate(headers)]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(render(headers))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("" if line is None else render(line))


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def source_version() -> str | None:
    """The checkout's commit, with ``-dirty`` if the copied files differ from it (the figures
    are of the files as they were)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        )
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "jitpc", *(f"bench/{f}" for f in COPIED))
    except (subprocess.SubprocessError, OSError):
        return None
    return commit + ("-dirty" if changed else "")


def valgrind_version() -> str:
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU instructions per request of jitpc's hot paths (server and client, "
        "untyped and typed) and of a hand-written baseline, counted by callgrind.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller runs: {} and {} x 64 requests instead of {} and {}".format(
            *QUICK_UNITS, *UNITS
        ),
    )
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop (uvloop)"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="callgrind runs at a time (2: one per core here)"
    )
    wkeys = [w.key for w in WORKLOADS]
    parser.add_argument(
        "--workload",
        action="append",
        choices=wkeys,
        metavar="KEY",
        help=f"only this workload (repeatable): {', '.join(wkeys)}",
    )
    parser.add_argument(
        "--impl",
        action="append",
        choices=list(IMPLS),
        metavar="KEY",
        help=f"only this implementation (repeatable): {', '.join(IMPLS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        progress(
            "bench/instructions.py needs valgrind (its callgrind tool) on PATH; "
            "install it with your package manager, e.g. `apt-get install valgrind`"
        )
        return 2
    if args.loop == "uvloop" and version("uvloop") is None:
        progress("uvloop is not installed: install jitpc[fast], or use --loop asyncio")
        return 2
    workloads = [w for w in WORKLOADS if args.workload is None or w.key in args.workload]
    impls = [i for i in IMPLS if args.impl is None or i in args.impl]
    units = QUICK_UNITS if args.quick else UNITS
    runs = [Run(w.key, impl, n) for w in workloads for impl in impls_of(w, impls) for n in units]
    if not runs:
        progress(f"nothing to count: {', '.join(CLIENT_ONLY)} has client workloads only")
        return 2

    meta = {
        "jitpc": source_version(),
        "python": platform.python_version(),
        "uvloop": version("uvloop"),
        "orjson": version("orjson"),
        "pydantic_core": version("pydantic-core"),
        "valgrind": valgrind_version(),
        "loop": args.loop,
        "units": list(units),
        "requests_per_unit": UNIT,
        "platform": platform.platform(),
    }
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="jinstr") as tmp:
            counts = run_all(Runner(Path(tmp), args.loop), runs, args.jobs)
    except ChildError as exc:
        progress(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    meta["wall_s"] = round(time.monotonic() - began, 1)
    rows = summarize(counts, workloads, impls, units)

    print(
        f"jitpc {meta['jitpc'] or '-'} instructions per request: Python {meta['python']}, "
        f"{args.loop} loop, "
        f"uvloop {meta['uvloop'] or '-'}, orjson {meta['orjson'] or '-'}, "
        f"pydantic-core {meta['pydantic_core'] or '-'}, {meta['valgrind']}"
    )
    small, large = units
    print(
        f"each figure: (instructions of {large} x {UNIT} requests - instructions of "
        f"{small} x {UNIT}) / {(large - small) * UNIT}, counted by callgrind; "
        f"run took {meta['wall_s']:.0f} s"
    )
    print("raw / jitpc: the raw row's figure over this row's; above 1, jitpc is cheaper")
    print()
    print_table(rows)
    floor = over_floor(rows)
    print_floor(floor)
    met = goals(rows, args.loop)
    print_goals(met)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"meta": meta, "results": rows, "over_floor": floor, "goals": met}, f, indent=2
            )
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
