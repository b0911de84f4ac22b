"""The notes daemon: ``python examples/notes_daemon.py FILE`` serves the notes kept in FILE.

Started on demand by ``notes_cli.py`` (or ``node_client.js``), it serves every client of the
user, so the file has a single writer, and exits after a minute without clients. Its output
goes to ``<tmpdir>/notes.log``: ``python -m jitpc logs notes``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from pydantic import TypeAdapter

import jitpc
from notes_api import ID, NOT_FOUND, VERSION, Add, ListNotes, Note, Remove

NOTES = TypeAdapter(list[Note])


class Notebook:
    """The notes, read from a JSON file and written back whole on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes = NOTES.validate_json(path.read_bytes()) if path.exists() else []

    def save(self) -> None:
        new = self.path.with_name(self.path.name + ".new")
        new.write_bytes(NOTES.dump_json(self.notes, indent=2))
        new.replace(self.path)  # atomic: a crash leaves the old file or the new one


def notes_router(book: Notebook) -> jitpc.Router:
    """The daemon's methods, over ``book``: a Router, so that tests can serve it in-process."""
    router = jitpc.Router()

    @router.method
    def add(params: Add) -> Note:
        note = Note(id=max((note.id for note in book.notes), default=0) + 1, text=params.text)
        book.notes.append(note)
        book.save()
        return note

    @router.method
    def list_notes(params: ListNotes) -> list[Note]:
        return [note for note in book.notes if params.grep is None or params.grep in note.text]

    @router.method
    def remove(params: Remove) -> Note:
        for note in book.notes:
            if note.id == params.id:
                book.notes.remove(note)
                book.save()
                return note
        raise jitpc.RPCError(NOT_FOUND, f"no note {params.id}")

    return router


async def main(path: Path) -> None:
    book = Notebook(path)  # a broken file fails here: the spawning CLI quotes this log
    server = await jitpc.listen(ID, version=VERSION, spindown_timeout=60)
    if server is None:
        return  # another daemon serves the id: to jitpc.spawn, a success too
    server.mount(notes_router(book))
    logging.info("serving %d notes from %s", len(book.notes), path)
    await server.serve_forever()  # until idle; SIGTERM and `jitpc stop notes` close it cleanly


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main(Path(sys.argv[1])))
