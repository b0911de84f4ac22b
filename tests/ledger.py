"""The request ledger of the fault tests, their server processes, and their figures.

Client side: a test sends every request through :meth:`Ledger.request` (or records a raw one with
:meth:`Ledger.issue` and :meth:`Ledger.end`). Each carries a unique token, and the ledger records
how it ended: a result, a remote error, a closed connection, a failed connect, or a hang (only
the :data:`~support.HANG` bound catches those).

Server side: ``peers/ledger_server.py`` appends ``exec PID TOKEN NS`` to a log file for every
execution, before it answers. :meth:`Ledger.assert_exactly_once` reads it back and checks:

* every issued request ended exactly once, and none hung;
* none executed twice, and nothing executed that was never issued (a smuggled request);
* a request answered with a result executed exactly once (and echoed its own token: no
  cross-talk); one that never connected did not execute;
* the requests of the groups named ``unaffected`` (other clients) all got results (their
  notifications were sent).

:func:`figure` records a measured figure: one JSON line, printed and, when ``JITPC_FIGURES``
names a file, appended to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jitpc
from support import HANG, peer_command, python_env

#: How a request can end. "killed": the raw client that sent it was killed.
KINDS = ("result", "remote", "closed", "connect", "killed", "sent", "hung")


def figure(name: str, **values: Any) -> None:
    """Report a measured figure (never asserted on): print it, and append it to $JITPC_FIGURES."""
    line = json.dumps({"figure": name, **values})
    print(line)
    path = os.environ.get("JITPC_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


@dataclass(frozen=True)
class LogEvent:
    """One line of a server's log: ``KIND PID TOKEN NS``."""

    kind: str
    pid: int
    token: str
    ns: int


def read_log(path: Path) -> list[LogEvent]:
    events = []
    if path.exists():
        for line in path.read_text().splitlines():
            kind, pid, token, ns = line.split(" ")
            events.append(LogEvent(kind, int(pid), token, int(ns)))
    return events


@dataclass
class Entry:
    token: str
    group: str
    #: The method logs its execution, so an answer implies exactly one ``exec`` line.
    logged: bool
    endings: list[tuple[str, Any]] = field(default_factory=list)


class Ledger:
    """Every request a test issues, how each ended, and the servers' execution log."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.entries: dict[str, Entry] = {}
        self._numbers: dict[str, Iterator[int]] = {}

    def issue(self, group: str, *, logged: bool = True, token: str | None = None) -> str:
        """Record a new request of ``group`` (a client, a phase) and return its unique token."""
        if token is None:
            token = f"{group}.{next(self._numbers.setdefault(group, itertools.count()))}"
        assert token not in self.entries and " " not in token, token
        self.entries[token] = Entry(token, group, logged)
        return token

    def end(self, token: str, kind: str, value: Any = None) -> None:
        """Record how the request ``token`` ended."""
        assert kind in KINDS, kind
        self.entries[token].endings.append((kind, value))

    async def request(
        self,
        client: jitpc.Client,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        group: str = "main",
        logged: bool = True,
    ) -> tuple[str, Any]:
        """Send ``method`` with a new token in its params; return and record how it ended."""
        token = self.issue(group, logged=logged)
        try:
            async with asyncio.timeout(HANG):
                result = await client.request(method, {"token": token, **(params or {})})
        except TimeoutError:
            ending: tuple[str, Any] = ("hung", None)
        except jitpc.RemoteError as exc:
            ending = ("remote", exc.code)
        except jitpc.ClosedError as exc:
            ending = ("closed", str(exc))
        except jitpc.ConnectError as exc:
            ending = ("connect", str(exc))
        else:
            ending = ("result", result)
        self.end(token, *ending)
        return ending

    def notify(self, client: jitpc.Client, method: str, *, group: str = "main") -> str:
        """Send a notification carrying a new token; it is recorded as ``sent``."""
        token = self.issue(group)
        client.notify(method, {"token": token})
        self.end(token, "sent")
        return token

    def group(self, group: str) -> list[tuple[str, str, int]]:
        """The requests of ``group`` as (token without the group, how it ended, executions)."""
        executions = self.executions()
        return [
            (token.removeprefix(group + "."), entry.endings[0][0], executions[token])
            for token, entry in self.entries.items()
            if entry.group == group and entry.endings
        ]

    def events(self) -> list[LogEvent]:
        return read_log(self.log)

    def executions(self) -> Counter[str]:
        return Counter(event.token for event in self.events() if event.kind == "exec")

    def assert_exactly_once(
        self, *, unaffected: Collection[str] = (), delivered: bool = False
    ) -> dict[str, int]:
        """Check the ledger against the execution log; return its counts (for a figure).

        Args:
            unaffected: groups whose requests must all have ended with a result.
            delivered: notifications must have executed exactly once (else at most once).
        """
        executions = self.executions()
        problems = []
        kinds: Counter[str] = Counter()
        for token, entry in self.entries.items():
            runs = executions[token]
            if len(entry.endings) != 1:
                problems.append(f"{token} ended {len(entry.endings)} times: {entry.endings}")
                continue
            kind, value = entry.endings[0]
            kinds[kind] += 1
            if kind == "hung":
                problems.append(f"{token} hung")
            if runs > 1:
                problems.append(f"{token} executed {runs} times")
            if kind == "result" and entry.logged and runs != 1:
                problems.append(f"{token} was answered but executed {runs} times")
            if kind == "result" and isinstance(value, dict) and "token" in value:
                if value["token"] != token:
                    problems.append(f"{token} got the answer of {value['token']} (cross-talk)")
            if kind == "connect" and runs:
                problems.append(f"{token} never connected but executed {runs} times")
            if kind == "sent" and delivered and runs != 1:
                problems.append(f"notification {token} executed {runs} times")
            if entry.group in unaffected and kind not in ("result", "sent"):
                problems.append(f"{token} of unaffected {entry.group!r} ended {kind}: {value}")
        phantoms = sorted(set(executions) - set(self.entries))
        if phantoms:
            problems.append(f"executed but never issued: {phantoms}")
        assert not problems, "ledger:\n  " + "\n  ".join(problems)
        return {
            "issued": len(self.entries),
            **{kind: kinds[kind] for kind in KINDS if kind != "hung"},
            "hung": kinds["hung"],
            "executed": sum(executions.values()),
            "duplicated": sum(n - 1 for n in executions.values() if n > 1),
            "executed_unanswered": sum(
                1
                for token, entry in self.entries.items()
                if executions[token] and entry.endings[0][0] not in ("result", "sent")
            ),
        }


# -- child processes ---------------------------------------------------------------------------


class Child:
    """A child process whose stdout and stderr lines are read as they come.

    Its pipes are always drained, so a chatty child never blocks; a test waits for a line with
    :meth:`line`, which consumes it: a second wait for ``gone 1`` needs a second ``gone 1``.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.out: list[str] = []
        self.err: list[str] = []
        self._taken: set[int] = set()  # indexes in ``out`` of the lines :meth:`line` returned
        self._changed = asyncio.Condition()
        self._eof = False
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._read(proc.stdout, self.out)),
            asyncio.ensure_future(self._read(proc.stderr, self.err)),
        ]

    async def _read(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        while raw := await stream.readline():
            async with self._changed:
                lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        if lines is self.out:
            async with self._changed:
                self._eof = True
                self._changed.notify_all()

    async def line(
        self, match: str | Callable[[str], bool], *, after: int = 0, or_end: bool = False
    ) -> str:
        """Wait for (and consume) the first stdout line, from index ``after`` on, equal to
        ``match`` or satisfying it. With ``or_end``, the end of the output returns ``""``."""
        test = match if callable(match) else (lambda line: line == match)
        try:
            async with asyncio.timeout(HANG), self._changed:
                while True:
                    for i in range(after, len(self.out)):
                        if i not in self._taken and test(self.out[i]):
                            self._taken.add(i)
                            return self.out[i]
                    if self._eof:
                        if or_end:
                            return ""
                        raise AssertionError(f"{self} ended its output without {match!r}")
                    await self._changed.wait()
        except (TimeoutError, asyncio.CancelledError):
            print(f"still waiting for {match!r} from {self}")  # shown with the failure
            raise

    def __str__(self) -> str:
        return f"process {self.pid}: stdout {self.out[-20:]}, stderr {self.err[-20:]}"

    def tell(self, line: str) -> None:
        """Write a line to the process's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self) -> int:
        """Wait (bounded by HANG) for the process to exit by itself; its exit code."""
        async with asyncio.timeout(HANG):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    async def reap(self) -> int:
        """Kill the process if it still runs, and wait for it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return await self.wait()

    def rss_kib(self, key: str = "VmRSS") -> int:
        """The process's resident set (or ``VmHWM``, its peak) in KiB, from /proc."""
        for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if row.startswith(key + ":"):
                return int(row.split()[1])
        raise AssertionError(f"no {key} for {self.pid}")


class Children:
    """The processes of one test; :meth:`reap_all` (always, in ``finally``) kills what is left."""

    def __init__(self) -> None:
        self.all: list[Child] = []

    async def spawn(self, command: Sequence[str], env: dict[str, str] | None = None) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=python_env() if env is None else env,
        )
        child = Child(proc)
        self.all.append(child)
        return child

    async def server(
        self,
        jitpc_id: str,
        log: Path,
        *options: object,
        script: str = "ledger_server.py",
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start a ledger server and wait until it listens (it must win the id)."""
        child = await self.spawn(peer_command(script, jitpc_id, "--log", log, *options), env)
        await child.line(lambda line: line.startswith("listening "))
        return child

    async def reap_all(self) -> None:
        for child in self.all:
            await child.reap()


@contextlib.asynccontextmanager
async def children() -> AsyncIterator[Children]:
    """``async with children() as kids:`` every process spawned through ``kids`` is reaped."""
    kids = Children()
    try:
        yield kids
    finally:
        await kids.reap_all()
