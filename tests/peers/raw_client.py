"""A client that writes raw bytes and never reads: ``raw_client.py SOCKET_PATH HEX``.

Connects to the Unix socket, writes the bytes given in hex (half a line, a whole request, ...),
prints ``written``, then blocks until its stdin closes, never reading the socket: the test kills
it there (F1). Standard library only, so it starts fast.
"""

from __future__ import annotations

import socket
import sys


def main(path: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(data)
        print("written", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1], bytes.fromhex(sys.argv[2]))
