"""Faults and bad input (issue 5): a quantity below the minimum, a price off the tick, too little
balance, a symbol the venue does not list, a revoked key.

Pass: a clear refusal recorded on the order (status rejected with the reason) and as a
RiskEvent the owner sees; the deployment keeps running where the refusal is about one order
(too small, too little money) and pauses with the reason where every later order would fail
too (unknown symbol, revoked key). Nothing is retried into the venue: POSTs are counted from
FakeVenue's own log.

These need no worker process: the services run in the test (ccxt over real HTTP to the
FakeVenue thread), in the embedded run as well as against PostgreSQL.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.fault.trading import ORDER_PATH, PRICE, flat_history, live_deployment, next_bar

pytestmark = pytest.mark.django_db


def _tick(deployment: Any, instrument: Any, bar: datetime) -> Any:
    """One tick in this process, then the send its order would get from a worker."""
    from apps.strategies.services.ticks import caches_clear, deployment_tick
    from apps.trades.models import Order
    from apps.trades.services.orders import order_send

    caches_clear()
    deployment_tick(deployment_id=deployment.pk, instrument_id=instrument.pk, bar_ts=bar)
    [order] = Order.objects.filter(deployment=deployment)
    if order.status == "new":
        assert order_send(order_id=order.pk) is None
    order.refresh_from_db()
    return order


def _deployment_and_entry_bar(account: Any, instrument: Any, **kwargs: Any) -> tuple[Any, datetime]:
    """A live deployment on flat history, then the bar it enters on."""
    history = flat_history(instrument)
    deployment = live_deployment(account, instrument, **kwargs)
    return deployment, next_bar(instrument, history[-1].to_pydatetime(), PRICE * 1.01)


def _risk_events(order: Any) -> list[tuple[str, str]]:
    from apps.trades.models import RiskEvent

    return list(RiskEvent.objects.filter(order=order).values_list("kind", "code"))


def _posts(venue: Any) -> list[Any]:
    return venue.requests_for(method="POST", path=ORDER_PATH)


def test_below_minimum_is_refused_before_sending_and_the_deployment_runs_on(
    venue: Any, ccxt_account: Any, btc: Any
) -> None:
    from apps.strategies.models import Deployment, Signal, TickRun
    from apps.strategies.services.ticks import caches_clear, deployment_tick
    from apps.trades.models import Order, RiskEvent

    # given: capital too small for the symbol's minimum order value (5 USDT)
    deployment, bar = _deployment_and_entry_bar(ccxt_account, btc, capital="3")

    caches_clear()
    deployment_tick(deployment_id=deployment.pk, instrument_id=btc.pk, bar_ts=bar)

    # then: the owner sees why (a RiskEvent of the deployment; the order, if one was written,
    # is rejected with the reason); nothing reached the venue; the deployment trades on
    events = RiskEvent.objects.filter(deployment=deployment, code__in=["min_notional", "min_quantity"])
    assert events.exists(), f"no RiskEvent; the signal says {Signal.objects.get(deployment=deployment).details}"
    for order in Order.objects.filter(deployment=deployment):
        assert order.status == "rejected" and "minimum" in order.status_reason
    assert _posts(venue) == []
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.LIVE
    assert TickRun.objects.get(deployment=deployment, bar_ts=bar).finished_at is not None


def test_manual_order_below_minimum_is_refused_with_the_reason(venue: Any, ccxt_account: Any, btc: Any) -> None:
    from apps.trades.errors import OrderRefusedError
    from apps.trades.models import Order
    from tests.fault.trading import submit_market

    with pytest.raises(OrderRefusedError) as refused:
        submit_market(ccxt_account, btc, quantity="0.0001")  # 4 USDT

    order = Order.objects.get(account=ccxt_account)
    assert order.status == "rejected" and refused.value.message in order.status_reason
    assert _risk_events(order) == [("refused", refused.value.code)]
    assert _posts(venue) == []


def test_price_off_the_tick_is_rounded_to_the_safe_side_and_accepted(venue: Any, ccxt_account: Any, btc: Any) -> None:
    from apps.trades.intents import OrderIntent
    from apps.trades.services.orders import order_send, order_submit

    # given: a buy limit between two ticks (0.01)
    intent = OrderIntent(
        account_id=ccxt_account.pk,
        instrument_id=btc.pk,
        side="buy",
        type="limit",
        source="manual",
        quantity=Decimal("0.010004"),
        price=Decimal("39000.017"),
    )

    order = order_submit(intent=intent)
    order_send(order_id=order.pk)

    order.refresh_from_db()
    assert order.price == Decimal("39000.01")  # a buy never pays more than asked
    assert order.quantity == Decimal("0.01")  # down to the step
    [venue_order] = venue.orders_for(order.client_order_id)
    assert venue_order.price == Decimal("39000.01") and venue_order.quantity == Decimal("0.01")
    assert order.status == "open" and order.exchange_order_id == str(venue_order.order_id)
    assert [r.status for r in _posts(venue)] == [200]  # no filter failure at the venue


def test_insufficient_balance_is_rejected_once_and_the_deployment_runs_on(
    venue: Any, ccxt_account: Any, btc: Any
) -> None:
    from apps.strategies.models import Deployment
    from apps.trades.services.orders import order_send

    # given: the venue account holds 10 USDT; the deployment wants ~1000 USDT of BTC
    venue.set_balance("USDT", "10")
    deployment, bar = _deployment_and_entry_bar(ccxt_account, btc, capital="1000")

    order = _tick(deployment, btc, bar)

    assert order.status == "rejected"
    assert "insufficient balance" in order.status_reason.lower()
    assert ("refused", "insufficient_funds") in _risk_events(order)
    assert order_send(order_id=order.pk) is None  # a second delivery does nothing
    assert len(_posts(venue)) == 1 and venue.orders == {}
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.LIVE


def test_unknown_symbol_is_rejected_and_pauses_the_deployment(venue: Any, ccxt_account: Any) -> None:
    from apps.marketdata.models import Instrument
    from apps.strategies.models import Deployment
    from apps.trades.models import RiskEvent

    # given: an instrument the venue does not list
    doge = Instrument.objects.create(
        venue="binance", symbol="DOGE/USDT", base="DOGE", quote="USDT", tick_size=Decimal("0.00001"),
        lot_size=Decimal("0.001"), min_notional=Decimal("1"),
    )  # fmt: skip
    deployment, bar = _deployment_and_entry_bar(ccxt_account, doge, capital="100")

    order = _tick(deployment, doge, bar)

    assert order.status == "rejected"
    assert "DOGE" in order.status_reason
    assert _risk_events(order)
    assert _posts(venue) == []
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.PAUSED
    assert "DOGE" in deployment.status_reason
    assert RiskEvent.objects.filter(deployment=deployment, kind="paused").exists()


def test_revoked_key_rejects_marks_the_account_and_pauses_its_deployments(
    venue: Any, ccxt_account: Any, btc: Any
) -> None:
    from apps.accounts.models import TradingAccount
    from apps.strategies.models import Deployment
    from apps.trades.services.orders import order_send

    # given: the key was revoked at the venue
    venue.revoked_key = True
    deployment, bar = _deployment_and_entry_bar(ccxt_account, btc)

    order = _tick(deployment, btc, bar)

    assert order.status == "rejected"
    assert "key" in order.status_reason.lower()
    assert _risk_events(order)
    assert order_send(order_id=order.pk) is None
    assert len(_posts(venue)) <= 1  # the refused POST, never a retry
    ccxt_account.refresh_from_db()
    assert ccxt_account.status == TradingAccount.Status.NEEDS_RECONNECT
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.PAUSED
    assert "reconnect" in deployment.status_reason.lower()
