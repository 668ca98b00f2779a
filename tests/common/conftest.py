"""Fixtures for the websocket tests."""

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.common.live_db import close_thread_connections
from tests.common.ws_communicator import WebsocketCommunicator
from tradingplatform.asgi import application

Headers = list[tuple[bytes, bytes]]


@pytest.fixture
async def open_sockets() -> AsyncIterator[Callable[[Headers], Any]]:
    """Opens communicators and disconnects whatever is still open at the end."""
    opened: list[WebsocketCommunicator] = []

    async def _open(headers: Headers) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
        opened.append(communicator)
        return communicator

    yield _open
    for communicator in opened:
        # A socket the server already closed has nothing left to clean up.
        with contextlib.suppress(Exception):
            await communicator.disconnect()
    # The consumer's queries ran in asgiref's executor thread; close its connection there.
    await sync_to_async(close_thread_connections)()
