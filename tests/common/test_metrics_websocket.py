"""``tp_websocket_connections`` follows the open authenticated sockets of the real ASGI
application (Channels' communicator; the layer is whichever the mode configures)."""

from typing import Any

from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from tests.common.live_db import transactional_db
from tests.common.test_websocket import browser_headers, expect_close, session_cookie

pytestmark = transactional_db()

TIMEOUT = 2.0


def connections() -> float:
    return REGISTRY.get_sample_value("tp_websocket_connections") or 0.0


async def test_the_gauge_counts_open_connections(alice: Any, bob: Any, open_sockets: Any) -> None:
    before = connections()
    first = await open_sockets(browser_headers(await sync_to_async(session_cookie)(alice)))
    second = await open_sockets(browser_headers(await sync_to_async(session_cookie)(bob)))

    assert (await first.connect(TIMEOUT))[0] is True
    assert (await second.connect(TIMEOUT))[0] is True
    assert connections() - before == 2

    await first.disconnect()
    assert connections() - before == 1
    await second.disconnect()
    assert connections() == before


async def test_a_refused_connection_is_not_counted(open_sockets: Any) -> None:
    before = connections()
    socket = await open_sockets(browser_headers(None))  # no session: accepted, then closed

    await socket.connect(TIMEOUT)
    await expect_close(socket)
    await socket.disconnect()

    assert connections() == before
