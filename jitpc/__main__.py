"""The ``jitpc`` command: talk to a jitpc server from a shell (``python -m jitpc`` or ``jitpc``).

A thin layer over the public API (``jitpc.sync.connect``, ``jitpc.connect`` for ``ls`` and
``stop``, and the error tree); it never starts a server. Commands::

    jitpc call ID METHOD [PARAMS_JSON]    send a request, print its result as JSON on stdout
    jitpc notify ID METHOD [PARAMS_JSON]  send a notification
    jitpc ping ID                         is a server answering? prints "alive" or "no server"
    jitpc status ID                       print the server's rpc.status (pid, uptime, methods...)
    jitpc where ID                        the socket and lock paths, and whether a server listens
    jitpc discover ID                     print the server's OpenRPC document (rpc.discover)
    jitpc ls [--json] [--all]             list this user's servers in the jitpc tmpdir
    jitpc stop ID [--force]               stop a server (rpc.shutdown; --force: then signals)
    jitpc logs ID [-n LINES]              print the end of the id's spawn log (<tmpdir>/<id>.log)

``PARAMS_JSON`` is one JSON value (``-`` reads it from stdin); without it the message has no
params. It must be UTF-8 and strict JSON, nest at most 200 levels deep (each array or object is
a level, and so is a value inside the innermost: ``[[1]]`` has 3), hold no integer over 4,300
digits (that much a jitpc server reads) and no number beyond float range; anything else is a
usage error (exit 64) with a one-line message. Results go to stdout as one
line of strict JSON (``--pretty`` indents them; a number beyond float range in an answer is
written ``null``). A remote error goes to stderr as its JSON error object (``message``,
``code``, ``data``, ``stack``); Node's code-less ``Unknown method: NAME`` is read as
``MethodNotFound``, so it is printed with ``"code": -32601``.

Connecting: by default the command tries the server's socket once (``connect_timeout=0``) and
fails at once if nothing answers. ``--wait`` retries with jitpc's back-off (about 7 s), for a
server that is still starting; ``--connect-timeout SECONDS`` retries for that long (it wins
over ``--wait``). ``--timeout SECONDS`` bounds the whole command, connecting included: when it
passes, the command drops the connection (a jitpc server then cancels the request) and exits
4. Once the answer is in, closing the connection is cut short at that bound instead.

``ping`` sends ``rpc.ping``: any answer, even an error (a Node jitpc server has no
``rpc.ping``), means alive. ``status`` prints the ``rpc.status`` result; for a server without
it (it answers ``MethodNotFound``, as Node jitpc does) it prints ``{"id", "socket", "alive":
true, "status": null}`` and a note on stderr, and still exits 0. ``discover`` against such a
server prints nothing on stdout, the sentence ``jitpc: the server for 'ID' has no method
rpc.discover (a Node jitpc server, probably)`` on stderr, and exits 1.

``ls`` looks at every ``<id>.lock`` and ``<id>.sock`` of this user in the tmpdir, connects
to each socket once (all at once, each bounded by ``--timeout``, default 2 s) and asks
``rpc.status``. It lists what answers (a server without ``rpc.status``, as Node jitpc, with what
is known: its pid from the socket's peer credentials where the platform gives them) and an id
whose lock is held though its socket does not answer ("not answering"); ``--all`` adds stale
files. It creates, removes and locks nothing: whether a lock is held is asked with
``F_OFD_GETLK`` (Linux), which takes no lock, so a server starting meanwhile cannot lose its
``listen()`` to the probe; elsewhere that is not known without taking the lock, and only the
socket is asked. ``clients`` leaves out ``ls``'s own connection.

``stop`` sends ``rpc.shutdown`` (``--grace SECONDS``: how long the server lets requests in
flight finish; its default otherwise), then waits, blocked on the lock file (no polling),
until the server has released the id, all within ``--timeout`` (default 10 s). With
``--force``, a server that does not answer (or has no ``rpc.shutdown``, as Node jitpc), or that
still holds the id when the time is up, gets SIGTERM, then SIGKILL if it still holds the id
``--kill-after`` seconds later (default 3 s). It says what happened in one line on stderr.

``logs`` prints the last ``-n`` lines (default 50) of ``<tmpdir>/<id>.log``, where
``jitpc.spawn`` sends a daemon's output by default, beginning in the rotated ``<id>.log.1`` when
the current log is shorter; exit 2 if there is neither.

An unknown option after a command is reported with that command's usage (exit 64).

Exit codes:
    0   success (``ping``: a server answered; ``ls``: always; ``stop``: the id is free)
    1   the server answered with an error (``call``, ``discover``; ``status`` unless it is
        that the server has no ``rpc.status``; ``stop``: it has no ``rpc.shutdown`` and
        there is no ``--force``, or a signal could not be sent)
    2   no server answered (nothing listens at the id's socket, or it refused us); ``logs``:
        no log
    3   the connection closed, or the server broke the protocol, before the answer came
        (a request may or may not have run)
    4   timed out: ``--timeout`` passed first (a request may or may not have run); ``stop``:
        the id was still held when the time was up (after the signals, with ``--force``)
    64  usage error: bad arguments, invalid params JSON, unusable id (EX_USAGE)
    130 interrupted
    141 stdout was closed before all the output was written (``| head -c 1``), as a
        process killed by SIGPIPE reports it
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress

import jitpc

from . import _stdjson
from ._paths import address, tmpdir
from ._stdjson import reject_constant
from ._steps import CONNECT_TIMEOUT
from ._transport import is_retryable

TYPE_CHECKING = False  # (not typing's: a one-shot command need not import typing, ~3.5 ms)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    import jitpc.sync

# The one-shot commands (call, notify, ping, status, where, discover) run on the blocking client,
# jitpc.sync, which imports neither asyncio nor pydantic: a command that starts, asks one thing
# and exits is most of what a CLI does. ls and stop run on asyncio (imported when they run).

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_NO_SERVER = 2
EXIT_CLOSED = 3
EXIT_TIMEOUT = 4
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

#: ``ls``: seconds each server has to answer rpc.status.
LS_TIMEOUT = 2.0
#: ``ls``: sockets asked at once, at most (each is a descriptor).
LS_CONCURRENCY = 64
#: ``stop``: seconds for the answer and the release of the id, before exit 4 or signals.
STOP_TIMEOUT = 10.0
#: ``stop --force``: seconds from SIGTERM to SIGKILL, and after SIGKILL for the id to be free.
KILL_AFTER = 3.0
#: ``logs``: lines printed by default.
LOG_LINES = 50

EPILOG = f"""\
exit codes:
  0    success (ping: a server answered; ls: always; stop: the id is free)
  1    the server answered with an error; its JSON error object is on stderr
       (discover, from a server without rpc.discover such as Node jitpc: a sentence;
       stop, from a server without rpc.shutdown without --force, or a failed signal:
       a sentence)
  2    no server answered (logs: there is no log)
  3    the connection closed (or the server broke the protocol) before the answer came
  4    timed out: --timeout passed before the answer came (stop: before the id was free)
  64   usage error: bad arguments, invalid params JSON, unusable id
  130  interrupted
  141  stdout was closed before all the output was written (as by SIGPIPE)

The server's socket is tried once by default; --wait retries with jitpc's back-off for
~{CONNECT_TIMEOUT:.1f} s, --connect-timeout S for S seconds (it wins over --wait).
--timeout S bounds the whole command, connecting included. The CLI never starts a server.
"""


class UsageError(Exception):
    """Bad input from the command line: exit 64."""


class StdoutClosed(Exception):
    """Nothing reads stdout any more (``jitpc status ID | head -c 1``): exit 141."""


class TimedOut(Exception):
    """``--timeout`` passed before the command was done: exit 4."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


def _columns() -> int:
    """The terminal's width, as ``shutil.get_terminal_size()`` finds it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, given the width: its own way imports shutil, which costs a
    one-shot command ~5 ms (argparse makes a formatter for every argument it adds)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (argparse's own 2 means "no server" here), and
    an unknown option is reported by the subcommand it follows, with that one's usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def parse_command_line(self, argv: list[str]) -> argparse.Namespace:
        args, extra = self.parse_known_args(argv)
        if extra:
            # argparse collects a subcommand's unknown options for the top level to report,
            # with the top-level usage: let the subcommand parse its own part again instead.
            # The top level has no option taking a value, so the first match is the command.
            command = self.commands[args.command]
            command.parse_args(argv[argv.index(args.command) + 1 :])
            self.error(f"unrecognized arguments: {' '.join(extra)}")  # they came before it
        return args


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"not a non-negative number of seconds: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a non-negative whole number: {text!r}")
    return value


def _parser(wanted: str | None = None) -> _Parser:
    """The command line's parser; with ``wanted`` (a command), one that knows only that command:
    each command's parser costs a one-shot command ~0.5 ms (argparse's gettext lookups)."""
    common = _Parser(add_help=False)
    common.add_argument("id", metavar="ID", help="the server's jitpc id")
    common.add_argument(
        "--wait",
        action="store_true",
        help=f"retry with jitpc's back-off (about {CONNECT_TIMEOUT:.1f} s) instead of trying "
        "the socket once",
    )
    common.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=_seconds,
        help="retry connecting for up to SECONDS (0: try once, the default without --wait)",
    )
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up after SECONDS, connecting included, and exit 4 (default: no limit)",
    )
    pretty = _Parser(add_help=False)
    pretty.add_argument("--pretty", action="store_true", help="indent the JSON output")
    message = _Parser(add_help=False)
    message.add_argument("method", metavar="METHOD", help="the method name")
    message.add_argument(
        "params",
        metavar="PARAMS_JSON",
        nargs="?",
        help="the params, one JSON value ('-' reads it from stdin); omitted: no params",
    )

    parser = _Parser(
        prog="jitpc",
        description="Talk to a jitpc server (just-in-time IPC over a local socket).",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"jitpc {jitpc.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, *parents: _Parser, connect: bool = True) -> _Parser | None:
        """The command's parser (``None``, and none made, if another command is ``wanted``)."""
        if wanted is not None and wanted != name:
            return None
        command = commands.add_parser(
            name,
            help=help,
            description=help,
            parents=[common, *parents] if connect else list(parents),
            epilog=EPILOG,
        )
        parser.commands[name] = command
        return command

    add("call", "send a request and print its result as JSON", message, pretty)
    add("notify", "send a notification", message)
    add("ping", "print 'alive' and exit 0 if a server answers rpc.ping, even with an error")
    add(
        "status",
        "print the server's rpc.status as JSON (id, pid, jitpc, version, uptime, clients, "
        "in_flight, methods, schemas); a server without it (Node jitpc) gives "
        '{"status": null, ...}',
        pretty,
    )
    add("where", "print the socket and lock paths, and whether a server listens")
    add(
        "discover",
        "print the server's OpenRPC document (the rpc.discover result); a server without it "
        "(Node jitpc) gives a sentence on stderr and exit 1",
        pretty,
    )

    ls = add(
        "ls",
        "list this user's servers in the jitpc tmpdir (id, pid, version, uptime, clients): "
        "each socket is asked rpc.status once, all at once; it starts, creates, removes and "
        "locks nothing",
        connect=False,
    )
    if ls is not None:
        ls.add_argument("--json", action="store_true", help="print a JSON list of objects")
        ls.add_argument(
            "--all", action="store_true", help="also list stale ids (no lock held, no answer)"
        )
        ls.add_argument(
            "--timeout",
            metavar="SECONDS",
            type=_seconds,
            default=LS_TIMEOUT,
            help=f"how long each server has to answer (default {LS_TIMEOUT:g})",
        )

    stop = add(
        "stop",
        "ask the server to stop (rpc.shutdown) and wait until it has released the id; "
        "--force: then SIGTERM, then SIGKILL",
        connect=False,
    )
    if stop is not None:
        stop.add_argument("id", metavar="ID", help="the server's jitpc id")
        stop.add_argument(
            "--timeout",
            metavar="SECONDS",
            type=_seconds,
            default=STOP_TIMEOUT,
            help="how long the server has to answer and release the id, connecting included "
            f"(default {STOP_TIMEOUT:g}); then exit 4, or with --force signal it",
        )
        stop.add_argument(
            "--grace",
            metavar="SECONDS",
            type=_seconds,
            help="how long the server lets requests in flight finish (default: the server's, 5 s "
            "for Python jitpc)",
        )
        stop.add_argument(
            "--force",
            action="store_true",
            help="if the server does not answer rpc.shutdown (Node jitpc has none) or still holds "
            "the id after --timeout, send SIGTERM to its pid, then SIGKILL",
        )
        stop.add_argument(
            "--kill-after",
            metavar="SECONDS",
            type=_seconds,
            default=KILL_AFTER,
            help=f"with --force: seconds from SIGTERM to SIGKILL (default {KILL_AFTER:g})",
        )

    logs = add(
        "logs",
        "print the end of the id's spawn log, <tmpdir>/<ID>.log (jitpc.spawn's default), "
        "starting in the rotated <ID>.log.1 if the log is shorter",
        connect=False,
    )
    if logs is not None:
        logs.add_argument("id", metavar="ID", help="the server's jitpc id")
        logs.add_argument(
            "-n",
            "--lines",
            metavar="LINES",
            type=_count,
            default=LOG_LINES,
            help=f"how many lines (default {LOG_LINES})",
        )
    return parser


# -- helpers -------------------------------------------------------------------------------------


def _out(text: str) -> None:
    try:
        print(text, flush=True)  # flushed here: at exit, EPIPE would be a traceback
    except BrokenPipeError:
        raise StdoutClosed from None


def _err(text: str) -> None:
    if sys.stderr is not None:  # None if started with stderr closed: print() would use stdout
        print(text, file=sys.stderr)


#: What the CLI sends at most: what a jitpc server reads ("Bad input, decided" in
#: docs/reliability.md), 200 levels of nesting under the message object and integers of 4,300
#: digits (Python's limit for int(str)).
MAX_DEPTH = _stdjson.MAX_DEPTH - 1  # params sit under the message object
MAX_INT_DIGITS = 4300


def _utf8(text: str, what: str) -> str:
    # Bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape): they would go
    # on the wire as "\udcff" escapes, not as what was typed.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8") from None
    return text


def _stdin() -> str:
    if sys.stdin is None:  # started with stdin closed
        raise UsageError("PARAMS_JSON is '-', but there is no stdin to read it from")
    buffer = getattr(sys.stdin, "buffer", None)
    try:
        if buffer is None:
            return _utf8(sys.stdin.read(), "PARAMS_JSON on stdin")
        data = buffer.read()
    except OSError as exc:
        raise UsageError(f"cannot read PARAMS_JSON from stdin: {exc.strerror or exc}") from None
    try:
        return str(data.decode())  # strict: no encoded surrogates either, as on the wire
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"PARAMS_JSON on stdin is not valid UTF-8 ({exc.reason} at offset {exc.start})"
        ) from None


def _params(text: str | None) -> Any:
    if text is None:
        return None
    text = _stdin() if text == "-" else _utf8(text, "PARAMS_JSON")
    if not text.strip(" \t\n\r"):
        raise UsageError("PARAMS_JSON is not valid JSON: it is empty")
    if text.startswith("\ufeff"):  # json's own message suggests a Python codec
        raise UsageError("PARAMS_JSON is not valid JSON: it starts with a byte order mark")
    too_deep = UsageError(
        f"PARAMS_JSON nests deeper than {MAX_DEPTH} levels, jitpc's limit (a value inside "
        "the innermost array or object is a level too: [[1]] has 3)"
    )
    try:
        value = json.loads(
            text, parse_constant=reject_constant, parse_float=_finite_float, parse_int=_int
        )
    except RecursionError:  # deeper than the parser's stack, so deeper than MAX_DEPTH
        raise too_deep from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"PARAMS_JSON is not valid JSON: {exc}") from None
    if _stdjson.too_deep(value, MAX_DEPTH):
        raise too_deep
    return value


def _finite_float(text: str) -> float:
    # float("1e400") is infinity, which would go on the wire as null.
    number = float(text)
    if not math.isfinite(number):
        raise UsageError(f"PARAMS_JSON holds {text}, beyond the range of a float")
    return number


def _int(text: str) -> int:
    # Checked before int(), whose error for a long one suggests sys.set_int_max_str_digits().
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise UsageError(
            f"PARAMS_JSON holds an integer of {digits:,} digits; jitpc sends at most "
            f"{MAX_INT_DIGITS:,}"
        )
    return int(text)


def _check(args: argparse.Namespace) -> None:
    """Validate the id, method and params before any I/O."""
    try:
        if hasattr(args, "id"):  # not ls
            address(args.id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if hasattr(args, "method"):
        # A request with method "" is read as a response (Node tests its truthiness): it
        # would never be answered.
        if not _utf8(args.method, "METHOD"):
            raise UsageError("METHOD must not be empty")
        args.params = _params(args.params)


def _nulled(value: Any) -> Any:
    """``value`` with its non-finite floats replaced by ``None``."""
    # Loops, not comprehensions: one frame a level (a comprehension is a second one in 3.11),
    # for an answer nested as deep as the receiving parser allowed.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        items = []
        for item in value:
            items.append(_nulled(item))
        return items
    if isinstance(value, dict):
        members = {}
        for key, item in value.items():
            members[key] = _nulled(item)
        return members
    return value


def _dumps(value: Any, pretty: bool) -> str:
    """``value`` as strict JSON. A number beyond float range in an answer (``1e400``) was read
    as infinity, which ``json.dumps`` writes ``Infinity``: it is written ``null``, as jitpc
    writes non-finite numbers everywhere else (and JSON.stringify does)."""
    options: dict[str, Any] = {"indent": 2} if pretty else {"separators": (",", ":")}
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(_nulled(value), **options)


def _connect_timeout(args: argparse.Namespace) -> float:
    if args.connect_timeout is not None:
        return float(args.connect_timeout)
    return CONNECT_TIMEOUT if args.wait else 0.0


class _Session:
    """A connected client whose calls share the command's ``--timeout``."""

    def __init__(self, client: jitpc.sync.Client, deadline: float | None) -> None:
        self.client = client
        self.deadline = deadline

    def left(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def request(self, method: str, params: Any = None) -> Any:
        return self.client.request(method, params, timeout=self.left())


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[_Session]:
    """A connected client; the block runs within ``--timeout`` (else :class:`TimedOut`).

    Closing the connection after the block comes outside that bound: the answer is in by then,
    so a server slow to close only makes the close give up (destroy) when the time is up.
    """
    import jitpc.sync

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    client = jitpc.sync.connect(args.id, connect_timeout=_connect_timeout(args), reconnect=False)
    session = _Session(client, deadline)
    connected = False
    try:
        client.open(timeout=session.left())
        connected = True
        yield session
    except BaseException as exc:
        client.close(timeout=0)
        if isinstance(exc, TimeoutError) and deadline is not None:
            if connected:
                what = f"the server for {args.id!r} to answer"
            else:
                what = f"a server for {args.id!r} at {address(args.id).socket}"
            message = f"timed out after {args.timeout:g} s (--timeout) waiting for {what}"
            raise TimedOut(message, connected=connected) from None
        raise
    client.close(timeout=session.left())


def _no_server(exc: jitpc.ConnectError, args: argparse.Namespace) -> str:
    cause = exc.__cause__
    if not (isinstance(cause, OSError) and is_retryable(cause)):
        return f"jitpc: {exc}"  # refused: another user's server, an unusable path
    if not os.path.exists(exc.path):
        state = "no socket file"
    elif isinstance(cause, BlockingIOError):
        state = "a socket file, but its server's backlog is full"
    else:
        state = "a stale socket file"
    if getattr(args, "connect_timeout", None) is not None or getattr(args, "wait", False):
        waited = f"after trying for {_connect_timeout(args):g} s"
    elif args.command == "stop":
        waited = "tried once"
    else:
        waited = "tried once; try --wait?"
    return f"jitpc: no server for {exc.server_id!r} at {exc.path} ({state}; {waited})"


def _alive(args: argparse.Namespace) -> None:
    """Return once a server has answered rpc.ping (any answer, even an error, counts)."""
    with _session(args) as client:
        try:
            client.request("rpc.ping")
        except jitpc.RemoteError:
            pass  # a Node server has no rpc.ping: it answered an error, so it is alive


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d{hrs:02d}h"
    if hours:
        return f"{hours}h{mins:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _table(entries: list[dict[str, Any]]) -> list[str]:
    """``entries`` as the lines of an aligned table, under a header."""
    rows = [["ID", "PID", "VERSION", "JITPC", "UPTIME", "CLIENTS", "STATE"]]
    for e in entries:
        state = e["state"] if e["note"] is None else f"{e['state']} ({e['note']})"
        cells = [e["id"], e["pid"], e["version"], e["jitpc"], None, e["clients"], state]
        row = ["-" if cell is None else str(cell) for cell in cells]
        row[4] = _duration(e["uptime"])
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


# -- commands ------------------------------------------------------------------------------------


def _call(args: argparse.Namespace) -> int:
    with _session(args) as client:
        result = client.request(args.method, args.params)
    _out(_dumps(result, args.pretty))
    return EXIT_OK


def _notify(args: argparse.Namespace) -> int:
    with _session(args) as client:  # it connects first: notify() alone would lose a
        client.client.notify(args.method, args.params)  # failed connect silently
        # Within --timeout: once it returns, the notification is out.
        client.client.close(timeout=client.left())
    return EXIT_OK


def _ping(args: argparse.Namespace) -> int:
    try:
        _alive(args)
    except TimedOut:
        _out("timed out")
        raise
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError) as exc:
        _out("no server")
        why = _no_server(exc, args) if isinstance(exc, jitpc.ConnectError) else f"jitpc: {exc}"
        _err(why)
        return EXIT_NO_SERVER
    _out("alive")
    return EXIT_OK


def _lacks(args: argparse.Namespace, method: str) -> str:
    return (
        f"jitpc: the server for {args.id!r} has no method {method} (a Node jitpc server, probably)"
    )


def _status(args: argparse.Namespace) -> int:
    with _session(args) as client:
        try:
            status = client.request("rpc.status")
        except jitpc.MethodNotFound:
            _err(f"{_lacks(args, 'rpc.status')}; its status is null")
            status = {
                "id": args.id,
                "socket": address(args.id).socket,
                "alive": True,
                "status": None,
            }
        else:
            if isinstance(status, dict):
                status.setdefault("version", None)  # a jitpc server from before versions
    _out(_dumps(status, args.pretty))
    return EXIT_OK


def _where(args: argparse.Namespace) -> int:
    paths = address(args.id)
    timed_out: TimedOut | None = None
    try:
        _alive(args)
        state = "listening"
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError):
        state = "not listening"
    except TimedOut as exc:
        timed_out = exc
        state = "not answering" if exc.connected else "not listening"
    _out(f"socket: {paths.socket}")
    _out(f"lock:   {paths.lock}")
    _out(f"server: {state}")
    if timed_out is not None:
        raise timed_out
    return EXIT_OK


def _discover(args: argparse.Namespace) -> int:
    with _session(args) as client:
        try:
            document = client.request("rpc.discover")
        except jitpc.MethodNotFound:
            _err(_lacks(args, "rpc.discover"))
            return EXIT_REMOTE_ERROR
    _out(_dumps(document, args.pretty))
    return EXIT_OK


async def _ls(args: argparse.Namespace) -> int:
    import asyncio

    from . import _daemons

    limit = asyncio.Semaphore(LS_CONCURRENCY)

    async def one(server_id: str) -> dict[str, Any] | None:
        async with limit:
            try:
                return await _daemons.describe(server_id, args.timeout)
            except ValueError:  # a file name that makes no usable id (too long a path)
                return None

    found = await asyncio.gather(*map(one, _daemons.candidates(tmpdir())))
    entries = [e for e in found if e is not None and (args.all or e["state"] != "stale")]
    if args.json:
        _out(_dumps(entries, False))
    else:
        for line in _table(entries):
            _out(line)
    return EXIT_OK


async def _stop(args: argparse.Namespace) -> int:
    import asyncio

    from . import _daemons

    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + args.timeout
    name = f"the server for {args.id!r}"
    paths = address(args.id)
    release = _daemons.Release(paths.lock)  # opened first: the lock file of the server we ask
    # Its pid, should it not answer: the kernel knows the socket's listener.
    pid: int | None = _daemons.peer_pid_at(paths.socket) if args.force else None
    client = jitpc.connect(args.id, connect_timeout=0)
    failure, code = "", EXIT_OK
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            await client.open()
            params = None if args.grace is None else {"grace": args.grace}
            answer = await client.request("rpc.shutdown", params)
        answered = _daemons.whole(answer.get("pid")) if isinstance(answer, dict) else None
        pid = answered or pid
        name = f"{name} (pid {pid})" if pid else name
    except jitpc.ConnectError as exc:
        client.destroy()
        release.close()
        held = _daemons.lock_held(paths.lock)
        _err(_no_server(exc, args) + ("; its lock is held: starting, or stopping" if held else ""))
        return EXIT_NO_SERVER
    except jitpc.MethodNotFound:
        failure = "has no method rpc.shutdown (a Node jitpc server, probably)"
        code = EXIT_REMOTE_ERROR
    except jitpc.RemoteError as exc:
        failure = f"answered rpc.shutdown with {_dumps(exc.to_wire(), False)}"
        code = EXIT_REMOTE_ERROR
    except (jitpc.ClosedError, jitpc.ProtocolError) as exc:
        failure, code = f"did not answer rpc.shutdown ({exc})", EXIT_CLOSED
    except TimeoutError:
        if not scope.expired():
            raise
        failure = f"did not answer rpc.shutdown within {args.timeout:g} s (--timeout)"
        code = EXIT_TIMEOUT
    # Gone at once: the server's graceful close waits for its clients to end, this one too.
    client.destroy()
    lockless = release.lockless  # not a jitpc server's socket: no release to wait for
    if not failure and lockless:
        _err(f"jitpc: {name} answered rpc.shutdown; it has no lock file to wait on")
        return EXIT_OK
    if not failure:
        if await release.wait(max(0.0, deadline - loop.time())):
            took = loop.time() - started
            _err(f"jitpc: stopped {name}: it released the id within {took:.2f} s")
            return EXIT_OK
        failure = f"still held the id {args.timeout:g} s after the request (--timeout)"
        code = EXIT_TIMEOUT
    if not args.force or pid is None:
        release.close()
        then = "--force would signal it" if not args.force else "its pid is unknown"
        _err(f"jitpc: {name} {failure}; {then}")
        return code
    name = f"the server for {args.id!r} (pid {pid})"
    sigkill = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows: both terminate
    for signum in (signal.SIGTERM, sigkill):
        how = signal.Signals(signum).name
        try:
            sent = _daemons.send_signal(pid, signum)
            if lockless:
                _err(f"jitpc: sent {how} to {name}, which {failure}; no lock file to wait on")
                return EXIT_OK
            freed = await release.wait(args.kill_after)
        except OSError as exc:
            _err(f"jitpc: {name} {failure}, and {how} failed: {exc.strerror or exc}")
            return EXIT_REMOTE_ERROR
        if freed:
            _err(f"jitpc: stopped {name} with {how if sent else 'its exit'}: it {failure}")
            return EXIT_OK
    _err(f"jitpc: {name} {failure}, and still held the id {args.kill_after:g} s after SIGKILL")
    return EXIT_TIMEOUT


def _logs(args: argparse.Namespace) -> int:
    from . import _daemons

    path = address(args.id).log
    current = _daemons.tail(path, args.lines)
    older = None
    if current is None or current[1] < args.lines:  # begin in the rotated log
        older = _daemons.tail(path + ".1", args.lines - (0 if current is None else current[1]))
    if current is None and older is None:
        _err(f"jitpc: no log for {args.id!r} at {path}")
        return EXIT_NO_SERVER
    data = b"".join(part[0] for part in (older, current) if part is not None)
    stdout = getattr(sys.stdout, "buffer", None)
    try:
        if stdout is None:
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()
        else:
            stdout.write(data)  # the bytes as written: a log need not be UTF-8
            stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None
    return EXIT_OK


#: Each command's function: it returns the exit code, or raises an error _failed() maps to one.
COMMANDS: dict[str, Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]] = {
    "call": _call,
    "notify": _notify,
    "ping": _ping,
    "status": _status,
    "where": _where,
    "discover": _discover,
    "ls": _ls,
    "stop": _stop,
    "logs": _logs,
}


def _failed(exc: Exception, args: argparse.Namespace) -> int | None:
    """Say why a command failed with ``exc``, and return its exit code (``None``: not ours)."""
    if isinstance(exc, jitpc.RemoteError):
        _err(_dumps(exc.to_wire(), False))
        return EXIT_REMOTE_ERROR
    if isinstance(exc, jitpc.ConnectError):
        _err(_no_server(exc, args))
        return EXIT_NO_SERVER
    if isinstance(exc, (jitpc.ClosedError, jitpc.ProtocolError)):
        _err(f"jitpc: {exc}")
        return EXIT_CLOSED
    if isinstance(exc, TimedOut):
        _err(f"jitpc: {exc}")
        return EXIT_TIMEOUT
    return None


def _run(args: argparse.Namespace) -> int:
    try:
        code = COMMANDS[args.command](args)
        if not isinstance(code, int):  # ls, stop: on asyncio
            import asyncio

            code = asyncio.run(code)
        return code
    except Exception as exc:
        failed = _failed(exc, args)
        if failed is None:
            raise
        return failed


def main(argv: list[str] | None = None) -> int:
    """Run the ``jitpc`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        # The top level has no option taking a value, so a command first is all that is asked
        # for (with -h or --version first, the whole parser is).
        wanted = argv[0] if argv and argv[0] in COMMANDS else None
        args = _parser(wanted).parse_command_line(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return the code, don't exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    try:
        _check(args)
    except UsageError as exc:
        _err(f"jitpc: {exc}")
        return EXIT_USAGE
    try:
        return _run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except StdoutClosed:
        stdout = sys.stdout
        if stdout is sys.__stdout__ and stdout is not None:  # not one a caller swapped in
            # What is left in its buffer would fail again when Python flushes it at exit.
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return EXIT_PIPE


if __name__ == "__main__":
    sys.exit(main())
