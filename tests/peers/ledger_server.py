"""A jitpc server process for the fault tests: ``ledger_server.py ID --log PATH [options]``.

The server side of the request ledger (``tests/ledger.py``). Every execution of a request or
notification that carries a token is appended to the log file as one line, ``exec PID TOKEN NS``,
before the handler answers (one ``write`` on an ``O_APPEND`` descriptor, so any number of server
processes can share the file). The process also logs ``listen``, ``spindown`` and ``closed``
lines, with ``NS`` from the system-wide monotonic clock, so a test can check that no two servers
ever served at once.

It prints its life on stdout, one line per event, for the test to wait on: ``listening PID`` or
``busy`` (another process serves the id; exit code 0), ``joined N`` / ``gone N`` (client ids),
``holding TOKEN``, ``half TOKEN``, ``big TOKEN``, ``spindown``, ``closed``.

Methods (params are objects; ``token`` is the ledger token):

* ``run {token, echo?}``: logs, returns ``{token, pid, nop, echo}`` (``nop``: flood count so far).
* ``sleepy {token}``: the same, from an async handler after one loop turn.
* ``hold {token}``: logs, prints ``holding TOKEN``, answers once ``release {token}`` is called.
* ``half {token}``: logs, writes half a response line straight to the transport, prints
  ``half TOKEN`` and never answers: the process is meant to be killed there (F2).
* ``big {token, size}``: logs, prints ``big TOKEN``, returns ``{token, blob: "x" * size}``.
* ``ask {token, method, params}``: requests ``method`` from the calling client, returns its result.
* ``tell {token, method, params}``: notifies the calling client, then answers.
* ``note {token}`` (a notification): logs. ``nop``: counts, no log. ``whoami``: the client id.

Options: ``--spindown SECONDS|off``, ``--grace`` (the spindown hook first waits for a first
client), ``--gate-spindown`` (the hook prints ``spindown?`` and returns after a line on stdin),
``--max-message-bytes N``, ``--nofile N`` (RLIMIT_NOFILE), ``--gate`` (print ``ready`` and call
listen only after a line on stdin).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from typing import Any

import jitpc

PID = os.getpid()


def say(*words: object) -> None:
    print(*words, flush=True)


class Log:
    """The execution log: one appended line per event."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, kind: str, token: str = "-") -> None:
        os.write(self._fd, f"{kind} {PID} {token} {time.monotonic_ns()}\n".encode())


class State:
    """What the handlers of all clients of this process share."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.nop = 0
        self.releases: dict[str, asyncio.Event] = {}
        self.watchers: set[asyncio.Task[None]] = set()
        self.first_client = asyncio.Event()

    def release_event(self, token: str) -> asyncio.Event:
        return self.releases.setdefault(token, asyncio.Event())


def serve_client(state: State, client: jitpc.Client) -> None:
    """Register the ledger methods on one connection and report its life on stdout."""
    log = state.log
    say("joined", client.id)
    state.first_client.set()
    client_id = client.id

    async def watch() -> None:
        await client.wait_closed()
        say("gone", client_id)

    task = asyncio.get_running_loop().create_task(watch())
    state.watchers.add(task)
    task.add_done_callback(state.watchers.discard)

    def run(params: Any) -> Any:
        log.write("exec", params["token"])
        return {"token": params["token"], "pid": PID, "nop": state.nop, "echo": params.get("echo")}

    async def sleepy(params: Any) -> Any:
        await asyncio.sleep(0)
        return run(params)

    async def hold(params: Any) -> Any:
        token = params["token"]
        log.write("exec", token)
        say("holding", token)
        await state.release_event(token).wait()
        return {"token": token, "pid": PID}

    def release(params: Any) -> Any:
        state.release_event(params["token"]).set()
        return True

    async def half(params: Any) -> Any:
        token = params["token"]
        log.write("exec", token)
        # The one place that writes around jitpc: half a response line, as a server killed in
        # the middle of writing its reply leaves it on the wire. No public API can do this.
        connection = client._connection
        assert connection is not None
        transport = connection._transport
        assert transport is not None
        transport.write(b'{"jsonrpc":"2.0","id":1,"result":{"token":"' + token.encode())
        say("half", token)
        await asyncio.Event().wait()

    def big(params: Any) -> Any:
        log.write("exec", params["token"])
        say("big", params["token"])
        return {"token": params["token"], "blob": "x" * int(params["size"])}

    async def ask(params: Any) -> Any:
        log.write("exec", params["token"])
        result = await client.request(params["method"], params.get("params"))
        return {"token": params["token"], "result": result}

    def tell(params: Any) -> Any:
        log.write("exec", params["token"])
        client.notify(params["method"], params.get("params"))
        return {"token": params["token"]}

    def note(params: Any) -> None:
        log.write("exec", params["token"])

    def nop(params: Any) -> None:
        state.nop += 1

    client.respond("run", run)
    client.respond("sleepy", sleepy)
    client.respond("hold", hold)
    client.respond("release", release)
    client.respond("half", half)
    client.respond("big", big)
    client.respond("ask", ask)
    client.respond("tell", tell)
    client.respond("note", note)
    client.respond("nop", nop)
    client.respond("whoami", lambda params: client.id)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("server_id")
    parser.add_argument("--log", required=True)
    parser.add_argument("--spindown", default="off", help="idle seconds, or 'off'")
    parser.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--nofile", type=int, help="RLIMIT_NOFILE (soft and hard) to run under")
    parser.add_argument("--gate", action="store_true", help="print 'ready', listen on a stdin line")
    parser.add_argument(
        "--grace", action="store_true", help="no spindown before the first client has come"
    )
    parser.add_argument(
        "--gate-spindown", action="store_true", help="the hook says 'spindown?', waits for a line"
    )
    return parser.parse_args(argv)


async def start(args: argparse.Namespace, state: State) -> jitpc.Server | None:
    """``listen`` with the options of the command line; prints ``listening PID`` or ``busy``."""
    if args.gate:
        say("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def spindown() -> None:
        if args.grace:
            # A client that arrives while the hook runs keeps the server up: so a server
            # started by a client's spinup waits for it, however late its next try comes.
            await state.first_client.wait()
        if args.gate_spindown:
            say("spindown?")  # the test decides when the hook returns
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        # Nothing awaits from here to the server's close, so no request runs after this line.
        state.log.write("spindown")
        say("spindown")

    server = await jitpc.listen(
        args.server_id,
        on_client=lambda client: serve_client(state, client),
        spindown=False if args.spindown == "off" else spindown,
        spindown_timeout=5.0 if args.spindown == "off" else float(args.spindown),
        max_message_bytes=args.max_message_bytes,
    )
    if server is None:
        say("busy")
        return None
    state.log.write("listen")
    say("listening", PID)
    return server


async def main(args: argparse.Namespace) -> int:
    state = State(Log(args.log))
    server = await start(args, state)
    if server is not None:
        await server.wait_closed()
        state.log.write("closed")
        say("closed")
    return 0


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (arguments.nofile, arguments.nofile))
    sys.exit(asyncio.run(main(arguments)))
