"""Websocket origin checks through the real ASGI application (tradingplatform.asgi): a page on
another site cannot ride the session cookie over /ws/ (cross-site websocket hijacking). The
check (apps.users.ws_auth: Channels' AllowedHostsOriginValidator on the session path) follows
ALLOWED_HOSTS. More cases (allowed hosts, lookalike host, no Origin) in tests/common/test_websocket.py.
"""

import contextlib
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.common.live_db import close_thread_connections, transactional_db
from tests.common.test_websocket import RECEIVE_TIMEOUT, browser_headers, session_cookie
from tests.common.ws_communicator import WebsocketCommunicator
from tradingplatform.asgi import application

pytestmark = transactional_db()


async def _connect(headers: list[tuple[bytes, bytes]]) -> bool:
    socket = WebsocketCommunicator(application, "/ws/", headers=headers)
    try:
        connected, _ = await socket.connect(RECEIVE_TIMEOUT)
        return bool(connected)
    finally:
        with contextlib.suppress(Exception):
            await socket.disconnect()
        await sync_to_async(close_thread_connections)()


@pytest.mark.parametrize(
    "origin",
    [b"https://evil.example", b"null", b"http://evil.example:8000", b"https://127.0.0.1.evil.example", b"file://"],
)
async def test_a_foreign_origin_is_refused_at_the_handshake(alice: Any, origin: bytes) -> None:
    cookie = await sync_to_async(session_cookie)(alice)

    assert await _connect(browser_headers(cookie, origin=origin)) is False


@pytest.mark.parametrize("origin", [b"http://localhost:8000", b"https://127.0.0.1", b"http://testserver"])
async def test_an_origin_among_allowed_hosts_is_accepted(alice: Any, origin: bytes) -> None:
    # ALLOWED_HOSTS of the test settings (read when the application is built); any scheme/port
    cookie = await sync_to_async(session_cookie)(alice)

    assert await _connect(browser_headers(cookie, origin=origin)) is True
