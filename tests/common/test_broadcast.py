"""`broadcast` announces only what was committed, and hands in-memory sends to the server's loop."""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import Client

from apps.common import broadcast as broadcast_module
from apps.common.broadcast import broadcast, set_server_loop
from tests.common.live_db import close_thread_connections, transactional_db
from tests.common.ws_communicator import WebsocketCommunicator
from tradingplatform.asgi import application

RECEIVE_TIMEOUT = 2.0


class Boom(Exception):
    pass


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, dict[str, Any]]]:
    """Records every send `broadcast` lets through (and still performs it)."""
    calls: list[tuple[int, str, dict[str, Any]]] = []
    real_send_now = broadcast_module.send_now

    def recording_send_now(user_id: int, event: str, data: dict[str, Any]) -> None:
        calls.append((user_id, event, data))
        real_send_now(user_id, event, data)

    monkeypatch.setattr(broadcast_module, "send_now", recording_send_now)
    return calls


@transactional_db()
def test_broadcast_in_rolled_back_transaction_sends_nothing(alice: Any, sent: list[Any]) -> None:
    # when
    with pytest.raises(Boom), transaction.atomic():
        broadcast(alice.pk, "order.filled", {"order": 1})
        raise Boom
    # then
    assert sent == []


@transactional_db()
def test_broadcast_is_sent_after_commit_not_before(alice: Any, sent: list[Any]) -> None:
    with transaction.atomic():
        broadcast(alice.pk, "order.filled", {"order": 1})
        assert sent == []

    assert sent == [(alice.pk, "order.filled", {"order": 1})]


@transactional_db()
def test_broadcast_in_rolled_back_savepoint_is_dropped_and_the_rest_sent(alice: Any, sent: list[Any]) -> None:
    with transaction.atomic():
        broadcast(alice.pk, "kept", {})
        with pytest.raises(Boom), transaction.atomic():
            broadcast(alice.pk, "dropped", {})
            raise Boom

    assert [event for _, event, _ in sent] == ["kept"]


@transactional_db()
def test_broadcast_outside_a_transaction_is_sent_at_once(alice: Any, sent: list[Any]) -> None:
    broadcast(alice.pk, "order.filled", {"order": 1})

    assert sent == [(alice.pk, "order.filled", {"order": 1})]


def test_broadcast_registers_an_on_commit_callback(
    alice: Any, sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        broadcast(alice.pk, "order.filled", {"order": 1})

    assert sent == []
    assert len(callbacks) == 1


def _session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _roll_back_one_commit_one(user_id: int) -> None:
    with pytest.raises(Boom), transaction.atomic():
        broadcast(user_id, "rolled.back", {"n": 1})
        raise Boom
    with transaction.atomic():
        broadcast(
            user_id,
            "committed",
            {"price": Decimal("101.50"), "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)},
        )


@transactional_db()
async def test_connected_client_receives_only_committed_events(alice: Any) -> None:
    # given: alice's open tab
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = WebsocketCommunicator(
        application, "/ws/", headers=[(b"origin", b"http://testserver"), (b"cookie", cookie)]
    )
    assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "hello"
    try:
        # when: a service in a thread rolls one change back and commits another
        await sync_to_async(_roll_back_one_commit_one)(alice.pk)
        # then: only the committed one arrives, its Decimal and datetime as the API renders them
        assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {
            "event": "committed",
            "data": {"price": "101.50", "at": "2025-01-02T03:04:05Z"},
        }
        assert await socket.receive_nothing(timeout=0.3)
    finally:
        await socket.disconnect()
        await sync_to_async(close_thread_connections)()


@pytest.fixture
def in_memory_layer(settings: Any) -> Any:
    """Channels' in-memory layer (embedded mode), whatever the run's mode."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


@pytest.fixture
def server_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, recorded as the ASGI server's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="server-loop", daemon=True)
    thread.start()
    set_server_loop(loop)
    try:
        yield loop
    finally:
        set_server_loop(None)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _record_group_sends(layer: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], threading.Event]:
    seen: list[Any] = []
    done = threading.Event()
    real_group_send = layer.group_send

    async def recording_group_send(group: str, message: dict[str, Any]) -> None:
        seen.append((asyncio.get_running_loop(), group, message["event"]))
        await real_group_send(group, message)
        done.set()

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    return seen, done


def test_send_from_a_worker_thread_runs_on_the_server_loop(
    in_memory_layer: Any, server_loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-memory layer's queues belong to the server's loop; a group_send on any other loop
    # reaches a waiting consumer late or not at all.
    seen, done = _record_group_sends(in_memory_layer, monkeypatch)

    broadcast_module.send_now(7, "order.filled", {})

    assert done.wait(RECEIVE_TIMEOUT)
    assert seen == [(server_loop, "user.7", "order.filled")]


def test_send_on_the_server_loop_is_scheduled_there_without_blocking(
    in_memory_layer: Any, server_loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, done = _record_group_sends(in_memory_layer, monkeypatch)

    async def from_an_async_view() -> int:
        broadcast_module.send_now(7, "order.filled", {})
        return len(seen)  # not sent yet: scheduled as a task, the caller was not blocked

    sent_before_returning = asyncio.run_coroutine_threadsafe(from_an_async_view(), server_loop).result(5)

    assert sent_before_returning == 0
    assert done.wait(RECEIVE_TIMEOUT)
    assert seen == [(server_loop, "user.7", "order.filled")]


def test_send_without_a_server_loop_still_delivers(in_memory_layer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A management command or a worker process of its own: no server loop in this process.
    set_server_loop(None)
    seen, done = _record_group_sends(in_memory_layer, monkeypatch)

    broadcast_module.send_now(7, "order.filled", {})

    assert done.is_set()
    assert [group for _, group, _ in seen] == ["user.7"]
