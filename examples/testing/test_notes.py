"""Tests of the notes tool (``examples/notes_*.py``) on jitpc's pytest plugin.

    python -m pytest examples/testing      # its pytest.ini: -p jitpc.testing

The daemon's methods are served in-process, through a real socket, by ``jitpc_client`` (async
tests) and ``jitpc_sync_client`` (plain ones); the CLI runs against the real daemon process,
which ``jitpc_daemon`` starts, waits for and stops. Each test has a TMPDIR of its own, so the
fixed id ``notes`` is free in every one, and each checks that nothing is left behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import jitpc
from jitpc.testing import ClientFactory, DaemonFactory, SyncClientFactory
from notes_api import ID, NOT_FOUND, Add, ListNotes, Note, Remove
from notes_cli import main
from notes_daemon import Notebook, notes_router

DAEMON = Path(__file__).parent.parent / "notes_daemon.py"

pytestmark = pytest.mark.usefixtures("jitpc_nothing_left")  # no task, thread, socket, lock


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Each async test runs on asyncio's own event loop, then on uvloop's."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return ("asyncio", {"loop_factory": uvloop.new_event_loop})
    return "asyncio"


@pytest.fixture
def book(tmp_path: Path) -> Notebook:
    return Notebook(tmp_path / "notes.json")


@pytest.mark.anyio
async def test_notes_are_listed_and_saved(jitpc_client: ClientFactory, book: Notebook) -> None:
    client = await jitpc_client(notes_router(book))
    milk = await client.call(Add(text="buy milk"))
    mom = await client.call(Add(text="call mom"))
    assert (milk, mom) == (Note(id=1, text="buy milk"), Note(id=2, text="call mom"))
    assert await client.call(ListNotes()) == [milk, mom]
    assert await client.call(ListNotes(grep="milk")) == [milk]
    assert json.loads(book.path.read_text()) == [milk.model_dump(), mom.model_dump()]


@pytest.mark.anyio
async def test_removing_an_unknown_note_is_an_error(
    jitpc_client: ClientFactory, book: Notebook
) -> None:
    client = await jitpc_client(notes_router(book))
    with pytest.raises(jitpc.RemoteError) as error:
        await client.call(Remove(id=7))
    assert (error.value.code, error.value.message) == (NOT_FOUND, "no note 7")


def test_a_new_daemon_goes_on_from_the_file(
    jitpc_sync_client: SyncClientFactory, book: Notebook
) -> None:
    client = jitpc_sync_client(notes_router(book))
    client.call(Add(text="one"))
    client.call(Add(text="two"))
    assert client.call(Remove(id=2)) == Note(id=2, text="two")
    again = jitpc_sync_client(notes_router(Notebook(book.path)))  # reads what the first wrote
    assert again.call(ListNotes()) == [Note(id=1, text="one")]
    assert again.call(Add(text="three")) == Note(id=2, text="three")


def test_the_cli_talks_to_the_daemon(
    jitpc_daemon: DaemonFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(tmp_path / "notes.json")
    jitpc_daemon([sys.executable, str(DAEMON), file], id=ID)  # returns once it listens
    assert main(["--file", file, "add", "buy", "milk"]) == 0
    assert main(["--file", file, "rm", "2"]) == 1
    assert main(["--file", file, "list"]) == 0
    assert capsys.readouterr() == ("  1  buy milk\n  1  buy milk\n", "notes: no note 2\n")
