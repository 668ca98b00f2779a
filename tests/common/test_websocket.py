"""The /ws/ socket: who may connect (RELIABILITY 37) and whose events each connection gets.

Run against the real ASGI application (origin check, session or token auth, the consumer) with
Channels' communicator; the layer is whichever the mode configures (in-memory or Redis).
"""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.common.broadcast import broadcast
from apps.users.models import ApiToken
from tests.common.live_db import transactional_db
from tests.common.ws_communicator import WebsocketCommunicator

pytestmark = transactional_db()

RECEIVE_TIMEOUT = 2.0

Headers = list[tuple[bytes, bytes]]


def session_cookie(user: Any, *, verified_device: Any = None) -> bytes:
    """A `Cookie:` header value for a fresh session of `user` (verified with `verified_device`)."""
    client = Client()
    client.force_login(user)
    if verified_device is not None:
        from django_otp import DEVICE_ID_SESSION_KEY

        session = client.session
        session[DEVICE_ID_SESSION_KEY] = verified_device.persistent_id
        session.save()
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def browser_headers(cookie: bytes | None, origin: bytes | None = b"http://testserver") -> Headers:
    headers: Headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return headers


async def expect_close(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(RECEIVE_TIMEOUT)
    assert message["type"] == "websocket.close", message
    return int(message.get("code", 1000))


@pytest.mark.parametrize("origin", [b"http://testserver", b"http://127.0.0.1:8000", b"http://127.0.0.1"])
async def test_ws_session_with_allowed_origin_gets_hello(alice: Any, open_sockets: Any, origin: bytes) -> None:
    # given
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie, origin=origin))
    # when
    connected, _ = await socket.connect(RECEIVE_TIMEOUT)
    # then
    assert connected is True
    assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "hello", "data": {"user": alice.email}}


async def test_ws_foreign_origin_is_refused(alice: Any, open_sockets: Any) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie, origin=b"https://evil.example"))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is False
    assert await socket.receive_nothing()


async def test_ws_lookalike_origin_is_refused(alice: Any, open_sockets: Any) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie, origin=b"http://testserver.evil.example"))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is False


async def test_ws_session_without_origin_is_refused(alice: Any, open_sockets: Any) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie, origin=None))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is False


async def test_ws_no_session_is_accepted_then_closed_4401(db: Any, open_sockets: Any) -> None:
    socket = await open_sockets(browser_headers(None))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await expect_close(socket) == 4401


async def test_ws_unknown_session_cookie_is_closed_4401(db: Any, open_sockets: Any) -> None:
    socket = await open_sockets(browser_headers(b"sessionid=not-a-real-session"))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await expect_close(socket) == 4401


async def test_ws_session_pending_second_factor_is_closed_4403(alice: Any, enable_2fa: Any, open_sockets: Any) -> None:
    # given: alice has a device but this session has not passed it
    await sync_to_async(enable_2fa)(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie))
    # when
    connected, _ = await socket.connect(RECEIVE_TIMEOUT)
    # then: accepted so the browser learns why, closed before any event
    assert connected is True
    assert await expect_close(socket) == 4403


async def test_ws_session_verified_second_factor_gets_hello(alice: Any, enable_2fa: Any, open_sockets: Any) -> None:
    device = await sync_to_async(enable_2fa)(alice)
    cookie = await sync_to_async(session_cookie)(alice, verified_device=device)
    socket = await open_sockets(browser_headers(cookie))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "hello"


async def test_ws_token_header_connects_without_origin(alice: Any, open_sockets: Any) -> None:
    _, plaintext = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="t")
    socket = await open_sockets([(b"authorization", f"Token {plaintext}".encode())])

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "hello", "data": {"user": alice.email}}


async def test_ws_token_header_ignores_foreign_origin_but_not_the_token(alice: Any, open_sockets: Any) -> None:
    # A token is not an ambient credential: a page elsewhere cannot make the browser send it.
    _, plaintext = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="t")
    socket = await open_sockets(
        [(b"origin", b"https://evil.example"), (b"authorization", f"Token {plaintext}".encode())]
    )

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["data"] == {"user": alice.email}


@pytest.mark.parametrize(
    "authorization",
    [b"Token tp_not-a-real-token", b"Token ", b"Bearer something", b"Token a b"],
)
async def test_ws_invalid_token_is_closed_4401(db: Any, open_sockets: Any, authorization: bytes) -> None:
    socket = await open_sockets([(b"authorization", authorization)])

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await expect_close(socket) == 4401


async def test_ws_expired_token_is_closed_4401(alice: Any, open_sockets: Any) -> None:
    from datetime import timedelta

    _, plaintext = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=timedelta(seconds=-1), name="t")
    socket = await open_sockets([(b"authorization", f"Token {plaintext}".encode())])

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await expect_close(socket) == 4401


async def test_ws_broadcast_reaches_every_connection_of_its_user_only(alice: Any, bob: Any, open_sockets: Any) -> None:
    # given: alice in two tabs (session) and a bot (token); bob in one tab
    alice_cookie = await sync_to_async(session_cookie)(alice)
    bob_cookie = await sync_to_async(session_cookie)(bob)
    _, alice_token = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="bot")
    alice_tab = await open_sockets(browser_headers(alice_cookie))
    alice_bot = await open_sockets([(b"authorization", f"Token {alice_token}".encode())])
    bob_tab = await open_sockets(browser_headers(bob_cookie))
    for socket in (alice_tab, alice_bot, bob_tab):
        assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
        assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "hello"
    # when: from a thread, as a service would (outside a transaction: sent at once)
    await sync_to_async(broadcast)(alice.pk, "order.filled", {"order": 7, "qty": "1.5"})
    # then
    expected = {"event": "order.filled", "data": {"order": 7, "qty": "1.5"}}
    assert await alice_tab.receive_json_from(RECEIVE_TIMEOUT) == expected
    assert await alice_bot.receive_json_from(RECEIVE_TIMEOUT) == expected
    assert await bob_tab.receive_nothing(timeout=0.3)


async def test_ws_bob_receives_his_own_events_not_alices(alice: Any, bob: Any, open_sockets: Any) -> None:
    bob_cookie = await sync_to_async(session_cookie)(bob)
    bob_tab = await open_sockets(browser_headers(bob_cookie))
    assert (await bob_tab.connect(RECEIVE_TIMEOUT))[0] is True
    await bob_tab.receive_json_from(RECEIVE_TIMEOUT)

    await sync_to_async(broadcast)(alice.pk, "security_event", {"action": "user.login"})
    await sync_to_async(broadcast)(bob.pk, "security_event", {"action": "token.created"})

    assert await bob_tab.receive_json_from(RECEIVE_TIMEOUT) == {
        "event": "security_event",
        "data": {"action": "token.created"},
    }
    assert await bob_tab.receive_nothing(timeout=0.3)


async def test_ws_session_ended_event_closes_the_socket(alice: Any, open_sockets: Any) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_sockets(browser_headers(cookie))
    assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
    await socket.receive_json_from(RECEIVE_TIMEOUT)

    await sync_to_async(broadcast)(alice.pk, "session.ended", {})

    assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "session.ended", "data": {}}
    assert await expect_close(socket) == 4401


async def test_ws_ping_gets_pong(alice: Any, open_sockets: Any) -> None:
    _, plaintext = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="t")
    socket = await open_sockets([(b"authorization", f"Token {plaintext}".encode())])
    assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
    await socket.receive_json_from(RECEIVE_TIMEOUT)

    await socket.send_json_to({"type": "ping"})

    assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "pong", "data": {}}


async def test_ws_revoking_a_token_closes_its_sockets_only(alice: Any, open_sockets: Any) -> None:
    from apps.users.services import api_token_revoke

    # given: two bots of alice, each with its own token
    revoked, revoked_plain = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="old")
    _, kept_plain = await sync_to_async(ApiToken.objects.create)(user=alice, expiry=None, name="new")
    old_bot = await open_sockets([(b"authorization", f"Token {revoked_plain}".encode())])
    new_bot = await open_sockets([(b"authorization", f"Token {kept_plain}".encode())])
    for socket in (old_bot, new_bot):
        assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
        await socket.receive_json_from(RECEIVE_TIMEOUT)
    # when
    await sync_to_async(api_token_revoke)(request=None, user=alice, public_id=str(revoked.public_id))
    # then: the revoked token's socket is told and closed, the other keeps its events
    assert (await old_bot.receive_json_from(RECEIVE_TIMEOUT))["data"]["action"] == "token.revoked"
    assert await old_bot.receive_json_from(RECEIVE_TIMEOUT) == {
        "event": "session.ended",
        "data": {"reason": "token_revoked"},
    }
    assert await expect_close(old_bot) == 4401
    assert (await new_bot.receive_json_from(RECEIVE_TIMEOUT))["event"] == "security_event"
    assert await new_bot.receive_nothing(timeout=0.3)


async def test_ws_logging_out_closes_that_sessions_sockets_only(alice: Any, open_sockets: Any) -> None:
    # given: alice in two browsers
    def two_sessions() -> tuple[Client, bytes, bytes]:
        leaving = Client()
        leaving.force_login(alice)
        return leaving, f"sessionid={leaving.cookies['sessionid'].value}".encode(), session_cookie(alice)

    leaving, leaving_cookie, staying_cookie = await sync_to_async(two_sessions)()
    leaving_tab = await open_sockets(browser_headers(leaving_cookie))
    staying_tab = await open_sockets(browser_headers(staying_cookie))
    for socket in (leaving_tab, staying_tab):
        assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
        await socket.receive_json_from(RECEIVE_TIMEOUT)
    # when: the first browser logs out
    response = await sync_to_async(leaving.post)("/accounts/logout/")
    assert response.status_code == 302
    # then
    assert (await leaving_tab.receive_json_from(RECEIVE_TIMEOUT))["data"]["action"] == "user.logout"
    assert (await leaving_tab.receive_json_from(RECEIVE_TIMEOUT))["event"] == "session.ended"
    assert await expect_close(leaving_tab) == 4401
    assert (await staying_tab.receive_json_from(RECEIVE_TIMEOUT))["event"] == "security_event"  # user.logout
    assert await staying_tab.receive_nothing(timeout=0.3)


async def test_ws_session_verified_with_a_removed_device_is_closed_4403(
    alice: Any, enable_2fa: Any, open_sockets: Any
) -> None:
    old_device = await sync_to_async(enable_2fa)(alice)
    cookie = await sync_to_async(session_cookie)(alice, verified_device=old_device)
    await sync_to_async(old_device.delete)()
    await sync_to_async(enable_2fa)(alice)
    socket = await open_sockets(browser_headers(cookie))

    connected, _ = await socket.connect(RECEIVE_TIMEOUT)

    assert connected is True
    assert await expect_close(socket) == 4403
