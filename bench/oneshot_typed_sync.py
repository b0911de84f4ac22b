"""The typed one-shot of bench/oneshot.py: a user's script with its own pydantic models.

``python oneshot_typed_sync.py ID`` defines the daemon's typed API as a client would (a copy of
the models in oneshot_server.py), makes one ``jitpc.sync`` call of ``echo_typed`` and prints the
result model as JSON.
"""

import sys

from pydantic import BaseModel

import jitpc
import jitpc.sync


class Echoed(BaseModel):
    a: int


class EchoTyped(jitpc.Method[Echoed], method="echo_typed"):
    a: int


with jitpc.sync.connect(sys.argv[1]) as client:
    result = client.call(EchoTyped(a=1))
print(result.model_dump_json())
