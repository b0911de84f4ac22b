"""The ``jitpc`` command: talk to a jitpc server from a shell (``python -m jitpc`` or ``jitpc``).

A thin layer over the public API (``jitpc.connect`` and the error tree); it never starts a
server. Commands::

    jitpc call ID METHOD [PARAMS_JSON]    send a request, print its result as JSON on stdout
    jitpc notify ID METHOD [PARAMS_JSON]  send a notification
    jitpc ping ID                         is a server answering? prints "alive" or "no server"
    jitpc status ID                       print the server's rpc.status (pid, uptime, methods...)
    jitpc where ID                        the socket and lock paths, and whether a server listens
    jitpc discover ID                     print the server's OpenRPC document (rpc.discover)

``PARAMS_JSON`` is one JSON value (``-`` reads it from stdin); without it the message has no
params. Results go to stdout as one line of strict JSON (``--pretty`` indents them). A remote
error goes to stderr as its JSON error object (``message``, ``code``, ``data``, ``stack``).

Connecting: by default the command tries the server's socket once (``connect_timeout=0``) and
fails at once if nothing answers. ``--wait`` retries with jitpc's back-off (about 7 s), for a
server that is still starting; ``--connect-timeout SECONDS`` retries for that long (it wins
over ``--wait``). ``--timeout SECONDS`` bounds the whole command, connecting included: when it
passes, the command drops the connection (a jitpc server then cancels the request) and exits
4. Once the answer is in, closing the connection is cut short at that bound instead.

``ping`` sends ``rpc.ping``: any answer, even an error (a Node jitpc server has no
``rpc.ping``), means alive. ``status`` prints the ``rpc.status`` result; for a server without
it (Node jitpc) it prints ``{"id", "socket", "alive": true, "status": null}`` and a note on
stderr, and still exits 0.

Exit codes:
    0   success (``ping``: a server answered)
    1   the server answered with an error (``call``, ``discover``)
    2   no server answered (nothing listens at the id's socket, or it refused us)
    3   the connection closed, or the server broke the protocol, before the answer came
        (a request may or may not have run)
    4   timed out: ``--timeout`` passed first (a request may or may not have run)
    64  usage error: bad arguments, invalid params JSON, unusable id (EX_USAGE)
    130 interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import jitpc

from ._connect import CONNECT_TIMEOUT
from ._paths import address
from ._protocol import reject_constant
from ._transport import is_retryable

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_NO_SERVER = 2
EXIT_CLOSED = 3
EXIT_TIMEOUT = 4
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

EPILOG = f"""\
exit codes:
  0    success (ping: a server answered)
  1    the server answered with an error; its JSON error object is on stderr
  2    no server answered
  3    the connection closed (or the server broke the protocol) before the answer came
  4    timed out: --timeout passed before the answer came
  64   usage error: bad arguments, invalid params JSON, unusable id
  130  interrupted

The server's socket is tried once by default; --wait retries with jitpc's back-off for
~{CONNECT_TIMEOUT:.1f} s, --connect-timeout S for S seconds (it wins over --wait).
--timeout S bounds the whole command, connecting included. The CLI never starts a server.
"""


class UsageError(Exception):
    """Bad input from the command line: exit 64."""


class TimedOut(Exception):
    """``--timeout`` passed before the command was done: exit 4."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (argparse's own 2 means "no server" here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"not a non-negative number of seconds: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jitpc {jitpc.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, *parents: _Parser) -> None:
        commands.add_parser(
            name,
            help=help,
            description=help,
            parents=[common, *parents],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add("call", "send a request and print its result as JSON", message, pretty)
    add("notify", "send a notification", message)
    add("ping", "print 'alive' and exit 0 if a server answers rpc.ping, even with an error")
    add(
        "status",
        "print the server's rpc.status as JSON (id, pid, jitpc, uptime, clients, in_flight, "
        'methods); a server without it (Node jitpc) gives {"status": null, ...}',
        pretty,
    )
    add("where", "print the socket and lock paths, and whether a server listens")
    add("discover", "print the server's OpenRPC document (the rpc.discover result)", pretty)
    return parser


# -- helpers -------------------------------------------------------------------------------------


def _params(text: str | None) -> Any:
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text, parse_constant=reject_constant, parse_float=_finite_float)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"PARAMS_JSON is not valid JSON: {exc}") from exc


def _finite_float(text: str) -> float:
    # float("1e400") is infinity, which would go on the wire as null.
    number = float(text)
    if not math.isfinite(number):
        raise UsageError(f"PARAMS_JSON holds {text}, beyond the range of a float")
    return number


def _check(args: argparse.Namespace) -> None:
    """Validate the id and parse the params before any I/O."""
    try:
        address(args.id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if hasattr(args, "params"):
        args.params = _params(args.params)


def _nonfinite(value: Any, replace: Callable[[float], Any]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return replace(value)
    if isinstance(value, dict):
        return {key: _nonfinite(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_nonfinite(item, replace) for item in value]
    return value


def _dumps(value: Any, pretty: bool) -> str:
    """``value`` as strict JSON. A number beyond float range in an answer (``1e400``) was read
    as infinity, which ``json.dumps`` writes ``Infinity``: it is written ``null``, as jitpc
    writes non-finite numbers everywhere else (and JSON.stringify does)."""
    options: dict[str, Any] = {"indent": 2} if pretty else {"separators": (",", ":")}
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(_nonfinite(value, lambda number: None), **options)


def _connect_timeout(args: argparse.Namespace) -> float:
    if args.connect_timeout is not None:
        return float(args.connect_timeout)
    return CONNECT_TIMEOUT if args.wait else 0.0


@asynccontextmanager
async def _session(args: argparse.Namespace) -> AsyncIterator[jitpc.Client]:
    """A connected client; the block runs within ``--timeout`` (else :class:`TimedOut`).

    Ending the connection after the block comes outside that bound: the answer is in by then,
    so a server slow to close only makes ``end`` give up (destroy) when the time is up.
    """
    loop = asyncio.get_running_loop()
    client = jitpc.connect(args.id, connect_timeout=_connect_timeout(args))
    deadline = None if args.timeout is None else loop.time() + args.timeout
    connected = False
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            await client.open()
            connected = True
            yield client
    except BaseException as exc:
        client.destroy()
        if isinstance(exc, TimeoutError) and scope.expired():
            if connected:
                what = f"the server for {args.id!r} to answer"
            else:
                what = f"a server for {args.id!r} at {address(args.id).socket}"
            message = f"timed out after {args.timeout:g} s (--timeout) waiting for {what}"
            raise TimedOut(message, connected=connected) from None
        raise
    await client.end(timeout=None if deadline is None else max(0.0, deadline - loop.time()))


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
    if args.connect_timeout is not None or args.wait:
        waited = f"after trying for {_connect_timeout(args):g} s"
    else:
        waited = "tried once; try --wait?"
    return f"jitpc: no server for {exc.server_id!r} at {exc.path} ({state}; {waited})"


async def _alive(args: argparse.Namespace) -> None:
    """Return once a server has answered rpc.ping (any answer, even an error, counts)."""
    async with _session(args) as client:
        try:
            await client.request("rpc.ping")
        except jitpc.RemoteError:
            pass  # a Node server has no rpc.ping: it answered an error, so it is alive


# -- commands ------------------------------------------------------------------------------------


async def _call(args: argparse.Namespace) -> int:
    async with _session(args) as client:
        result = await client.request(args.method, args.params)
    print(_dumps(result, args.pretty))
    return EXIT_OK


async def _notify(args: argparse.Namespace) -> int:
    async with _session(args) as client:  # it connects first: notify() alone would lose a
        client.notify(args.method, args.params)  # failed connect silently
        await client.end()  # within --timeout: once it returns, the notification is out
    return EXIT_OK


async def _ping(args: argparse.Namespace) -> int:
    try:
        await _alive(args)
    except TimedOut:
        print("timed out")
        raise
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError) as exc:
        print("no server")
        why = _no_server(exc, args) if isinstance(exc, jitpc.ConnectError) else f"jitpc: {exc}"
        print(why, file=sys.stderr)
        return EXIT_NO_SERVER
    print("alive")
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    async with _session(args) as client:
        try:
            status = await client.request("rpc.status")
        except jitpc.RemoteError as exc:
            print(
                f"jitpc: the server for {args.id!r} answers but does not answer rpc.status "
                f"(a Node jitpc server, probably): {exc}",
                file=sys.stderr,
            )
            status = {
                "id": args.id,
                "socket": address(args.id).socket,
                "alive": True,
                "status": None,
            }
    print(_dumps(status, args.pretty))
    return EXIT_OK


async def _where(args: argparse.Namespace) -> int:
    paths = address(args.id)
    timed_out: TimedOut | None = None
    try:
        await _alive(args)
        state = "listening"
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError):
        state = "not listening"
    except TimedOut as exc:
        timed_out = exc
        state = "not answering" if exc.connected else "not listening"
    print(f"socket: {paths.socket}")
    print(f"lock:   {paths.lock}")
    print(f"server: {state}")
    if timed_out is not None:
        raise timed_out
    return EXIT_OK


async def _discover(args: argparse.Namespace) -> int:
    async with _session(args) as client:
        document = await client.request("rpc.discover")
    print(_dumps(document, args.pretty))
    return EXIT_OK


COMMANDS = {
    "call": _call,
    "notify": _notify,
    "ping": _ping,
    "status": _status,
    "where": _where,
    "discover": _discover,
}


async def _run(args: argparse.Namespace) -> int:
    try:
        return await COMMANDS[args.command](args)
    except jitpc.RemoteError as exc:
        print(_dumps(exc.to_wire(), False), file=sys.stderr)
        return EXIT_REMOTE_ERROR
    except jitpc.ConnectError as exc:
        print(_no_server(exc, args), file=sys.stderr)
        return EXIT_NO_SERVER
    except (jitpc.ClosedError, jitpc.ProtocolError) as exc:
        print(f"jitpc: {exc}", file=sys.stderr)
        return EXIT_CLOSED
    except TimedOut as exc:
        print(f"jitpc: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT


def main(argv: list[str] | None = None) -> int:
    """Run the ``jitpc`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return the code, don't exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    try:
        _check(args)
    except UsageError as exc:
        print(f"jitpc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
