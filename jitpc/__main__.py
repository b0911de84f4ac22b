"""The ``jitpc`` command: talk to a jitpc server from a shell (``python -m jitpc`` or ``jitpc``).

A thin layer over the public API (``jitpc.connect`` and the error tree); it never starts a
server. Commands::

    jitpc call ID METHOD [PARAMS_JSON]    send a request, print its result as JSON on stdout
    jitpc notify ID METHOD [PARAMS_JSON]  send a notification
    jitpc ping ID                         is a server answering? prints "alive" or "no server"
    jitpc where ID                        the socket and lock paths, and whether a server listens
    jitpc discover ID                     print the server's OpenRPC document (rpc.discover)

``PARAMS_JSON`` is one JSON value (``-`` reads it from stdin); without it the message has no
params. Results go to stdout as one line of JSON (``--pretty`` indents them). A remote error goes
to stderr as its JSON error object (``message``, ``code``, ``data``, ``stack``).

By default the command tries the server's socket once and fails at once if nothing answers:
``jitpc.connect`` gets a spinup hook that refuses, and the client runs its spinup hook after the
first failed try, before any back-off sleep. ``--wait`` drops that hook, so the client retries with
jitpc's usual back-off (about 7 s) — for a server that is still starting.

Exit codes:
    0   success (``ping``: a server answered)
    1   the server answered with an error (``call``, ``discover``)
    2   no server answered (nothing listens at the id's socket, or it refused us)
    3   the connection closed, or the server broke the protocol, before the answer came
        (a request may or may not have run)
    64  usage error: bad arguments, invalid params JSON, unusable id (EX_USAGE)
    130 interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, NoReturn

import jitpc

from ._paths import address
from ._protocol import reject_constant

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_NO_SERVER = 2
EXIT_CLOSED = 3
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    success (ping: a server answered)
  1    the server answered with an error; its JSON error object is on stderr
  2    no server answered
  3    the connection closed (or the server broke the protocol) before the answer came
  64   usage error: bad arguments, invalid params JSON, unusable id
  130  interrupted

By default the server's socket is tried once; --wait retries with jitpc's back-off (~7 s).
The CLI never starts a server.
"""


class UsageError(Exception):
    """Bad input from the command line: exit 64."""


class _NoSpinup(Exception):
    """Raised by the fail-fast spinup hook: the first try found no server."""


def _refuse_spinup() -> None:
    raise _NoSpinup


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (argparse's own 2 means "no server" here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("id", metavar="ID", help="the server's jitpc id")
    common.add_argument(
        "--wait",
        action="store_true",
        help="retry with jitpc's back-off (about 7 s) instead of trying the socket once",
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
    add("ping", "exit 0 and print 'alive' if a server answers, else exit 2")
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
        return json.loads(text, parse_constant=reject_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"PARAMS_JSON is not valid JSON: {exc}") from exc


def _check(args: argparse.Namespace) -> None:
    """Validate the id and parse the params before any I/O."""
    try:
        address(args.id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if hasattr(args, "params"):
        args.params = _params(args.params)


def _dumps(value: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2)
    return json.dumps(value, separators=(",", ":"))


def _connect(args: argparse.Namespace) -> jitpc.Client:
    return jitpc.connect(args.id, spinup=None if args.wait else _refuse_spinup)


def _no_server(exc: jitpc.ConnectError) -> str:
    if isinstance(exc.__cause__, _NoSpinup):
        state = "a stale socket file" if os.path.exists(exc.path) else "no socket file"
        return f"jitpc: no server for {exc.server_id!r} at {exc.path} ({state}; try --wait?)"
    return f"jitpc: {exc}"


async def _alive(args: argparse.Namespace) -> None:
    """Return once a server has answered (any answer, even an error, counts); raise if none."""
    async with _connect(args) as client:
        try:
            await client.request("rpc.discover")
        except jitpc.RemoteError:
            pass  # a Node server without rpc.discover: method not found, but alive


# -- commands ------------------------------------------------------------------------------------


async def _call(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        result = await client.request(args.method, args.params)
    print(_dumps(result, args.pretty))
    return EXIT_OK


async def _notify(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        await client.open()  # notify() alone would lose a failed connect silently
        client.notify(args.method, args.params)
    return EXIT_OK


async def _ping(args: argparse.Namespace) -> int:
    try:
        await _alive(args)
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError) as exc:
        print("no server")
        why = _no_server(exc) if isinstance(exc, jitpc.ConnectError) else f"jitpc: {exc}"
        print(why, file=sys.stderr)
        return EXIT_NO_SERVER
    print("alive")
    return EXIT_OK


async def _where(args: argparse.Namespace) -> int:
    paths = address(args.id)
    try:
        await _alive(args)
        state = "listening"
    except (jitpc.ConnectError, jitpc.ClosedError, jitpc.ProtocolError):
        state = "not listening"
    print(f"socket: {paths.socket}")
    print(f"lock:   {paths.lock}")
    print(f"server: {state}")
    return EXIT_OK


async def _discover(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        document = await client.request("rpc.discover")
    print(_dumps(document, args.pretty))
    return EXIT_OK


COMMANDS = {
    "call": _call,
    "notify": _notify,
    "ping": _ping,
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
        print(_no_server(exc), file=sys.stderr)
        return EXIT_NO_SERVER
    except (jitpc.ClosedError, jitpc.ProtocolError) as exc:
        print(f"jitpc: {exc}", file=sys.stderr)
        return EXIT_CLOSED


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
