"""The typed floor of bench/oneshot.py: the floor plus the pydantic steps of a typed call.

``python oneshot_typed_floor.py SOCKET``: as oneshot_floor.py, with ``import pydantic``, one
model, and ``model_validate`` of the result, against the daemon's typed ``echo_typed``; prints
the model as JSON.
"""

import json
import socket
import sys

from pydantic import BaseModel


class Echoed(BaseModel):
    a: int


with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(sys.argv[1])
    request = {"jsonrpc": "2.0", "id": 1, "method": "echo_typed", "params": {"a": 1}}
    sock.sendall(json.dumps(request).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection before answering")
        buf += chunk
result = Echoed.model_validate(json.loads(buf)["result"])
print(result.model_dump_json())
