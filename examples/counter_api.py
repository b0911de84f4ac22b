"""The counter service's methods: shared by its server and its clients."""

from __future__ import annotations

from pydantic import BaseModel, Field

import jitpc


class Counter(BaseModel):
    key: str
    count: int


class Inc(jitpc.Method[Counter], method="inc"):
    """Add ``by`` to a counter and return it."""

    key: str
    by: int = Field(default=1, ge=1)


class Get(jitpc.Method[Counter], method="get"):
    """Read a counter."""

    key: str


class Reset(jitpc.Method[None], method="reset"):
    """Set every counter back to zero (a notification: no answer)."""
