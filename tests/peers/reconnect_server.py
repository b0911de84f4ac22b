"""A server for the reconnect tests: ``reconnect_server.py ID --log PATH [--spindown S|off]``.

The server side of the request ledger (``tests/ledger.py``): each execution of a request or
notification carrying a token is appended to the log as ``exec PID TOKEN NS`` before it is
answered. It never spins down before its first client has come (a client that spun it up may
need a moment), then spins down ``S`` seconds after the last client left (default: never).

Every new client is greeted: the server requests the client's ``hello`` with ``{"pid": PID}``
and prints ``greeted RESULT_JSON`` (or ``greeting failed ERROR``): a server-to-client request
the client answers with whatever it registered.

It prints ``listening PID`` (or ``busy``), ``joined N`` / ``gone N``, ``holding TOKEN``,
``spindown`` and ``closed`` on stdout. Methods:

* ``run {token}``: logs, returns ``{token, pid}``.
* ``hold {token}``: logs, prints ``holding TOKEN``, never answers.
* ``ask {token, method, params}``: logs, requests ``method`` from the calling client, returns
  ``{token, pid, result}``.
* ``note {token}`` (a notification): logs.
* ``drop`` (a notification): the server ends this client's connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

import jitpc

PID = os.getpid()


def say(*words: object) -> None:
    print(*words, flush=True)


class Log:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, kind: str, token: str = "-") -> None:
        os.write(self._fd, f"{kind} {PID} {token} {time.monotonic_ns()}\n".encode())


class Serving:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.first_client = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def serve(self, client: jitpc.Client) -> None:
        log = self.log
        say("joined", client.id)
        self.first_client.set()
        client_id = client.id

        async def watch() -> None:
            await client.wait_closed()
            say("gone", client_id)

        async def greet() -> None:
            try:
                result = await client.request("hello", {"pid": PID})
            except jitpc.JitpcError as exc:
                say("greeting failed", repr(exc))
            else:
                say("greeted", json.dumps(result))

        self.spawn(watch())
        self.spawn(greet())

        def run(params: Any) -> Any:
            log.write("exec", params["token"])
            return {"token": params["token"], "pid": PID}

        async def hold(params: Any) -> Any:
            log.write("exec", params["token"])
            say("holding", params["token"])
            await asyncio.Event().wait()

        async def ask(params: Any) -> Any:
            log.write("exec", params["token"])
            result = await client.request(params["method"], params.get("params"))
            return {"token": params["token"], "pid": PID, "result": result}

        def note(params: Any) -> None:
            log.write("exec", params["token"])

        def drop(params: Any) -> None:
            self.spawn(client.end())

        client.respond("run", run)
        client.respond("hold", hold)
        client.respond("ask", ask)
        client.respond("note", note)
        client.respond("drop", drop)


async def main(args: argparse.Namespace) -> int:
    serving = Serving(Log(args.log))

    async def spindown() -> None:
        await serving.first_client.wait()
        say("spindown")

    server = await jitpc.listen(
        args.server_id,
        on_client=serving.serve,
        spindown=False if args.spindown == "off" else spindown,
        spindown_timeout=5.0 if args.spindown == "off" else float(args.spindown),
    )
    if server is None:
        say("busy")
        return 0
    say("listening", PID)
    await server.wait_closed()
    say("closed")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("server_id")
    parser.add_argument("--log", required=True)
    parser.add_argument("--spindown", default="off", help="idle seconds, or 'off'")
    sys.exit(asyncio.run(main(parser.parse_args())))
