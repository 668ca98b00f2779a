"""Reading a webhook body: no database. Timestamps in the forms TradingView and programs send,
symbols as TradingView writes them, the signature, and what an attempt keeps."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.strategies.webhooks import payload as wire
from apps.strategies.webhooks.payload import WebhookRefusal
from apps.trades.client_ids import PATTERN, webhook_order_id

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        1714564800,
        "1714564800",
        1714564800000,
        Decimal("1714564800.5"),
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
    ],
)
def test_timestamps_in_seconds_milliseconds_and_iso(value: object) -> None:
    assert abs((wire.parse_timestamp(value) - NOW).total_seconds()) < 1


@pytest.mark.parametrize("value", [None, True, "", "yesterday", [1]])
def test_bad_timestamps(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        wire.parse_timestamp(value)


def test_validate_reads_the_fields() -> None:
    data = {
        "action": "BUY",
        "symbol": "BINANCE:BTCUSDT",
        "nonce": 7,
        "timestamp": "2024-05-01T12:01:00Z",
        "size": "0.5",
    }
    parsed = wire.validate(data, now=NOW, tolerance_seconds=300)
    assert (parsed.action, parsed.nonce, parsed.size, parsed.price) == ("buy", "7", Decimal("0.5"), None)


def test_validate_refuses_outside_the_window() -> None:
    data = {"action": "buy", "symbol": "X", "nonce": "n", "timestamp": (NOW - timedelta(seconds=301)).isoformat()}
    with pytest.raises(WebhookRefusal) as caught:
        wire.validate(data, now=NOW, tolerance_seconds=300)
    assert caught.value.code == "stale_timestamp" and caught.value.status_code == 422


@pytest.mark.parametrize("body", [b"", b"{", b"null", b'"buy"', b"[]", b'{"size": NaN}', b"\xff"])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(WebhookRefusal) as caught:
        wire.parse_body(body, max_bytes=1000)
    assert caught.value.code == "malformed"


def test_a_body_too_large_is_a_413() -> None:
    with pytest.raises(WebhookRefusal) as caught:
        wire.parse_body(b"{}" + b" " * 2000, max_bytes=1000)
    assert caught.value.status_code == 413


def test_the_signature_is_the_hex_hmac_of_the_raw_body() -> None:
    body = b'{"action":"buy"}'
    good = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    wire.check_signature(body, good, "s3cret")
    wire.check_signature(body, "sha256=" + good.upper(), "s3cret")
    with pytest.raises(WebhookRefusal):
        wire.check_signature(body + b" ", good, "s3cret")
    with pytest.raises(WebhookRefusal):
        wire.check_signature(body, "é", "s3cret")


def test_the_recorded_payload_keeps_no_secret() -> None:
    kept = wire.recorded({"secret": "s3cret", "action": "buy", "nonce": "n" * 500, "note": {"secret": "x"}, "size": 1})
    assert kept == {"action": "buy", "nonce": "n" * 100, "size": "1", "other_fields": ["note"]}


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTCUSDT", "binance:btcusdt", "btc-usdt", "BINANCE:BTCUSDT.P"])
def test_symbols_compare_as_tradingview_writes_them(symbol: str) -> None:
    assert wire.symbol_key(symbol) == "BTCUSDT"


def test_webhook_order_ids_are_deterministic_and_valid() -> None:
    a = webhook_order_id(deployment_id=36**6, nonce="BTCUSDT-2024-05-01T12:00:00Z-" + "é" * 50, leg="entry")
    assert a == webhook_order_id(deployment_id=36**6, nonce="BTCUSDT-2024-05-01T12:00:00Z-" + "é" * 50, leg="entry")
    assert PATTERN.match(a) and a.startswith("tpw")
    assert a != webhook_order_id(deployment_id=36**6, nonce="other", leg="entry")
    assert PATTERN.match(webhook_order_id(deployment_id=2**62, nonce="n", leg="exit"))
