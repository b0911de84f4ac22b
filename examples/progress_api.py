"""The build service's methods: ``build`` goes from client to server, ``progress`` back."""

from __future__ import annotations

from pydantic import BaseModel, Field

import jitpc


class Built(BaseModel):
    steps: int
    artifact: str


class Build(jitpc.Method[Built], method="build"):
    """Build ``target`` in ``steps`` steps, reporting each to the caller as ``progress``."""

    target: str
    steps: int = Field(default=5, ge=1)


class Progress(jitpc.Method[None], method="progress"):
    """Server to client, while a build runs: a notification (no answer awaited)."""

    done: int
    total: int
    what: str
