"""Position arithmetic (pure), closing a position, and a deployment's equity and P&L."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.brokers.base import FillReport
from apps.accounts.models import TradingAccount
from apps.trades.models import Order, Position
from apps.trades.services.fills import fill_record
from apps.trades.services.positions import (
    account_positions,
    deployment_equity,
    deployment_pnl_summary,
    position_close,
    position_math,
)
from tests.trades.execution_support import D, make_btc, make_deployment
from tests.trades.test_fills import make_order

AT = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "average", "side", "quantity", "price", "expected"),
    [
        # open, add (weighted average), reduce (realise, keep average), close, reverse through zero
        ("0", None, "buy", "2", "100", ("2", "100", "0", True, False)),
        ("2", "100", "buy", "2", "110", ("4", "105", "0", False, False)),
        ("4", "105", "sell", "1", "115", ("3", "105", "10", False, False)),
        ("3", "105", "sell", "3", "95", ("0", None, "-30", False, True)),
        ("1", "100", "sell", "3", "90", ("-2", "90", "-10", True, False)),
        ("-2", "90", "buy", "1", "80", ("-1", "90", "10", False, False)),
        ("-1", "90", "buy", "2", "95", ("1", "95", "-5", True, False)),
    ],
)
def test_position_math(start, average, side, quantity, price, expected):
    change = position_math(
        quantity=D(start),
        average_price=D(average) if average else None,
        side=side,
        fill_quantity=D(quantity),
        price=D(price),
    )

    qty, avg, realized, opened, closed = expected
    assert change.quantity == D(qty)
    assert change.average_price == (D(avg) if avg else None)
    assert change.realized == D(realized)
    assert (change.opened, change.closed) == (opened, closed)
    assert all(isinstance(v, Decimal) for v in (change.quantity, change.realized))


@pytest.fixture
def book(db: Any, alice: Any) -> tuple[TradingAccount, Any, Any]:
    instrument = make_btc()
    account = TradingAccount.objects.create(owner=alice, name="Venue", kind="ccxt", exchange_id="binance")
    return account, instrument, make_deployment(account, instrument, capital=D("1000"))


def fill(order: Order, trade_id: str, quantity: str, price: str, fee: str = "0") -> None:
    fill_record(
        order_id=order.pk,
        report=FillReport(
            trade_id=trade_id, quantity=D(quantity), price=D(price), fee=D(fee), fee_currency="USDT", at=AT
        ),
    )


def test_reversal_through_zero_via_fills(book):
    account, instrument, deployment = book
    buy = make_order(account, instrument, deployment=deployment, side="buy", quantity="1")
    sell = make_order(account, instrument, deployment=deployment, side="sell", quantity="3")

    fill(buy, "b", "1", "100")
    fill(sell, "s", "3", "110")

    position = Position.objects.get(deployment=deployment)
    assert position.quantity == D("-2")
    assert position.average_price == D("110")
    assert position.realized_pnl == D("10")
    assert sell.fills.get().realized_pnl == D("10")


def test_equity_is_capital_plus_ledger_plus_marked_positions(book):
    account, instrument, deployment = book
    buy = make_order(account, instrument, deployment=deployment, side="buy", quantity="2")
    fill(buy, "b", "2", "100", fee="0.2")

    equity = deployment_equity(deployment=deployment, prices={instrument.pk: D("110")})
    summary = deployment_pnl_summary(deployment=deployment, prices={instrument.pk: D("110")})

    assert equity == D("1000") - D("200") - D("0.2") + D("220")
    assert summary["unrealized_pnl"] == D("20")
    assert summary["fees"] == D("0.2")
    assert summary["net_pnl"] == D("19.8")
    assert summary["equity"] == equity
    assert [p.quantity for p in account_positions(account_id=account.pk)] == [D("2")]


def test_position_close_submits_one_reduce_only_market_order(book, django_capture_on_commit_callbacks, monkeypatch):
    from apps.trades.services import orders

    monkeypatch.setattr(orders, "_enqueue_send", lambda pk, countdown=None: None)
    account, instrument, deployment = book
    buy = make_order(account, instrument, deployment=deployment, side="buy", quantity="0.5")
    fill(buy, "b", "0.5", "100")

    close = position_close(
        account_id=account.pk, deployment_id=deployment.pk, instrument_id=instrument.pk, reason="stopped", source="exit"
    )
    again = position_close(
        account_id=account.pk, deployment_id=deployment.pk, instrument_id=instrument.pk, reason="stopped"
    )

    assert close is not None and again is not None and again.pk == close.pk
    assert (close.side, close.type, close.quantity, close.reduce_only, close.leg) == (
        "sell",
        "market",
        D("0.5"),
        True,
        "close",
    )
    assert close.status == Order.Status.NEW


def test_position_close_of_a_flat_position_does_nothing(book):
    account, instrument, deployment = book

    assert (
        position_close(account_id=account.pk, deployment_id=deployment.pk, instrument_id=instrument.pk, reason="x")
        is None
    )
