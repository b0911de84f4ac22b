"""The notes daemon's methods: shared by notes_daemon.py, notes_cli.py and their tests."""

from __future__ import annotations

from pydantic import BaseModel

import jitpc

#: The daemon's jitpc id: one daemon per user (its socket is ``<tmpdir>/notes.sock``).
ID = "notes"
#: Bump it when the methods change: a newer CLI then replaces an older daemon.
VERSION = "1"
#: The error code of a note that does not exist (JSON-RPC leaves small numbers to us).
NOT_FOUND = 1


class Note(BaseModel):
    id: int
    text: str


class Add(jitpc.Method[Note], method="add"):
    """Add a note; answers it, with its id."""

    text: str


class ListNotes(jitpc.Method[list[Note]], method="list"):
    """The notes, oldest first; only those that contain ``grep``, if given."""

    grep: str | None = None


class Remove(jitpc.Method[Note], method="remove"):
    """Remove a note; answers it (error ``NOT_FOUND``: no note has that id)."""

    id: int
