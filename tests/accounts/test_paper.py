"""The paper venue as a Broker: submit (idempotent, validated, funded), cancel, the fetches, the
account services (fund, replace a stop). Matching against bars: test_paper_matching.py."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.brokers.base import (
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    PermanentBrokerError,
)
from apps.accounts.models import PaperOrder, TradingAccount
from apps.accounts.paper import PaperBroker, paper_account_fund, paper_replace_stop, paper_symbol
from apps.common.errors import ValidationFailed
from apps.marketdata import services as market_services
from apps.marketdata.storage import candles_write
from tests.accounts.paper_support import (
    HOUR,
    T0,
    account,
    balance,
    bar_frame,
    broker,
    close_bar,
    instrument,
    make_account,
    order,
    paper_order,
)

__all__ = ["account", "broker", "instrument"]


def test_submit_is_idempotent_on_client_order_id(broker: PaperBroker, account: TradingAccount) -> None:
    # given an accepted limit buy
    first = broker.submit(order("tp1.a.b.e", type="limit", price=90))
    # when the same id comes again, even with other terms
    again = broker.submit(order("tp1.a.b.e", type="limit", price=80, quantity="2"))
    # then it is the same order, reserved once
    assert again.client_order_id == first.client_order_id
    assert again.exchange_order_id == first.exchange_order_id
    assert again.price == Decimal(90)
    assert PaperOrder.objects.filter(account=account).count() == 1
    assert balance(account, "USDT") == (Decimal("10000") - Decimal("90.09"), Decimal("90.09"))


def test_submit_records_the_newest_closed_bar_and_finest_series(broker: PaperBroker, instrument: Any) -> None:
    candles_write(instrument=instrument, timeframe="4h", frame=bar_frame(T0, 100, 101, 99, 100))
    close_bar(instrument, 1, 100, 101, 99, 100)
    state = broker.submit(order("o1", type="limit", price=90))
    placed = PaperOrder.objects.get(client_order_id=state.client_order_id)
    assert placed.timeframe == "1h"
    assert placed.accepted_bar_ts == T0 + HOUR
    assert state.status == "open" and state.exchange_order_id == f"P{placed.pk}"
    four_hourly = broker.submit(order("o2", type="limit", price=90, timeframe="4h"))
    assert PaperOrder.objects.get(client_order_id=four_hourly.client_order_id).accepted_bar_ts == T0


def test_capabilities_and_permissions(alice: Any, instrument: Any) -> None:
    shorting = PaperBroker(int(make_account(alice, "A").pk))
    no_shorts = PaperBroker(int(make_account(alice, "B", allow_short=False).pk))
    caps = shorting.capabilities
    assert caps.order_types == frozenset({"market", "limit", "stop", "stop_limit"})
    assert caps.shorting and caps.fractional and caps.native_oco and caps.quote_quantity_market_buy
    assert not no_shorts.capabilities.shorting
    permissions = shorting.fetch_permissions()
    assert permissions.can_trade is True and permissions.can_withdraw is False
    report = shorting.test_connection()
    assert report.ok and [(b.asset, b.free) for b in report.balances] == [("USDT", Decimal("10000"))]


def test_a_non_paper_account_is_refused(alice: Any, db: Any) -> None:
    other = TradingAccount.objects.create(owner=alice, name="X", kind="ccxt", exchange_id="binance")
    with pytest.raises(PermanentBrokerError):
        PaperBroker(int(other.pk))


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"symbol": "NOPE/USDT"}, "unknown_symbol"),
        ({"type": "limit"}, "invalid_order"),  # no limit price
        ({"type": "stop"}, "invalid_order"),  # no stop price
        ({"type": "limit", "price": "90.005"}, "tick_size"),
        ({"quantity": "0.15"}, "lot_size"),
        ({"quantity": "0.1"}, "below_minimum"),  # 0.1 * 100 = 10 < min_notional 20
        ({"side": "sell", "quote_quantity": "50"}, "invalid_order"),
        ({"time_in_force": "FOK"}, "invalid_order"),
        ({"sizing": {"mode": "martingale", "equity": 100}}, "invalid_order"),
        ({"sizing": {"mode": "all_equity", "equity": 100, "leverage": 10}}, "invalid_order"),
        ({"attached": {"stop_loss": 1.5}}, "invalid_order"),
    ],
)
def test_orders_breaking_the_rules_are_refused(
    broker: PaperBroker, instrument: Any, account: TradingAccount, request_fields: dict[str, Any], code: str
) -> None:
    instrument.tick_size, instrument.lot_size, instrument.min_notional = Decimal("0.01"), Decimal("0.1"), Decimal(20)
    instrument.save()
    with pytest.raises(InvalidOrderError) as refused:
        PaperBroker(int(account.pk)).submit(order("bad", **{"quantity": "1", **request_fields}))
    assert refused.value.code == code
    assert not PaperOrder.objects.exists()
    assert balance(account, "USDT") == (Decimal("10000"), Decimal(0))


def test_insufficient_funds_counts_what_resting_orders_reserve(broker: PaperBroker, account: TradingAccount) -> None:
    broker.submit(order("a", type="limit", price=60, quantity="100"))  # reserves 6006
    with pytest.raises(InsufficientFundsError):
        broker.submit(order("b", type="limit", price=60, quantity="100"))
    with pytest.raises(InsufficientFundsError):
        broker.submit(order("c", quantity="50"))  # a market buy at ~100 (the last close)
    assert list(PaperOrder.objects.values_list("client_order_id", flat=True)) == ["a"]
    broker.cancel("a", "BTC/USDT")
    broker.submit(order("b", type="limit", price=60, quantity="100"))


def test_sells_without_shorting_need_the_base_asset(alice: Any, instrument: Any) -> None:
    account = make_account(alice, "Long only", allow_short=False)
    paper_account_fund(account=account, balances={"BTC": Decimal("1")})
    broker = PaperBroker(int(account.pk))
    with pytest.raises(InsufficientFundsError):
        broker.submit(order("s1", side="sell", quantity="2"))
    broker.submit(order("s2", side="sell", quantity="1"))
    assert balance(account, "BTC") == (Decimal(0), Decimal(1))
    with_shorts = PaperBroker(int(make_account(alice, "Shorts").pk))
    assert with_shorts.submit(order("s3", side="sell", quantity="5")).status == "open"


def test_cancel_releases_the_reservation_and_is_idempotent(broker: PaperBroker, account: TradingAccount) -> None:
    broker.submit(order("c1", type="limit", price=90, quantity="10"))
    assert balance(account, "USDT")[1] == Decimal("900.9")
    state = broker.cancel("c1", "BTC/USDT")
    assert state.status == "cancelled"
    assert balance(account, "USDT") == (Decimal("10000"), Decimal(0))
    assert broker.cancel("c1", "BTC/USDT").status == "cancelled"
    assert balance(account, "USDT") == (Decimal("10000"), Decimal(0))
    with pytest.raises(OrderNotFoundError):
        broker.cancel("nope", "BTC/USDT")


def test_cancel_of_a_filled_order_returns_it_filled(broker: PaperBroker, instrument: Any) -> None:
    broker.submit(order("f1"))
    close_bar(instrument, 1, 100, 101, 99, 100)
    assert broker.cancel("f1", "BTC/USDT").status == "filled"


def test_fetches_report_the_book(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    broker.submit(order("m1", quantity="2"))
    broker.submit(order("l1", type="limit", price=50))
    close_bar(instrument, 1, 100, 102, 98, 101)
    filled = broker.fetch_order("m1", "BTC/USDT")
    assert filled.status == "filled" and filled.filled_quantity == Decimal(2)
    assert filled.average_price == Decimal(100)
    (fill,) = filled.fills
    assert (fill.quantity, fill.price, fill.fee, fill.fee_currency) == (
        Decimal(2),
        Decimal(100),
        Decimal("0.2"),
        "USDT",
    )
    assert fill.at == T0 + HOUR and fill.trade_id
    assert [o.client_order_id for o in broker.fetch_open_orders()] == ["l1"]
    assert [o.client_order_id for o in broker.fetch_open_orders("BTC/USDT")] == ["l1"]
    assert [f.trade_id for f in broker.fetch_fills("BTC/USDT")] == [fill.trade_id]
    assert broker.fetch_fills("BTC/USDT", since=T0 + 2 * HOUR) == []
    positions = broker.fetch_positions()
    assert [(p.symbol, p.quantity) for p in positions] == [("BTC/USDT", Decimal(2))]
    balances = {b.asset: b for b in broker.fetch_balances()}
    assert balances["BTC"].total == Decimal(2)
    assert balances["USDT"].total == Decimal("10000") - Decimal("200.2")
    with pytest.raises(OrderNotFoundError):
        broker.fetch_order("nope", "BTC/USDT")
    candles = broker.fetch_ohlcv("BTC/USDT", "1h")
    assert [c[0] for c in candles] == [T0, T0 + HOUR]
    assert candles[1][1:] == (Decimal(100), Decimal(102), Decimal(98), Decimal(101), Decimal(1000))


def test_a_short_is_a_negative_base_position(broker: PaperBroker, instrument: Any) -> None:
    broker.submit(order("s", side="sell", quantity="3"))
    close_bar(instrument, 1, 100, 101, 99, 100)
    assert [(p.symbol, p.quantity) for p in broker.fetch_positions()] == [("BTC/USDT", Decimal(-3))]


def test_symbol_resolution_prefers_the_named_venue(broker: PaperBroker, instrument: Any) -> None:
    other = market_services.instrument_get_or_create(venue="elsewhere", symbol="BTC/USDT")
    candles_write(instrument=other, timeframe="1h", frame=bar_frame(T0 + 5 * HOUR, 1, 1, 1, 1))
    assert broker.instrument("BTC/USDT") == other  # the newest stored bar wins without a venue
    assert broker.instrument(paper_symbol(instrument)) == instrument
    assert broker.instrument("BTC/USDT@elsewhere") == other
    state = broker.submit(order("v1", type="limit", price=90, symbol="BTC/USDT@papertest"))
    assert state.symbol == "BTC/USDT"
    assert PaperOrder.objects.get(client_order_id="v1").instrument == instrument


def test_account_connection_venue_names_the_instrument(alice: Any, instrument: Any) -> None:
    other = market_services.instrument_get_or_create(venue="elsewhere", symbol="BTC/USDT")
    candles_write(instrument=other, timeframe="1h", frame=bar_frame(T0 + 5 * HOUR, 1, 1, 1, 1))
    broker = PaperBroker(int(make_account(alice, "V", venue="papertest").pk))
    assert broker.instrument("BTC/USDT") == instrument


def test_fund_sets_free_balances_and_validates(account: TradingAccount, alice: Any) -> None:
    paper_account_fund(account=account, balances={"usdt": Decimal("500"), "BTC": Decimal("0.5")})
    assert balance(account, "USDT") == (Decimal(500), Decimal(0))
    assert balance(account, "BTC") == (Decimal("0.5"), Decimal(0))
    with pytest.raises(ValidationFailed):
        paper_account_fund(account=account, balances={"USDT": Decimal("-1")})
    live = TradingAccount.objects.create(owner=alice, name="Live", kind="ccxt")
    with pytest.raises(ValidationFailed):
        paper_account_fund(account=live, balances={"USDT": Decimal("1")})


def test_replace_stop_moves_a_resting_stop_in_place(broker: PaperBroker, account: TradingAccount) -> None:
    broker.submit(order("st", side="sell", type="stop", stop_price=90))
    state = paper_replace_stop(account_id=int(account.pk), client_order_id="st", stop_price=Decimal(95))
    assert state.stop_price == Decimal(95) and state.client_order_id == "st"
    assert paper_order(account, "st").stop_price == Decimal(95)
    broker.submit(order("lim", type="limit", price=90))
    with pytest.raises(InvalidOrderError):
        paper_replace_stop(account_id=int(account.pk), client_order_id="lim", stop_price=Decimal(95))
    with pytest.raises(OrderNotFoundError):
        paper_replace_stop(account_id=int(account.pk), client_order_id="zzz", stop_price=Decimal(95))


def test_invalid_cost_settings_refuse_orders(alice: Any, instrument: Any) -> None:
    bad = PaperBroker(int(make_account(alice, "Bad", costs={"fee": 5}).pk))
    with pytest.raises(PermanentBrokerError, match="fee"):
        bad.submit(order("x"))
