"""A raw Unix-socket peer for the bad-input tests: exact bytes out, reply lines in.

jitpc's own client only ever writes well-formed messages; these tests need to write anything
(half a message, invalid UTF-8, a line one byte at a time) and to read exactly what the server
answers, line by line, including nothing at all and the end of the stream.

Every wait is bounded by :data:`support.HANG`; nothing sleeps for a time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jitpc
from jitpc._paths import address
from support import HANG

__all__ = ["RawPeer", "assert_serves", "parse_line", "raw_peer"]

#: What the server may do to a socket it has closed while we still write to it or read from it.
_CLOSED_ERRORS = (BrokenPipeError, ConnectionResetError)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: bytes) -> Any:
    """One reply line as strict JSON: UTF-8, one ``\\n`` at the end, no NaN or Infinity."""
    assert line.endswith(b"\n"), f"not a complete line: {line[:200]!r}"
    assert b"\n" not in line[:-1], f"more than one line: {line[:200]!r}"
    return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)


class RawPeer:
    """One raw connection to a jitpc server; use :func:`raw_peer` to open it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._eof = False

    # -- writing --------------------------------------------------------------------------------

    async def send(self, data: bytes, *, per_write: int | None = None, settle: int = 1) -> None:
        """Write ``data``: in one write, or ``per_write`` bytes per write.

        With ``per_write``, each write is its own ``send()`` call, and after every ``settle``
        writes the event loop runs until the server (on the same loop) has read them: with
        ``settle=1`` it reads the pieces one by one rather than all at once.
        """
        if per_write is None:
            await self._write(data)
            return
        for n, start in enumerate(range(0, len(data), per_write), 1):
            await self._write(data[start : start + per_write])
            if n % settle == 0:
                # Once to let the loop see the socket readable, once to let the server read.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    async def _write(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)  # one send() call; the fast path for tiny writes
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await asyncio.wait_for(self._loop.sock_sendall(self.sock, data[sent:]), HANG)

    async def try_send(self, data: bytes, *, per_write: int | None = None, settle: int = 1) -> bool:
        """:meth:`send`, for a server that may close the connection meanwhile: ``False`` if
        the write failed because it did."""
        try:
            await self.send(data, per_write=per_write, settle=settle)
        except _CLOSED_ERRORS:
            return False
        return True

    def shutdown_write(self) -> None:
        """Half-close: the server sees the end of the stream; we can still read."""
        self.sock.shutdown(socket.SHUT_WR)

    # -- reading --------------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Read more into the buffer; ``False`` at the end of the stream."""
        if self._eof:
            return False
        try:
            chunk = await asyncio.wait_for(self._loop.sock_recv(self.sock, 1 << 20), HANG)
        except ConnectionResetError:
            # Linux resets the connection when the server closes it with our bytes unread
            # (a message it refused to read to the end): that is an end of stream too.
            chunk = b""
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    async def read_line(self) -> bytes:
        """The next line, with its ``\\n``; ``b""`` at the end of the stream.

        Raises:
            AssertionError: the stream ended in the middle of a line.
        """
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if not await self._fill():
                assert not self._buf, f"the stream ended inside a line: {bytes(self._buf)!r}"
                return b""

    async def read_reply(self) -> Any:
        """The next line, parsed as strict JSON.

        Raises:
            AssertionError: the stream ended, or the line is not one valid JSON line.
        """
        line = await self.read_line()
        assert line, "the server closed the connection instead of replying"
        return parse_line(line)

    async def read_until_eof(self) -> list[bytes]:
        """Every line still to come, until the server closes the connection."""
        lines: list[bytes] = []
        while line := await self.read_line():
            lines.append(line)
        return lines

    def close(self) -> None:
        self.sock.close()


@asynccontextmanager
async def raw_peer(jitpc_id: str) -> AsyncIterator[RawPeer]:
    """A raw connection to the server ``jitpc_id`` (which must be listening)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, address(jitpc_id).socket), HANG)
        yield RawPeer(sock)
    finally:
        sock.close()


async def assert_serves(jitpc_id: str, token: Any = "still here", method: str = "echo") -> None:
    """Another client, on its own connection, gets ``token`` back from ``method``."""
    async with asyncio.timeout(HANG):
        async with jitpc.connect(jitpc_id) as client:
            assert await client.request(method, token) == token
