"""RELIABILITY 13, the concurrent half: two threads on real PostgreSQL each ask for 60 % of the
remaining exposure at the same moment; exactly one is accepted and one refused, because the
check runs under the account row lock (SELECT ... FOR UPDATE) and an accepted order is an open
Order row the next check counts.

The critical section sleeps between the check and the insert, so without the lock both threads
would certainly pass the check (the test would then see two accepted orders)."""

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from apps.accounts.models import TradingAccount
from apps.trades import client_ids
from apps.trades.errors import RiskRefusedError
from apps.trades.models import Order
from apps.trades.risk.checks import risk_check
from tests.trades.risk_fixtures import hold, intent, make_account, make_instrument, rules_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
D = Decimal


def _submit_like_order_submit(account_id: int, instrument: Any, quantity: str, barrier: threading.Barrier) -> str:
    try:
        barrier.wait(timeout=10)
        with transaction.atomic():
            account = TradingAccount.objects.select_for_update().get(pk=account_id)
            order_intent = intent(account, instrument, "buy", quantity)
            try:
                risk_check(
                    account=account, deployment=None, intent=order_intent, price=D("100"), rules=rules_for(instrument)
                )
            except RiskRefusedError as error:
                return f"refused:{error.code}"
            time.sleep(0.3)  # widen the window a missing lock would let the other thread through
            Order.objects.create(
                account=account,
                instrument=instrument,
                symbol=instrument.symbol,
                client_order_id=client_ids.manual_order_id(),
                source="manual",
                side="buy",
                type="market",
                quantity=D(quantity),
                expected_price=D("100"),
            )
            return "accepted"
    finally:
        connection.close()


def test_two_concurrent_orders_cannot_both_pass_the_exposure_limit(alice: Any) -> None:
    instrument = make_instrument()
    account = make_account(alice, risk_limits={"max_exposure_notional": "2000"})
    hold(account, instrument, "10")  # 1,000 used: 1,000 remaining
    barrier = threading.Barrier(2)
    results: list[str] = []

    def run() -> None:
        results.append(_submit_like_order_submit(account.pk, instrument, "6", barrier))  # 600 = 60 %

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["accepted", "refused:max_exposure"]
    assert Order.objects.filter(account=account).count() == 1


def test_through_order_submit(alice: Any) -> None:
    from apps.trades.intents import OrderIntent
    from apps.trades.services import orders

    instrument = make_instrument()
    account = make_account(alice, risk_limits={"max_exposure_notional": "2000"})
    hold(account, instrument, "10")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            order = orders.order_submit(
                intent=OrderIntent(
                    account_id=account.pk,
                    instrument_id=instrument.pk,
                    side="buy",
                    type="limit",
                    price=D("100"),
                    quantity=D("6"),
                    source="manual",
                    expected_price=D("100"),
                )
            )
            results.append("accepted" if order.status != Order.Status.REJECTED else "refused")
        except RiskRefusedError as error:
            results.append(f"refused:{error.code}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["accepted", "refused:max_exposure"]
