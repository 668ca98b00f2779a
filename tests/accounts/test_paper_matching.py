"""The paper venue's matching (apps.accounts.paper_matching): each order type against bars, the
gap and touch cases, stop-before-target, OCO, brackets in their fill bar, sizing at the fill
with the engine's own function, balances, and the bulk pass. Expected prices and sizes come
from the backtest engine's functions (costs.fill_price, fee_for, sizing.entry_size_raw): the
venue must charge exactly what a backtest charges."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import PaperFill, PaperOrder, TradingAccount
from apps.accounts.paper import PaperBroker, paper_account_fund, paper_bar_closed
from apps.accounts.paper_matching import paper_costs, price_decimal, quantity_decimal
from apps.accounts.signals import paper_orders_changed
from apps.backtests.engine.costs import fee_for, fill_price, slippage_code, tick_nearest_raw
from apps.backtests.engine.sizing import SIZE_FIXED_FRACTION, SIZE_RISK_PER_TRADE, entry_size_raw
from tests.accounts.paper_support import (
    HOUR,
    T0,
    account,
    balance,
    broker,
    close_bar,
    instrument,
    make_account,
    order,
    paper_order,
)

__all__ = ["account", "broker", "instrument"]

COSTS = {"fee": 0.002, "maker_fee": 0.0005, "slippage": "fixed_bps", "slippage_bps": 10}


@pytest.fixture
def slippy(alice: Any, instrument: Any) -> TradingAccount:
    """An account with a taker fee of 0.2 %, a maker fee of 0.05 % and 10 bps of slippage."""
    return make_account(alice, "Slippy", costs=COSTS)


def costs() -> Any:
    return paper_costs({"costs": COSTS})


def slipped(side: int, ref: float, size: float) -> Decimal:
    return price_decimal(fill_price(side, ref, size, 1000.0, 0.0, costs()))


def fill_of(account: TradingAccount, cid: str) -> PaperFill:
    return PaperFill.objects.get(order__account=account, order__client_order_id=cid)


def status(account: TradingAccount, cid: str) -> str:
    return paper_order(account, cid).status


# --- market -------------------------------------------------------------------------------------


def test_market_order_fills_at_the_next_open_slipped_with_the_taker_fee(
    slippy: TradingAccount, instrument: Any
) -> None:
    PaperBroker(int(slippy.pk)).submit(order("m", quantity="2"))
    # the bar it was accepted at does not fill it
    same_bar = {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}
    assert paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=T0, bar=same_bar) == {}
    changes = close_bar(instrument, 1, 100, 103, 97, 102)
    assert changes == {slippy.pk: ["m"]}
    fill = fill_of(slippy, "m")
    price = fill_price(1, 100.0, 2.0, 1000.0, 6.0, costs())
    assert fill.price == price_decimal(price) == Decimal("100.1")
    assert fill.fee == price_decimal(fee_for(2 * price, False, costs())) and not fill.is_maker
    assert fill.filled_at == T0 + HOUR
    assert balance(slippy, "BTC") == (Decimal(2), Decimal(0))
    assert balance(slippy, "USDT") == (Decimal(10000) - Decimal("200.2") - fill.fee, Decimal(0))


def test_market_buy_beyond_its_reservation_expires(
    broker: PaperBroker, account: TradingAccount, instrument: Any
) -> None:
    broker.submit(order("m", quantity="99"))  # reserves 99 * 100 * 1.001 of 10,000
    paper_account_fund(account=account, balances={"USDT": Decimal(0)})  # nothing else free
    close_bar(instrument, 1, 110, 111, 109, 110)  # a gap up: 99 * 110 is more than reserved
    placed = paper_order(account, "m")
    assert placed.status == "expired" and "insufficient USDT" in placed.reason
    assert balance(account, "USDT") == (Decimal("9909.9"), Decimal(0))  # the reservation came back


def test_quote_quantity_market_buy_spends_that_much_fees_included(slippy: TradingAccount, instrument: Any) -> None:
    PaperBroker(int(slippy.pk)).submit(order("q", quantity="0", quote_quantity="1000"))
    close_bar(instrument, 1, 100, 101, 99, 100)
    units, price = entry_size_raw(
        1, 100.0, 1000.0, False, 1000.0, 2.0, 0, 0.002, 0.0, 1.0, 1000.0, 0.01, float("nan"), 1.0,
        slippage_code("fixed_bps"), 10.0, 0.1, 0.0, 0.0, 0.0,
    )  # fmt: skip
    fill = fill_of(slippy, "q")
    assert fill.quantity == quantity_decimal(units) and fill.price == price_decimal(price)
    assert balance(slippy, "USDT")[0] == pytest.approx(Decimal(9000), abs=Decimal("0.00001"))


# --- limit --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100, 101, 94, 96), Decimal(95)),  # touched: at the limit
        ((93, 97, 92, 96), Decimal(93)),  # opened below the limit: at the open
        ((100, 101, 96, 97), None),  # not touched: rests
    ],
)
def test_buy_limit(slippy: TradingAccount, instrument: Any, bar: tuple[float, ...], expected: Decimal | None) -> None:
    PaperBroker(int(slippy.pk)).submit(order("l", type="limit", price=95))
    close_bar(instrument, 1, *bar)
    if expected is None:
        assert status(slippy, "l") == "open"
        return
    fill = fill_of(slippy, "l")
    assert (fill.price, fill.is_maker) == (expected, True)
    assert fill.fee == price_decimal(fee_for(float(expected), True, costs()))  # maker fee, no slippage


def test_sell_limit_touched_fills_at_the_limit(slippy: TradingAccount, instrument: Any) -> None:
    PaperBroker(int(slippy.pk)).submit(order("l", side="sell", type="limit", price=105))
    close_bar(instrument, 1, 100, 106, 99, 101)
    assert fill_of(slippy, "l").price == Decimal(105)
    assert balance(slippy, "BTC")[0] == Decimal(-1)


def test_good_for_one_bar_limit_expires_unfilled(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    broker.submit(order("g", type="limit", price=90, time_in_force="GTB"))
    close_bar(instrument, 1, 100, 101, 95, 100)
    placed = paper_order(account, "g")
    assert placed.status == "expired" and "one bar" in placed.reason
    assert balance(account, "USDT") == (Decimal(10000), Decimal(0))


# --- stop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "stop", "bar", "reference"),
    [
        ("sell", 95, (94, 96, 90, 92), 94.0),  # gapped through: at the open
        ("sell", 95, (100, 101, 94, 96), 95.0),  # touched: at the stop
        ("buy", 105, (106, 110, 105.5, 108), 106.0),
        ("buy", 105, (100, 106, 99, 104), 105.0),
        ("sell", 95, (100, 101, 96, 97), None),
    ],
)
def test_stop(
    slippy: TradingAccount, instrument: Any, side: str, stop: float, bar: tuple[float, ...], reference: float | None
) -> None:
    PaperBroker(int(slippy.pk)).submit(order("s", side=side, type="stop", stop_price=stop))
    close_bar(instrument, 1, *bar)
    if reference is None:
        assert status(slippy, "s") == "open"
        return
    fill = fill_of(slippy, "s")
    sign = 1 if side == "buy" else -1
    assert fill.price == price_decimal(fill_price(sign, reference, 1.0, 1000.0, bar[1] - bar[2], costs()))
    assert not fill.is_maker
    assert fill.fee == price_decimal(fee_for(float(fill.price), False, costs()))


# --- stop-limit ---------------------------------------------------------------------------------


def test_stop_limit_fills_at_the_trigger_when_its_limit_allows(slippy: TradingAccount, instrument: Any) -> None:
    PaperBroker(int(slippy.pk)).submit(order("sl", type="stop_limit", stop_price=105, price=106))
    close_bar(instrument, 1, 100, 107, 99, 106)
    fill = fill_of(slippy, "sl")
    assert (fill.price, fill.is_maker) == (Decimal(105), True)


def test_stop_limit_triggers_then_rests_as_a_limit(slippy: TradingAccount, instrument: Any) -> None:
    PaperBroker(int(slippy.pk)).submit(order("sl", type="stop_limit", stop_price=105, price=104))
    changes = close_bar(instrument, 1, 100, 107, 103, 106)  # triggered at 105, above its limit
    placed = paper_order(slippy, "sl")
    assert changes == {slippy.pk: ["sl"]}
    assert placed.status == "open" and placed.is_triggered
    close_bar(instrument, 2, 106, 108, 105, 107)  # not back to 104
    assert status(slippy, "sl") == "open"
    close_bar(instrument, 3, 103.5, 104, 103, 103.8)  # opens below the limit
    assert fill_of(slippy, "sl").price == Decimal("103.5")


# --- OCO and brackets ---------------------------------------------------------------------------


def _long_with_bracket(account: TradingAccount, instrument: Any, **attached: Any) -> None:
    PaperBroker(int(account.pk)).submit(order("e", attached={"stop_client_order_id": "e.stop", **attached}))
    close_bar(instrument, 1, 100, 100.5, 99.5, 100)  # entry at 100, no exit touched


def test_stop_counts_first_when_both_legs_are_touched(account: TradingAccount, instrument: Any) -> None:
    _long_with_bracket(account, instrument, stop_loss=0.05, take_profit=0.05)
    stop, target = paper_order(account, "e.stop"), paper_order(account, "e.t")
    assert (stop.type, stop.side, stop.stop_price, stop.quantity, stop.reduce_only) == (
        "stop", "sell", Decimal(95), Decimal(1), True,
    )  # fmt: skip
    assert (target.type, target.price, target.parent_id) == ("limit", Decimal(105), paper_order(account, "e").pk)
    changes = close_bar(instrument, 2, 100, 106, 94, 100)
    assert set(changes[account.pk]) == {"e.stop", "e.t"}
    assert fill_of(account, "e.stop").price == Decimal(95)
    target = paper_order(account, "e.t")
    assert target.status == "cancelled" and "OCO" in target.reason
    assert balance(account, "BTC")[0] == Decimal(0)


def test_target_gap_at_the_open_fills_at_the_open(account: TradingAccount, instrument: Any) -> None:
    _long_with_bracket(account, instrument, stop_loss=0.05, take_profit=0.05)
    close_bar(instrument, 2, 107, 108, 94, 100)
    fill = fill_of(account, "e.t")
    assert (fill.price, fill.is_maker) == (Decimal(107), True)
    assert status(account, "e.stop") == "cancelled"


def test_stop_gap_at_the_open_fills_at_the_open(slippy: TradingAccount, instrument: Any) -> None:
    _long_with_bracket(slippy, instrument, stop_price=95, target_price=110)
    close_bar(instrument, 2, 93, 111, 92, 100)
    assert fill_of(slippy, "e.stop").price == slipped(-1, 93.0, 1.0)
    assert status(slippy, "e.t") == "cancelled"


def test_market_entry_bracket_is_checked_in_its_fill_bar(slippy: TradingAccount, instrument: Any) -> None:
    PaperBroker(int(slippy.pk)).submit(order("e", attached={"stop_loss": 0.02, "take_profit": 0.5}))
    changes = close_bar(instrument, 1, 100, 101, 97, 98)
    entry = fill_of(slippy, "e")
    stop_level = tick_nearest_raw(float(entry.price) * 0.98, 0.0)
    assert changes == {slippy.pk: ["e", "e.s", "e.t"]}
    assert fill_of(slippy, "e.s").price == slipped(-1, stop_level, 1.0)
    assert status(slippy, "e.t") == "cancelled"


def test_limit_entry_bracket_checks_only_its_stop_in_the_fill_bar(account: TradingAccount, instrument: Any) -> None:
    broker = PaperBroker(int(account.pk))
    broker.submit(order("a", type="limit", price=99, attached={"stop_loss": 0.01, "take_profit": 0.01}))
    close_bar(instrument, 1, 100, 101, 98.5, 100)  # fills at 99; the high passes the target 99.99
    assert fill_of(account, "a").price == Decimal(99)
    assert status(account, "a.t") == "open" and status(account, "a.s") == "open"
    close_bar(instrument, 2, 99.5, 100.5, 99.2, 100)  # the next bar: target checked
    assert fill_of(account, "a.t").price == Decimal("99.99")
    # and a limit entry whose stop is hit in its own bar
    broker.submit(order("b", type="limit", price=99, attached={"stop_loss": 0.01, "take_profit": 0.01}))
    close_bar(instrument, 3, 100, 101, 97, 98)
    assert fill_of(account, "b.s").price == Decimal("98.01")
    assert status(account, "b.t") == "cancelled"


def test_cancelling_one_leg_cancels_its_group(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    _long_with_bracket(account, instrument, stop_loss=0.05, take_profit=0.05)
    assert broker.cancel("e.stop", "BTC/USDT").status == "cancelled"
    assert status(account, "e.t") == "cancelled"


def test_an_exit_that_flattens_cancels_the_bracket(
    broker: PaperBroker, account: TradingAccount, instrument: Any
) -> None:
    _long_with_bracket(account, instrument, stop_loss=0.05, take_profit=0.05)
    broker.submit(order("x", side="sell", quantity="1", reduce_only=True))
    close_bar(instrument, 2, 100, 106, 94, 100)
    assert fill_of(account, "x").price == Decimal(100)
    assert status(account, "e.stop") == "cancelled" and paper_order(account, "e.stop").reason == "position closed"
    assert status(account, "e.t") == "cancelled"


def test_reduce_only_without_a_position_expires(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    broker.submit(order("x", side="sell", quantity="1", reduce_only=True))
    close_bar(instrument, 1, 100, 101, 99, 100)
    placed = paper_order(account, "x")
    assert placed.status == "expired" and "no position" in placed.reason


# --- sizing at the fill -------------------------------------------------------------------------


def test_risk_sizing_at_the_fill_is_the_engines(slippy: TradingAccount, instrument: Any) -> None:
    instrument.lot_size = Decimal("0.001")
    instrument.save()
    sizing = {"mode": "risk_per_trade", "equity": 10_000.0, "risk": 0.01}
    PaperBroker(int(slippy.pk)).submit(order("r", quantity="0", sizing=sizing, attached={"stop_loss": 0.03}))
    close_bar(instrument, 1, 101, 101.5, 100, 101)
    units, price = entry_size_raw(
        1, 101.0, 10_000.0, False, 1000.0, 1.5, SIZE_RISK_PER_TRADE, 0.002, 0.0, 1.0, 1000.0, 0.01, 0.03 * 101.0,
        1.0, slippage_code("fixed_bps"), 10.0, 0.1, 0.001, 0.0, 0.0,
    )  # fmt: skip
    fill = fill_of(slippy, "r")
    assert fill.quantity == quantity_decimal(units) and fill.price == price_decimal(price)
    assert paper_order(slippy, "r").quantity == fill.quantity
    assert paper_order(slippy, "r.s").quantity == fill.quantity
    assert balance(slippy, "USDT")[1] == Decimal(0)  # the reservation of the sized buy is released


def test_fraction_sizing_limit_entry_uses_the_maker_rate(slippy: TradingAccount, instrument: Any) -> None:
    sizing = {"mode": SIZE_FIXED_FRACTION, "equity": 5000.0, "fraction": 0.5, "fee": 0.5}  # cost keys are ignored
    PaperBroker(int(slippy.pk)).submit(order("f", type="limit", price=99, quantity="0", sizing=sizing))
    close_bar(instrument, 1, 100, 101, 98, 100)
    units, price = entry_size_raw(
        1, 99.0, 5000.0, True, 1000.0, 3.0, SIZE_FIXED_FRACTION, 0.0005, 0.0, 0.5, 1000.0, 0.01, float("nan"), 0.5,
        slippage_code("fixed_bps"), 10.0, 0.1, 0.0, 0.0, 0.0,
    )  # fmt: skip
    assert fill_of(slippy, "f").quantity == quantity_decimal(units)
    assert price == 99.0


def test_an_entry_that_cannot_be_sized_expires(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    sizing = {"mode": "fixed_amount", "equity": 1000.0, "amount": 50.0, "min_notional": 100.0}
    broker.submit(order("z", quantity="0", sizing=sizing))
    close_bar(instrument, 1, 100, 101, 99, 100)
    placed = paper_order(account, "z")
    assert (placed.status, placed.reason) == ("expired", "could not be sized")
    assert balance(account, "USDT") == (Decimal(10000), Decimal(0))


def test_a_reversal_sizes_from_the_cash_after_the_exit(slippy: TradingAccount, instrument: Any) -> None:
    broker = PaperBroker(int(slippy.pk))
    broker.submit(order("e", quantity="10"))
    close_bar(instrument, 1, 100, 101, 99, 100)
    cash = float(balance(slippy, "USDT")[0])
    equity = cash + 10 * 100.0  # marked at the signal bar's close
    broker.submit(order("x", side="sell", quantity="10", reduce_only=True))
    sizing = {"mode": "all_equity", "equity": equity, "mark_price": 100.0, "exit_client_order_id": "x"}
    broker.submit(order("s", side="sell", quantity="0", sizing=sizing))
    close_bar(instrument, 2, 104, 105, 103, 104)
    exit_fill = fill_of(slippy, "x")
    cash_after = cash + 10 * float(exit_fill.price) - float(exit_fill.fee)
    units, price = entry_size_raw(
        -1, 104.0, cash_after, False, 1000.0, 2.0, 0, 0.002, 0.0, 1.0, 1000.0, 0.01, float("nan"), 1.0,
        slippage_code("fixed_bps"), 10.0, 0.1, 0.0, 0.0, 0.0,
    )  # fmt: skip
    short = fill_of(slippy, "s")
    assert float(short.quantity) == pytest.approx(units, rel=1e-9)
    assert short.price == price_decimal(price)
    assert balance(slippy, "BTC")[0] == -short.quantity


def test_shorting_off_refuses_a_sell_at_the_fill_without_the_asset(alice: Any, instrument: Any) -> None:
    account = make_account(alice, "Long only", allow_short=False)
    paper_account_fund(account=account, balances={"BTC": Decimal(1)})
    PaperBroker(int(account.pk)).submit(order("s", side="sell", quantity="1"))
    close_bar(instrument, 1, 100, 101, 99, 100)
    assert status(account, "s") == "filled"
    assert balance(account, "BTC") == (Decimal(0), Decimal(0))


# --- the pass -----------------------------------------------------------------------------------


def test_a_bar_matched_twice_fills_once(broker: PaperBroker, account: TradingAccount, instrument: Any) -> None:
    broker.submit(order("m", attached={"stop_loss": 0.5}))
    bar = {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 10.0}
    first = paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=T0 + HOUR, bar=bar)
    assert first == {account.pk: ["m", "m.s"]}
    again = paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=T0 + HOUR, bar=bar)
    assert again == {}
    assert PaperFill.objects.count() == 1


def test_changes_are_announced_per_account_after_commit(
    alice: Any, bob: Any, instrument: Any, django_capture_on_commit_callbacks: Any
) -> None:
    accounts = [make_account(alice, "A"), make_account(bob, "B")]
    for acc in accounts:
        PaperBroker(int(acc.pk)).submit(order(f"m{acc.pk}"))
    heard: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        heard.append({"account_id": kwargs["account_id"], "ids": kwargs["client_order_ids"]})

    paper_orders_changed.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            close_bar(instrument, 1, 100, 101, 99, 100)
        assert heard == []  # nothing before the commit
        for callback in callbacks:
            callback()
    finally:
        paper_orders_changed.disconnect(receiver)
    assert sorted(h["account_id"] for h in heard) == sorted(a.pk for a in accounts)
    assert all(h["ids"] == [f"m{h['account_id']}"] for h in heard)


def _queries_for_one_bar(owner: Any, instrument: Any, accounts: int, n: int) -> tuple[int, dict[int, list[str]]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(accounts):
        broker = PaperBroker(int(make_account(owner, f"A{n}-{i}").pk))
        broker.submit(order(f"m{n}", attached={"stop_loss": 0.01, "take_profit": 0.01}))
        broker.submit(order(f"l{n}", type="limit", price=50))
        broker.submit(order(f"s{n}", side="sell", type="stop", stop_price=80))
    bar = {"open": 100.0, "high": 100.5, "low": 98.5, "close": 100.0, "volume": 1000.0}
    with CaptureQueriesContext(connection) as queries:
        changes = paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=T0 + n * HOUR, bar=bar)
    return len(queries), changes


def test_the_number_of_queries_does_not_grow_with_the_orders(alice: Any, instrument: Any) -> None:
    from django.db import connection

    few, _ = _queries_for_one_bar(alice, instrument, 3, 1)
    many, changes = _queries_for_one_bar(alice, instrument, 40, 2)
    if connection.vendor == "postgresql":
        assert many == few
    else:  # SQLite: Django splits bulk inserts by its parameter limit (999), a few batches more
        assert many <= few + 4
    assert len(changes) == 40
    assert PaperOrder.objects.filter(client_order_id="m2.s", status="filled").count() == 40
    assert PaperOrder.objects.filter(client_order_id="m2.t", status="cancelled").count() == 40
    assert PaperOrder.objects.filter(client_order_id="l2", status="open").count() == 40
