"""RELIABILITY 10: a missing position report is not "flat".

The account holds BTC through a filled order; then the venue's account endpoint (where a spot
venue reports holdings) fails. Pass: reconciliation changes no position, halts the account's
trading with an alert the owner sees, and the next tick on the account sends nothing (counted
from FakeVenue's log).

In-process (ccxt over real HTTP to the FakeVenue thread); runs embedded and on PostgreSQL.
"""

from typing import Any

import pytest

from tests.fault.trading import ORDER_PATH, PRICE, flat_history, live_deployment, next_bar, submit_market

pytestmark = pytest.mark.django_db


def test_unreadable_positions_halt_the_account_and_touch_nothing(venue: Any, ccxt_account: Any, btc: Any) -> None:
    from apps.accounts.models import TradingAccount
    from apps.strategies.services.ticks import caches_clear, deployment_tick
    from apps.trades.models import Order, Position, RiskEvent
    from apps.trades.services.orders import order_send
    from apps.trades.services.reconcile import account_reconcile

    # given: a filled manual buy, so the account holds BTC; and a live deployment
    history = flat_history(btc)
    deployment = live_deployment(ccxt_account, btc)
    bought = submit_market(ccxt_account, btc, quantity="0.01")
    order_send(order_id=bought.pk)
    held = list(Position.objects.filter(account=ccxt_account).values_list("pk", "quantity", "average_price"))
    assert held and held[0][1] > 0  # 0.01 less the fee the venue took in BTC

    # when: the venue cannot report holdings, and reconciliation runs
    venue.positions_error = True
    account_reconcile(account_id=ccxt_account.pk)

    # then: positions untouched, account halted, the owner alerted
    assert list(Position.objects.filter(account=ccxt_account).values_list("pk", "quantity", "average_price")) == held
    ccxt_account.refresh_from_db()
    assert ccxt_account.trading_state == TradingAccount.TradingState.HALTED
    assert RiskEvent.objects.filter(account=ccxt_account, kind__in=["alert", "halted"]).exists()

    # and the next tick (an entry signal) sends nothing
    posts_before = len(venue.requests_for(method="POST", path=ORDER_PATH))
    bar = next_bar(btc, history[-1].to_pydatetime(), PRICE * 1.01)
    caches_clear()
    deployment_tick(deployment_id=deployment.pk, instrument_id=btc.pk, bar_ts=bar)
    for order in Order.objects.filter(deployment=deployment):
        if order.status == "new":
            order_send(order_id=order.pk)
        order.refresh_from_db()
        assert order.status == "rejected"
    assert len(venue.requests_for(method="POST", path=ORDER_PATH)) == posts_before
