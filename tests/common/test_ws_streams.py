"""Public streams over /ws/: subscribing to a market series, refusals, and delivery only to
subscribers (the market-data `candles` stream is the one registered today)."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.common.broadcast import group_send
from apps.marketdata.models import Instrument
from apps.marketdata.streams import market_group
from apps.users.consumers import MAX_SUBSCRIPTIONS
from apps.users.models import ApiToken
from tests.common.live_db import transactional_db
from tests.common.test_websocket import RECEIVE_TIMEOUT

pytestmark = transactional_db()


async def token_socket(open_sockets: Any, user: Any) -> Any:
    _, plaintext = await sync_to_async(ApiToken.objects.create)(user=user, expiry=None, name="t")
    socket = await open_sockets([(b"authorization", f"Token {plaintext}".encode())])
    assert (await socket.connect(RECEIVE_TIMEOUT))[0] is True
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "hello"
    return socket


@pytest.fixture
def btc(db: Any) -> Instrument:
    return Instrument.objects.create(venue="binance", symbol="BTC/USDT")


async def test_ws_subscribed_client_receives_candles_and_others_do_not(
    alice: Any, bob: Any, btc: Instrument, open_sockets: Any
) -> None:
    # given: alice subscribes to BTC 1m, bob is connected but not subscribed
    alice_socket = await token_socket(open_sockets, alice)
    bob_socket = await token_socket(open_sockets, bob)
    await alice_socket.send_json_to({"type": "subscribe", "stream": "candles", "instrument": btc.pk, "timeframe": "1m"})
    assert await alice_socket.receive_json_from(RECEIVE_TIMEOUT) == {
        "event": "subscribed",
        "data": {"stream": "candles", "instrument": btc.pk, "timeframe": "1m"},
    }
    # when: a bar closes on that series, and one on another timeframe
    bar = {"instrument": btc.pk, "timeframe": "1m", "ts": "2026-01-01T00:00:00Z", "close": 1.5}
    await sync_to_async(group_send)(market_group(btc.pk, "1m"), "candle", bar)
    await sync_to_async(group_send)(market_group(btc.pk, "5m"), "candle", {**bar, "timeframe": "5m"})
    # then
    assert await alice_socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "candle", "data": bar}
    assert await alice_socket.receive_nothing(timeout=0.3)
    assert await bob_socket.receive_nothing(timeout=0.3)


async def test_ws_unsubscribe_stops_delivery(alice: Any, btc: Instrument, open_sockets: Any) -> None:
    socket = await token_socket(open_sockets, alice)
    message = {"stream": "candles", "instrument": btc.pk, "timeframe": "1h"}
    await socket.send_json_to({"type": "subscribe", **message})
    await socket.receive_json_from(RECEIVE_TIMEOUT)

    await socket.send_json_to({"type": "unsubscribe", **message})
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "unsubscribed"
    await sync_to_async(group_send)(market_group(btc.pk, "1h"), "candle", {"close": 1})

    assert await socket.receive_nothing(timeout=0.3)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"stream": "orders"}, "unknown_stream"),
        ({"stream": "candles", "instrument": "BTC", "timeframe": "1m"}, "invalid"),
        ({"stream": "candles", "instrument": 1, "timeframe": "7m"}, "invalid"),
        ({"stream": "candles", "instrument": 999999, "timeframe": "1m"}, "not_found"),
    ],
)
async def test_ws_bad_subscription_is_refused_with_a_reason(
    alice: Any, btc: Instrument, open_sockets: Any, message: dict[str, Any], code: str
) -> None:
    socket = await token_socket(open_sockets, alice)

    await socket.send_json_to({"type": "subscribe", **message})

    reply = await socket.receive_json_from(RECEIVE_TIMEOUT)
    assert reply["event"] == "error"
    assert reply["data"]["code"] == code
    assert reply["data"]["message"]


async def test_ws_subscriptions_are_capped_per_connection(alice: Any, open_sockets: Any) -> None:
    instruments = await sync_to_async(
        lambda: [Instrument.objects.create(venue="demo", symbol=f"X{i}/USD") for i in range(MAX_SUBSCRIPTIONS + 1)]
    )()
    socket = await token_socket(open_sockets, alice)
    for instrument in instruments[:MAX_SUBSCRIPTIONS]:
        await socket.send_json_to(
            {"type": "subscribe", "stream": "candles", "instrument": instrument.pk, "timeframe": "1m"}
        )
        assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["event"] == "subscribed"

    extra = instruments[-1]
    await socket.send_json_to({"type": "subscribe", "stream": "candles", "instrument": extra.pk, "timeframe": "1m"})

    reply = await socket.receive_json_from(RECEIVE_TIMEOUT)
    assert reply == {"event": "error", "data": {"code": "too_many_subscriptions", "message": reply["data"]["message"]}}


@pytest.mark.parametrize("instrument", [10**30, -1, 0, 1e308])
async def test_ws_subscription_with_an_absurd_instrument_is_refused(
    alice: Any, open_sockets: Any, instrument: Any
) -> None:
    socket = await token_socket(open_sockets, alice)

    await socket.send_json_to({"type": "subscribe", "stream": "candles", "instrument": instrument, "timeframe": "1m"})

    reply = await socket.receive_json_from(RECEIVE_TIMEOUT)
    assert reply["event"] == "error"
    assert reply["data"]["code"] in {"invalid", "not_found"}
    # and the connection still works
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(RECEIVE_TIMEOUT) == {"event": "pong", "data": {}}
