"""notes: keep short notes from the shell; a daemon, started on demand, holds them.

    python examples/notes_cli.py add buy milk      # prints the new note: "1  buy milk"
    python examples/notes_cli.py list [--grep milk]
    python examples/notes_cli.py rm 1
    python examples/notes_cli.py stop              # stop the daemon now (it stops when idle)

Blocking code on ``jitpc.sync``: each run connects to the daemon, starting it first if none
runs (``jitpc.spawn``: detached, and ready once it listens), makes one call and exits. The
daemon (``notes_daemon.py``) reads ``--file`` (default: ``$NOTES_FILE``, else
``~/.notes.json``) when it starts, and exits after a minute without clients.

Exit status: 0 done; 1 the daemon said no (an unknown note); 2 usage; 3 the daemon could not be
reached, or did not start (its log is quoted); 4 no answer within ``--timeout``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jitpc
import jitpc.sync
from notes_api import ID, VERSION, Add, ListNotes, Note, Remove

DAEMON = Path(__file__).with_name("notes_daemon.py")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notes", description="Keep short notes.")
    default_file = os.environ.get("NOTES_FILE", Path.home() / ".notes.json")
    parser.add_argument("--file", type=Path, default=default_file, help="the notes file")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait, starting the daemon too"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("add", help="add a note").add_argument("text", nargs="+")
    commands.add_parser("list", help="list the notes").add_argument("--grep", metavar="WORD")
    commands.add_parser("rm", help="remove a note").add_argument("id", type=int)
    commands.add_parser("stop", help="stop the daemon")
    return parser


def show(note: Note) -> None:
    print(f"{note.id:>3}  {note.text}")


def run(args: argparse.Namespace) -> None:
    daemon = jitpc.spawn([sys.executable, str(DAEMON), str(args.file.absolute())])
    with jitpc.sync.connect(
        ID,
        spinup=daemon,  # runs only when no daemon answers
        timeout=args.timeout,  # each call's whole deadline, starting the daemon included
        version=VERSION,  # a daemon of another version, or with other methods,
        methods=[Add, ListNotes, Remove],
        on_mismatch="restart",  # is shut down and replaced
    ) as notes:
        if args.command == "add":
            show(notes.call(Add(text=" ".join(args.text))))
        elif args.command == "list":
            for note in notes.call(ListNotes(grep=args.grep)):
                show(note)
        else:
            show(notes.call(Remove(id=args.id)))


def stop(args: argparse.Namespace) -> None:
    try:  # connect_timeout=0: try the socket once, start nothing
        with jitpc.sync.connect(ID, connect_timeout=0, timeout=args.timeout) as notes:
            answer = notes.request("rpc.shutdown")  # every jitpc server has it
    except jitpc.ConnectError:
        print("no notes daemon is running")
    else:
        print(f"notes daemon (pid {answer['pid']}) stopping")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # exits 2 on a usage error
    try:
        if args.command == "stop":
            stop(args)
        else:
            run(args)
    except jitpc.RemoteError as exc:  # the daemon answered with an error
        return fail(exc.message, 1)
    except jitpc.ConnectError as exc:  # no daemon, even after starting one
        return fail(f"cannot reach the notes daemon: {exc}", 3)
    except jitpc.ClosedError:  # it went away before answering (the call may have run)
        return fail("the notes daemon closed the connection before answering", 3)
    except TimeoutError:
        return fail(f"no answer from the notes daemon within {args.timeout:g} s", 4)
    return 0


def fail(message: str, status: int) -> int:
    print(f"notes: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
