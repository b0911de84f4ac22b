"""The ``jitpc`` logger's records say which server and which client they are about
(``jitpc_id``, ``jitpc_client`` in each record), so that one id's records can be picked out."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import jitpc
from rawpeer import raw_peer

pytestmark = pytest.mark.anyio


class OneId(logging.Filter):
    """The recipe of docs/daemons.md (Logging): only the records of one server id."""

    def __init__(self, jitpc_id: str) -> None:
        super().__init__()
        self.server_id = jitpc_id

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "jitpc_id", None) == self.server_id


class Collect(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_servers_records_name_its_id_and_the_client(
    jitpc_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_client: jitpc.Client) -> None:
        raise RuntimeError("on_client broke")

    server = await jitpc.listen(jitpc_id, spindown=False)
    assert server is not None
    server.on_client(broken)

    def boom(_params: Any) -> Any:
        raise RuntimeError("the responder broke")

    server.on_client(lambda client: client.respond("boom", boom))
    with caplog.at_level(logging.DEBUG, logger="jitpc"):
        async with server:
            async with jitpc.connect(jitpc_id) as first, jitpc.connect(jitpc_id) as second:
                await first.request("rpc.ping")
                with pytest.raises(jitpc.InternalError):
                    await second.request("boom")
            async with raw_peer(jitpc_id) as peer:
                await peer.send(b"not json\n")
                await peer.read_reply()
    records = [r for r in caplog.records if r.name == "jitpc"]
    assert records and {getattr(r, "jitpc_id", None) for r in records} == {jitpc_id}
    responder = next(r for r in records if "responder for 'boom' raised" in r.getMessage())
    garbage = next(r for r in records if "invalid JSON" in r.getMessage())
    # Client numbers are the server's: the two clients, then the raw peer (numbers are reused).
    assert vars(responder)["jitpc_client"] in (0, 1)
    assert isinstance(vars(garbage)["jitpc_client"], int)
    came = [r for r in records if r.getMessage().endswith(" came")]
    # The server's numbers: 0 and 1 for the two clients at once, 0 again for the raw peer.
    assert sorted(vars(r)["jitpc_client"] for r in came) == [0, 0, 1]
    on_client = [r for r in records if "on_client callback" in r.getMessage()]
    assert on_client and all(vars(r)["jitpc_client"] is None for r in on_client)


async def test_a_clients_records_name_the_id_and_a_filter_picks_one_id(
    jitpc_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Collect(logging.DEBUG)
    handler.addFilter(OneId(jitpc_id))
    picked = handler.records
    logger = logging.getLogger("jitpc")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="jitpc"):
            other = jitpc_id + "x"
            for server in (jitpc_id, other):  # nobody serves either: debug records of tries
                with pytest.raises(jitpc.ConnectError):
                    await jitpc.connect(server, connect_timeout=0.3).request("rpc.ping")
    finally:
        logger.removeHandler(handler)
    assert picked and all(vars(r)["jitpc_id"] == jitpc_id for r in picked)
    assert any(getattr(r, "jitpc_id", None) == other for r in caplog.records)
    assert all(getattr(r, "jitpc_client", 0) is None for r in picked)
