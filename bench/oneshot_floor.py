"""The floor of bench/oneshot.py: a one-shot call with no framework, as a user would write it.

``python oneshot_floor.py SOCKET`` connects a raw AF_UNIX socket to the warm daemon, sends one
JSON-RPC request line for ``echo`` with ``{"a": 1}``, reads the answer line, prints it and exits.
"""

import json
import socket
import sys

with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(sys.argv[1])
    request = {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"a": 1}}
    sock.sendall(json.dumps(request).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection before answering")
        buf += chunk
print(json.dumps(json.loads(buf)))
