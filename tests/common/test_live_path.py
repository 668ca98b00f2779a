"""Live events end to end, the way `make run` (embedded) and production (Redis) deliver them.

A Celery task running on a worker thread calls `broadcast`; a websocket client connected to
uvicorn must get the event promptly. In embedded mode this guards the hop onto the server's
loop: without it an in-memory `group_send` from a worker thread arrived 4.8 s late (DESIGN,
"Two ways to run"), so the receive timeout below is what fails, not a timing assertion.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import shared_task
from django.db import transaction
from websockets.sync.client import ClientConnection, connect

from apps.common.broadcast import broadcast
from apps.users.models import ApiToken, User
from tests.common.live_db import close_thread_connections, transactional_db
from tests.common.live_stack import LiveServer, live_platform

pytestmark = transactional_db()

RECEIVE_TIMEOUT = 2.0


@shared_task(name="tests.common.live_probe", ignore_result=True)
def live_probe(user_id: int, n: int) -> None:
    """Like a service run by a task: read a row, announce in a transaction (sent after commit)."""
    try:
        with transaction.atomic():
            user = User.objects.get(pk=user_id)
            broadcast(user.pk, "probe", {"n": n, "email": user.email})
    finally:
        close_thread_connections()


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@contextmanager
def token_socket(server: LiveServer, user: Any) -> Iterator[ClientConnection]:
    _, plaintext = ApiToken.objects.create(user=user, expiry=None, name="t")
    headers = {"Authorization": f"Token {plaintext}"}
    with connect(server.ws_url, additional_headers=headers, open_timeout=5) as socket:
        hello = json.loads(socket.recv(timeout=RECEIVE_TIMEOUT))
        assert hello == {"event": "hello", "data": {"user": user.email}}
        yield socket


def receive(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(socket.recv(timeout=RECEIVE_TIMEOUT))
    return message


def test_live_event_from_worker_task_arrives_promptly(platform: LiveServer, alice: Any) -> None:
    # given
    with token_socket(platform, alice) as socket:
        # when: three tasks on the worker thread, each announcing after its commit
        for n in range(3):
            live_probe.delay(alice.pk, n)
            # then: each arrives within the receive timeout (TimeoutError otherwise)
            assert receive(socket) == {"event": "probe", "data": {"n": n, "email": alice.email}}


def test_live_event_from_worker_reaches_only_its_user(platform: LiveServer, alice: Any, bob: Any) -> None:
    with token_socket(platform, alice) as alice_socket, token_socket(platform, bob) as bob_socket:
        live_probe.delay(bob.pk, 1)
        live_probe.delay(alice.pk, 2)

        assert receive(alice_socket)["data"] == {"n": 2, "email": alice.email}
        assert receive(bob_socket)["data"] == {"n": 1, "email": bob.email}
        with pytest.raises(TimeoutError):
            alice_socket.recv(timeout=0.3)


@pytest.mark.redis
def test_live_event_from_worker_task_arrives_promptly_with_redis(platform: LiveServer, alice: Any) -> None:
    # The same path with Redis as broker and channel layer (async_to_sync, no hop).
    from django.conf import settings

    assert settings.EMBEDDED is False
    with token_socket(platform, alice) as socket:
        for n in range(3):
            live_probe.delay(alice.pk, n)
            assert receive(socket) == {"event": "probe", "data": {"n": n, "email": alice.email}}
