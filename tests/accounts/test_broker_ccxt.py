"""CcxtBroker through ccxt itself against FakeVenue (a local HTTP server speaking Binance's spot
REST API with signature checks). No database: the adapter has no Django in it.

"How many orders" is always counted from FakeVenue's request log and book, not from answers.
The outcome table is RELIABILITY.md scenario 5: NotSent -> 0 POSTs; venue rejected -> exactly
1 POST and a permanent error; ambiguous -> the caller must ask fetch_order (the venue may hold
the order).
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from decimal import Decimal as D
from pathlib import Path

import pytest

from apps.accounts.brokers.base import (
    AmbiguousBrokerError,
    AuthenticationBrokerError,
    Balance,
    FillReport,
    InsufficientFundsError,
    InvalidOrderError,
    NotSentError,
    OrderNotFoundError,
    OrderRequest,
    OrderState,
    PermanentBrokerError,
    TemporaryBrokerError,
)
from apps.accounts.brokers.ccxt import CcxtBroker
from tests.fakes.fake_venue import ORDER_PATH, FakeVenue, FakeVenueClient, fake_venue_broker, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def venue():
    with FakeVenue() as v:
        yield v


@pytest.fixture
def broker(venue):
    b = fake_venue_broker(venue, timeout_ms=1000)
    yield b
    b.close()


def market_buy(coid: str, qty: str = "0.01", symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=coid, symbol=symbol, side="buy", type="market", quantity=D(qty))


def limit(coid: str, side: str, qty: str, price: str, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=coid, symbol=symbol, side=side, type="limit", quantity=D(qty), price=D(price))  # type: ignore[arg-type]


def assert_no_floats(obj: object) -> None:
    """Decimal at the boundary: no float anywhere in a state, fill or balance."""
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        assert not isinstance(value, float), f"{type(obj).__name__}.{f.name} is a float"
        if isinstance(value, tuple):
            for item in value:
                assert_no_floats(item)


# --- the happy paths ----------------------------------------------------------------------


def test_markets_load_and_rules_come_from_exchange_info(broker):
    rules = broker.market_rules("BTC/USDT")
    assert rules.symbol == "BTC/USDT" and rules.base == "BTC" and rules.quote == "USDT"
    assert rules.step_size == D("0.00001")
    assert rules.tick_size == D("0.01")
    assert rules.min_quantity == D("0.00001")
    assert rules.min_notional == D("5")
    # the exchange's own id works too
    assert broker.market_rules("ETHUSDT").step_size == D("0.0001")
    with pytest.raises(InvalidOrderError):
        broker.market_rules("DOGE/USDT")


def test_balances_are_decimals(venue, broker):
    venue.set_balance("BTC", "0.5")
    balances = {b.asset: b for b in broker.fetch_balances()}
    assert balances["USDT"] == Balance("USDT", D("100000"), D("0"))
    assert balances["BTC"].free == D("0.5")
    for b in balances.values():
        assert_no_floats(b)


def test_market_order_fills_at_once_with_its_fill(venue, broker):
    state = broker.submit(market_buy("t-mkt-1"))
    assert state.status == "filled"
    assert state.client_order_id == "t-mkt-1"
    assert state.filled_quantity == D("0.01")
    assert state.average_price == D("40000")
    assert len(state.fills) == 1
    fill = state.fills[0]
    assert fill.price == D("40000") and fill.quantity == D("0.01")
    assert fill.fee == D("0.00001") and fill.fee_currency == "BTC"
    assert_no_floats(state)
    # the venue saw one signed POST carrying our client id
    assert venue.post_count("t-mkt-1") == 1
    [order] = venue.orders_for("t-mkt-1")
    assert order.status == "FILLED" and str(state.exchange_order_id) == str(order.order_id)
    # the position (spot: the base asset balance)
    positions = {p.symbol: p.quantity for p in broker.fetch_positions()}
    assert positions == {"BTC": D("0.00999")}


def test_limit_order_rests_then_fills_when_the_price_crosses(venue, broker):
    state = broker.submit(limit("t-lim-1", "buy", "0.02", "39000"))
    assert state.status == "open" and state.price == D("39000") and not state.fills
    assert [o.client_order_id for o in broker.fetch_open_orders("BTC/USDT")] == ["t-lim-1"]
    assert [o.client_order_id for o in broker.fetch_open_orders()] == ["t-lim-1"]
    assert broker.fetch_order("t-lim-1", "BTC/USDT").status == "open"
    # quote locked while it rests
    usdt = next(b for b in broker.fetch_balances() if b.asset == "USDT")
    assert usdt.locked == D("780")

    venue.set_price("BTCUSDT", "38950")
    done = broker.fetch_order("t-lim-1", "BTC/USDT")
    assert done.status == "filled" and done.filled_quantity == D("0.02")
    assert [(f.price, f.quantity, f.is_maker) for f in done.fills] == [(D("39000"), D("0.02"), True)]
    assert broker.fetch_open_orders("BTC/USDT") == []
    fills = broker.fetch_fills("BTC/USDT")
    assert [f.trade_id for f in fills] == [done.fills[0].trade_id]
    assert all(isinstance(f, FillReport) for f in fills)


def test_limit_price_and_quantity_are_rounded_on_the_safe_side(venue, broker):
    state = broker.submit(limit("t-round", "buy", "0.012349", "39000.019"))
    assert state.price == D("39000.01")  # a buy never pays more than asked
    assert state.quantity == D("0.01234")  # never bigger than asked
    venue.set_balance("BTC", "1")
    sell = broker.submit(limit("t-round-s", "sell", "0.01", "45000.001"))
    assert sell.price == D("45000.01")  # a sell never receives less than asked


def test_market_buy_by_quote_quantity(venue, broker):
    request = OrderRequest(
        client_order_id="t-quote", symbol="BTC/USDT", side="buy", type="market", quantity=D(0), quote_quantity=D("100")
    )
    state = broker.submit(request)
    assert state.status == "filled"
    assert state.filled_quantity == D("0.0025")  # 100 / 40000 on the 0.00001 step
    [logged] = venue.requests_for(method="POST", path=ORDER_PATH)
    assert logged.params["quoteOrderQty"] == "100" and "quantity" not in logged.params


def test_stop_order_rests_until_triggered(venue, broker):
    venue.set_balance("BTC", "1")
    request = OrderRequest(
        client_order_id="t-stop",
        symbol="BTC/USDT",
        side="sell",
        type="stop",
        quantity=D("0.1"),
        stop_price=D("39000.001"),
    )
    state = broker.submit(request)
    assert state.status == "open" and state.type == "stop"
    assert state.stop_price == D("39000.01")  # a sell stop rounds up: it triggers no later than asked
    [logged] = venue.requests_for(method="POST", path=ORDER_PATH)
    assert logged.params["type"] == "STOP_LOSS"
    venue.set_price("BTCUSDT", "38990")
    done = broker.fetch_order("t-stop", "BTC/USDT")
    assert done.status == "filled" and done.fills[0].price == D("38990")


def test_cancel_by_client_order_id(venue, broker):
    broker.submit(limit("t-cancel", "buy", "0.01", "30000"))
    state = broker.cancel("t-cancel", "BTC/USDT")
    assert state.status == "cancelled" and state.client_order_id == "t-cancel"
    assert venue.orders_for("t-cancel")[0].status == "CANCELED"
    assert venue.requests_for(method="DELETE", path=ORDER_PATH)[0].params["origClientOrderId"] == "t-cancel"
    # funds released
    usdt = next(b for b in broker.fetch_balances() if b.asset == "USDT")
    assert usdt.locked == 0
    # cancelling again: the order is done, its final state comes back
    assert broker.cancel("t-cancel", "BTC/USDT").status == "cancelled"


def test_cancel_of_a_filled_order_returns_it_filled(broker):
    broker.submit(market_buy("t-filled"))
    state = broker.cancel("t-filled", "BTC/USDT")
    assert state.status == "filled" and state.fills


def test_unknown_client_id_is_not_found(broker):
    with pytest.raises(OrderNotFoundError):
        broker.fetch_order("never-sent", "BTC/USDT")
    with pytest.raises(OrderNotFoundError):
        broker.cancel("never-sent", "BTC/USDT")


def test_fill_immediately_fills_a_limit_on_arrival(venue, broker):
    venue.fill_immediately = True
    state = broker.submit(limit("t-imm", "buy", "0.01", "39000"))
    assert state.status == "filled" and state.fills[0].price == D("39000")


def test_partial_fill_reads_as_partially_filled(venue, broker):
    broker.submit(limit("t-part", "buy", "0.02", "39000"))
    venue.fill("t-part", "0.005")
    state = broker.fetch_order("t-part", "BTC/USDT")
    assert state.status == "partially_filled"
    assert state.filled_quantity == D("0.005") and sum(f.quantity for f in state.fills) == D("0.005")


# --- idempotency: Binance's client id rule ------------------------------------------------


def test_a_reused_client_id_is_refused_only_while_the_order_is_open(venue, broker):
    broker.submit(limit("t-dup", "buy", "0.01", "39000"))
    with pytest.raises(AmbiguousBrokerError) as caught:
        broker.submit(limit("t-dup", "buy", "0.01", "39000"))
    assert caught.value.code == "duplicate"  # the caller asks fetch_order; never "rejected"
    assert len(venue.orders_for("t-dup")) == 1
    # once the first is done, Binance accepts the same id again: our database is the first guard
    venue.set_price("BTCUSDT", "38000")
    broker.submit(limit("t-dup", "buy", "0.01", "37000"))
    assert len(venue.orders_for("t-dup")) == 2
    assert venue.post_count("t-dup") == 3


# --- scenario 5: outcome classification ---------------------------------------------------


def test_local_validation_sends_nothing(venue, broker):
    broker.market_rules("BTC/USDT")
    with pytest.raises(InvalidOrderError):
        broker.submit(limit("t-small", "buy", "0.000001", "39000"))  # rounds to zero
    with pytest.raises(InvalidOrderError):
        broker.submit(limit("t-notional", "buy", "0.0001", "39000"))  # 3.9 USDT < 5
    with pytest.raises(InvalidOrderError):
        broker.submit(market_buy("t-unknown", symbol="DOGE/USDT"))
    assert venue.requests_for(method="POST") == []


def test_insufficient_balance_is_one_post_and_permanent(venue, broker):
    with pytest.raises(InsufficientFundsError) as caught:
        broker.submit(market_buy("t-poor", qty="10"))
    assert isinstance(caught.value, PermanentBrokerError)
    assert "insufficient balance" in caught.value.message
    assert venue.post_count("t-poor") == 1 and venue.orders_for("t-poor") == []


def test_venue_filter_failure_is_one_post_and_permanent(venue, broker):
    broker.market_rules("BTC/USDT")  # the broker knows the old rules
    venue.add_symbol("BTCUSDT", "BTC", "USDT", price="40000", min_notional="1000")
    with pytest.raises(InvalidOrderError) as caught:
        broker.submit(market_buy("t-filter", qty="0.01"))  # 400 USDT < 1000
    assert "NOTIONAL" in caught.value.message
    assert venue.post_count("t-filter") == 1 and venue.orders_for("t-filter") == []


def test_venue_unknown_symbol_is_permanent(venue, broker):
    broker.market_rules("ETH/USDT")
    del venue.symbols["ETHUSDT"]
    with pytest.raises(InvalidOrderError):
        broker.submit(market_buy("t-gone", qty="0.01", symbol="ETH/USDT"))
    assert venue.post_count("t-gone") == 1


def test_rate_limited_is_not_sent_and_creates_nothing(venue, broker):
    broker.market_rules("BTC/USDT")
    venue.rate_limit(7)
    with pytest.raises(NotSentError) as caught:
        broker.submit(market_buy("t-429"))
    assert caught.value.retry_after == 7
    assert venue.orders_for("t-429") == []
    [logged] = venue.requests_for(method="POST", path=ORDER_PATH)
    assert logged.status == 429
    venue.rate_limit(0)
    assert broker.submit(market_buy("t-429")).status == "filled"
    assert len(venue.orders_for("t-429")) == 1


def test_connection_refused_is_not_sent(venue):
    broker = fake_venue_broker(venue, timeout_ms=1000)
    broker.market_rules("BTC/USDT")
    venue.stop()
    with pytest.raises(NotSentError) as caught:
        broker.submit(market_buy("t-refused"))
    assert caught.value.code == "unreachable"


def test_markets_unreachable_before_sending_is_not_sent():
    broker = CcxtBroker(
        "binance", {"apiKey": "k", "secret": "s"}, api_url=f"http://127.0.0.1:{free_port()}", timeout_ms=500
    )
    with pytest.raises(NotSentError):
        broker.submit(market_buy("t-nomarkets"))


@pytest.mark.parametrize(
    ("knob", "orders_created"),
    [
        ("accept_then_hang", 1),
        ("accept_then_reset", 1),
        ("fail_5xx_before_accept", 0),
        ("fail_5xx_after_accept", 1),
    ],
)
def test_ambiguous_outcomes(venue, knob, orders_created):
    broker = fake_venue_broker(venue, timeout_ms=500)
    broker.market_rules("BTC/USDT")
    venue.hang_seconds = 3
    setattr(venue, knob, 1)  # only the next POST
    with pytest.raises(AmbiguousBrokerError):
        broker.submit(market_buy(f"t-{knob}"))
    assert venue.post_count(f"t-{knob}") == 1
    assert len(venue.orders_for(f"t-{knob}")) == orders_created
    # the way out is a query by client id, never a second POST
    if orders_created:
        state = broker.fetch_order(f"t-{knob}", "BTC/USDT")
        assert state.status == "filled" and state.fills
    else:
        with pytest.raises(OrderNotFoundError):
            broker.fetch_order(f"t-{knob}", "BTC/USDT")
    assert venue.post_count(f"t-{knob}") == 1
    venue.release_hung()


def test_timeout_on_a_market_order_that_filled_resolves_by_query(venue):
    """Scenario 4 at the adapter: fill_immediately + reset; Binance would accept the same id
    again now that the order is filled, so only the query tells the truth."""
    broker = fake_venue_broker(venue, timeout_ms=500)
    venue.fill_immediately = True
    venue.accept_then_reset = True
    with pytest.raises(AmbiguousBrokerError):
        broker.submit(market_buy("t-s4"))
    state = broker.fetch_order("t-s4", "BTC/USDT")
    assert state.status == "filled" and len(state.fills) == 1
    assert venue.post_count("t-s4") == 1


def test_order_missing_for_a_while_then_visible(venue, broker):
    venue.not_found_for(0.6)
    broker.submit(market_buy("t-lost"))
    with pytest.raises(OrderNotFoundError):
        broker.fetch_order("t-lost", "BTC/USDT")
    deadline = time.monotonic() + 5
    while True:
        try:
            state = broker.fetch_order("t-lost", "BTC/USDT")
            break
        except OrderNotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert state.status == "filled" and state.fills
    assert venue.post_count("t-lost") == 1


# --- keys and permissions -----------------------------------------------------------------


def test_wrong_secret_is_an_authentication_error(venue):
    broker = CcxtBroker("binance", {"apiKey": venue.api_key, "secret": "not-the-secret"}, api_url=venue.url)
    with pytest.raises(AuthenticationBrokerError):
        broker.fetch_balances()
    with pytest.raises(AuthenticationBrokerError):
        broker.submit(market_buy("t-badsig"))
    assert venue.orders_for("t-badsig") == []
    report = broker.test_connection()
    assert report.ok is False and "Signature" in report.message


def test_revoked_key_is_an_authentication_error_even_after_success(venue, broker):
    broker.fetch_balances()  # ccxt now believes the key worked once
    venue.revoked_key = True
    with pytest.raises(AuthenticationBrokerError):
        broker.submit(market_buy("t-revoked"))
    with pytest.raises(AuthenticationBrokerError):
        broker.fetch_balances()


def test_permissions_read_withdraw_flag(venue, broker):
    permissions = broker.fetch_permissions()
    assert permissions.can_withdraw is False and permissions.can_trade is True
    venue.withdraw_enabled = True
    assert broker.fetch_permissions().can_withdraw is True
    assert [r.path for r in venue.requests if "apiRestrictions" in r.path]


def test_test_connection_reports_balances_and_permissions(broker):
    report = broker.test_connection()
    assert report.ok and report.permissions.can_trade
    assert any(b.asset == "USDT" for b in report.balances)


def test_positions_endpoint_error_raises_never_empty(venue, broker):
    venue.positions_error = True
    with pytest.raises(TemporaryBrokerError):
        broker.fetch_positions()


def test_capabilities_from_ccxt(broker):
    caps = broker.capabilities
    assert {"market", "limit", "stop", "stop_limit"} <= caps.order_types
    assert caps.quote_quantity_market_buy and caps.reports_withdraw_permission
    assert not caps.shorting


def test_other_venues_say_permissions_unknown():
    broker = CcxtBroker("kraken", {"apiKey": "k", "secret": "czM="})
    permissions = broker.fetch_permissions()
    assert permissions.can_withdraw is None and permissions.can_trade is None
    with pytest.raises(PermanentBrokerError):
        CcxtBroker("no-such-exchange", {})


def test_candles_through_the_adapter(broker):
    rows = broker.fetch_ohlcv("BTC/USDT", "1h", limit=3)
    assert len(rows) == 3
    assert all(isinstance(v, D) for row in rows for v in row[1:])


def test_states_carry_no_floats(venue, broker):
    broker.submit(limit("t-f1", "buy", "0.01", "39000"))
    broker.submit(market_buy("t-f2"))
    for state in [*broker.fetch_open_orders(), broker.fetch_order("t-f2", "BTC/USDT")]:
        assert isinstance(state, OrderState)
        assert_no_floats(state)


# --- the standalone process (fault tests keep it alive across worker kills) ---------------


def test_standalone_process_with_control_endpoint(tmp_path):
    ready = tmp_path / "ready.json"
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.fake_venue",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--state-file",
            str(state_file),
            "--price",
            "BTCUSDT=41000",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, "the venue process died"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        client = FakeVenueClient(info["url"])
        broker = fake_venue_broker(client, timeout_ms=500)
        assert broker.submit(market_buy("p-1")).average_price == D("41000")
        assert client.post_count("p-1") == 1
        client.set(accept_then_reset=1)
        with pytest.raises(AmbiguousBrokerError):
            broker.submit(market_buy("p-2"))
        assert client.post_count("p-2") == 1 and len(client.orders_for("p-2")) == 1
        client.rate_limit(3)
        with pytest.raises(NotSentError):
            broker.submit(market_buy("p-3"))
        client.rate_limit(0)
        assert [r["status"] for r in client.requests_for(method="POST", path=ORDER_PATH)] == [200, 200, 429]
        saved = json.loads(state_file.read_text())
        assert {o["clientOrderId"] for o in saved["orders"]} == {"p-1", "p-2"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
