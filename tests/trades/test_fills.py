"""fill_record: idempotent per (order, trade id), exact Decimal position / ledger arithmetic,
slippage against the trader, and no lost updates under concurrent fills on PostgreSQL."""

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from django.db import transaction

from apps.accounts.brokers.base import FillReport
from apps.accounts.models import TradingAccount
from apps.trades.models import Fill, LedgerEntry, Order, Position
from apps.trades.services.fills import fill_record, slippage_bps
from apps.trades.services.ledger import ledger_balance, ledger_post_fill
from tests.common.live_db import close_thread_connections, transactional_db
from tests.factories import UserFactory
from tests.trades.execution_support import D, make_btc, make_deployment

AT = datetime(2024, 3, 1, tzinfo=UTC)


def make_order(
    account: TradingAccount, instrument: Any, *, side: str = "buy", quantity: str = "1", **extra: Any
) -> Order:
    return Order.objects.create(
        account=account,
        instrument=instrument,
        symbol=instrument.symbol,
        client_order_id=extra.pop("client_order_id", f"tpt{Order.objects.count() + 1}"),
        side=side,
        type="market",
        quantity=D(quantity),
        status=Order.Status.OPEN,
        **extra,
    )


def report(trade_id: str, quantity: str, price: str, fee: str = "0", currency: str = "USDT") -> FillReport:
    return FillReport(trade_id=trade_id, quantity=D(quantity), price=D(price), fee=D(fee), fee_currency=currency, at=AT)


@pytest.fixture
def setup(db: Any, alice: Any) -> tuple[TradingAccount, Any, Any]:
    instrument = make_btc()
    account = TradingAccount.objects.create(owner=alice, name="Venue", kind="ccxt", exchange_id="binance")
    deployment = make_deployment(account, instrument)
    return account, instrument, deployment


def test_the_same_trade_is_recorded_once(setup, django_capture_on_commit_callbacks):
    account, instrument, deployment = setup
    order = make_order(account, instrument, deployment=deployment, expected_price=D("100"))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        first = fill_record(order_id=order.pk, report=report("t1", "1", "101", "0.101"))
    second = fill_record(order_id=order.pk, report=report("t1", "1", "101", "0.101"))

    order.refresh_from_db()
    position = Position.objects.get(account=account, deployment=deployment)
    assert first is not None and second is None
    assert Fill.objects.filter(order=order).count() == 1
    assert order.status == Order.Status.FILLED
    assert order.filled_quantity == D("1") and order.average_price == D("101") and order.fees == D("0.101")
    assert position.quantity == D("1") and position.average_price == D("101")
    assert LedgerEntry.objects.filter(fill=first).count() == 2
    assert ledger_balance(account_id=account.pk, deployment_id=deployment.pk) == D("-101.101")
    assert callbacks  # signals and live events go out after commit


def test_partial_fills_average_and_status(setup):
    account, instrument, _ = setup
    order = make_order(account, instrument, quantity="3")

    fill_record(order_id=order.pk, report=report("a", "1", "100"))
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_FILLED
    fill_record(order_id=order.pk, report=report("b", "2", "103"))

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert order.average_price == D("102")


def test_slippage_is_positive_when_worse_for_the_trader():
    assert slippage_bps(side="buy", expected=D("100"), price=D("100.5")) == D("50")
    assert slippage_bps(side="sell", expected=D("100"), price=D("99.5")) == D("50")
    assert slippage_bps(side="sell", expected=D("100"), price=D("100.5")) == D("-50")
    assert slippage_bps(side="buy", expected=None, price=D("1")) is None


def test_a_fee_in_the_base_asset_is_paid_in_quantity(setup):
    # Binance takes a spot buy's fee from the coins bought: the holding is what the venue holds
    account, instrument, deployment = setup
    order = make_order(account, instrument, deployment=deployment, quantity="0.01")

    fill_record(order_id=order.pk, report=report("t", "0.01", "40000", "0.00001", "BTC"))

    position = Position.objects.get(account=account, deployment=deployment)
    assert position.quantity == D("0.00999")
    assert position.fees == D("0.4")
    assert ledger_balance(account_id=account.pk, deployment_id=deployment.pk) == D("-400")


@transactional_db()
def test_money_moves_only_inside_a_transaction():
    # given no surrounding transaction (scenario D1)
    instrument = make_btc()
    account = TradingAccount.objects.create(
        owner=cast(Any, UserFactory()), name="Venue", kind="ccxt", exchange_id="binance"
    )
    order = make_order(account, instrument)
    fill = Fill(
        order=order, account=account, instrument=instrument, trade_id="x", side="buy", quantity=D(1), price=D(1)
    )

    with pytest.raises(transaction.TransactionManagementError):
        ledger_post_fill(fill=fill, fee_cash=D(0), asset="USDT")
    assert not LedgerEntry.objects.exists()


@pytest.mark.postgres
@transactional_db()
def test_concurrent_fills_keep_the_position_and_ledger_exact():
    # given one account, one deployment and 20 orders filled from 20 threads at once
    owner = cast(Any, UserFactory())
    instrument = make_btc()
    account = TradingAccount.objects.create(owner=owner, name="Venue", kind="ccxt", exchange_id="binance")
    deployment = make_deployment(account, instrument)
    orders = [
        make_order(account, instrument, deployment=deployment, side="buy" if i % 3 else "sell", quantity="0.37")
        for i in range(20)
    ]
    barrier = threading.Barrier(len(orders))
    errors: list[BaseException] = []

    def work(i: int, order: Order) -> None:
        try:
            barrier.wait()
            fill_record(order_id=order.pk, report=report(f"c{i}", "0.37", str(40000 + i), "0.013"))
            fill_record(order_id=order.pk, report=report(f"c{i}", "0.37", str(40000 + i), "0.013"))  # redelivered
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_thread_connections()

    threads = [threading.Thread(target=work, args=(i, o)) for i, o in enumerate(orders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every fill counted once, exactly
    assert errors == []
    signed = [(D("0.37") if o.side == "buy" else -D("0.37"), D(40000 + i)) for i, o in enumerate(orders)]
    position = Position.objects.get(account=account, deployment=deployment)
    assert Fill.objects.filter(account=account).count() == 20
    assert position.quantity == sum((q for q, _ in signed), Decimal(0))
    assert ledger_balance(account_id=account.pk, deployment_id=deployment.pk) == sum(
        (-(q * p) - D("0.013") for q, p in signed), Decimal(0)
    )
