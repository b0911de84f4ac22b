"""A chaos proxy: it sits between a jitpc client and server and changes how the bytes are cut
into writes, never the bytes themselves (F12).

Modes:

* ``split``: every byte is its own write, with a loop turn after each, so the reader gets a
  line in as many pieces as it has bytes (if it keeps up).
* ``coalesce``: data is held while more keeps arriving within a few loop turns, then forwarded
  in one write: many messages, and message boundaries anywhere, in one read.
* ``delay``: data is held for a few loop turns, then forwarded in one write.

"A few loop turns" is event-driven: no timers. Clients reach the proxy by resolving their socket
in another TMPDIR, whose ``<id>.sock`` the proxy listens on; it connects onward to the server's.
"""

from __future__ import annotations

import asyncio
from typing import Literal, cast

Mode = Literal["split", "coalesce", "delay"]

#: Loop turns that ``coalesce`` waits for more data, and that ``delay`` holds it.
TURNS = 8
#: Past this many held bytes, the proxy stops reading the sender (backpressure).
HIGH_WATER = 1 << 20


class ChaosProxy:
    def __init__(self, listen_path: str, target_path: str, mode: Mode) -> None:
        self.listen_path, self.target_path, self.mode = listen_path, target_path, mode
        self.writes = 0  # writes forwarded, both directions
        self.most_lines = 0  # the most newlines forwarded in one write
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ends: list[_End] = []

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_unix_server(
            self._accept, self.listen_path
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for end in self._ends:
            if end.transport is not None:
                end.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self) -> asyncio.Protocol:
        up, down = _Pipe(self), _Pipe(self)  # client -> server, server -> client
        client_end, server_end = _End(up), _End(down)
        self._ends += [client_end, server_end]
        task = asyncio.get_running_loop().create_task(self._link(client_end, server_end))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client_end

    async def _link(self, client_end: _End, server_end: _End) -> None:
        await client_end.made.wait()
        try:
            await asyncio.get_running_loop().create_unix_connection(
                lambda: server_end, self.target_path
            )
        except OSError:
            client_end.abort()
            return
        await asyncio.gather(
            client_end.pipe.run(client_end, server_end), server_end.pipe.run(server_end, client_end)
        )
        client_end.abort()
        server_end.abort()

    def _wrote(self, data: bytes) -> None:
        self.writes += 1
        self.most_lines = max(self.most_lines, data.count(b"\n"))


class _Pipe:
    """One direction: what one end receives, forwarded to the other end under the mode."""

    def __init__(self, proxy: ChaosProxy) -> None:
        self.proxy = proxy
        self.held = bytearray()
        self.eof = False
        self.wake = asyncio.Event()

    async def run(self, src: _End, dst: _End) -> None:
        mode = self.proxy.mode
        while not (self.eof and not self.held):
            await self.wake.wait()
            self.wake.clear()
            if mode == "delay":
                for _ in range(TURNS):
                    await asyncio.sleep(0)
            while mode == "coalesce" and len(self.held) < HIGH_WATER:
                before = len(self.held)
                for _ in range(TURNS):
                    await asyncio.sleep(0)
                if len(self.held) == before:
                    break
            data, self.held = bytes(self.held), bytearray()
            src.resume()
            pieces = [data[i : i + 1] for i in range(len(data))] if mode == "split" else [data]
            for piece in pieces:
                if piece and dst.write(piece):
                    self.proxy._wrote(piece)
                    if mode == "split":
                        await asyncio.sleep(0)
        dst.write_eof()


class _End(asyncio.Protocol):
    """One socket of a proxied connection; what it receives goes into its pipe."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.made = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.made.set()

    def data_received(self, data: bytes) -> None:
        self.pipe.held += data
        self.pipe.wake.set()
        if len(self.pipe.held) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.pipe.eof = True
        self.pipe.wake.set()
        return True  # keep our half open: the other direction may still have data for us

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof_received()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def write_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
