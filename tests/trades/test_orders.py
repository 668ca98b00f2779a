"""Order submission and delivery through ccxt against FakeVenue (real HTTP on loopback).

"How many orders" is counted from FakeVenue's request log and book. The services are called as
the tasks call them (a task's body is one service call); queued follow-ups are recorded
(``queued``) and run by hand. Time for the not-found rule is a controllable clock (``clock``),
so no test waits out ORDER_INFLIGHT_SECONDS.
"""

# ruff: noqa: F811 - fixtures are imported from tests.trades.execution_support

import logging
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.strategies.models import Deployment
from apps.trades.errors import OrderRefusedError
from apps.trades.models import Fill, Order, PlatformSwitch, RiskEvent
from apps.trades.services import orders as order_services
from apps.trades.services.orders import (
    NOT_SENT_REASON,
    order_cancel,
    order_resolve,
    order_send,
    order_submit,
    orders_resolve_stuck,
)
from apps.trades.services.ratelimit import rate_reserve
from tests.trades.execution_support import (  # noqa: F401 - fixtures
    T0,
    D,
    btc,
    exchange,
    fernet,
    intent,
    make_deployment,
    queued,
    short_timeout,
    venue,
)

pytestmark = pytest.mark.django_db


class Clock:
    """timezone.now for the order services, moved by hand."""

    def __init__(self) -> None:
        self.at = timezone.now()

    def now(self) -> Any:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(order_services, "timezone", SimpleNamespace(now=fake.now))
    return fake


def submit(django_capture_on_commit_callbacks: Any, account: TradingAccount, instrument: Any, **fields: Any) -> Order:
    with django_capture_on_commit_callbacks(execute=True):
        return order_submit(intent=intent(account, instrument, **fields))


# --- submit -----------------------------------------------------------------------------------


def test_submit_writes_the_order_before_anything_is_sent(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    assert order.status == Order.Status.NEW
    assert order.client_order_id.startswith("tpm")
    assert queued.ids("order_send") == [order.pk]
    assert venue.post_count(order.client_order_id) == 0


def test_duplicate_tick_returns_the_existing_order_and_sends_once(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks, caplog
):
    deployment = make_deployment(exchange, btc)
    fields = {"deployment_id": deployment.pk, "bar_ts": T0, "leg": "entry"}

    first = submit(django_capture_on_commit_callbacks, exchange, btc, **fields)
    with caplog.at_level(logging.INFO, logger="apps.trades.services.orders"):
        second = submit(django_capture_on_commit_callbacks, exchange, btc, **fields)
    order_send(order_id=first.pk)
    order_send(order_id=second.pk)  # the second delivery of the send message

    assert second.pk == first.pk
    assert Order.objects.filter(account=exchange).count() == 1
    assert any("duplicate_tick" in r.getMessage() for r in caplog.records)
    assert queued.ids("order_send") == [first.pk]
    assert venue.post_count(first.client_order_id) == 1
    assert len(venue.orders_for(first.client_order_id)) == 1


def test_quantity_and_price_are_rounded_to_the_instrument(exchange, btc, queued, django_capture_on_commit_callbacks):
    order = submit(
        django_capture_on_commit_callbacks,
        exchange,
        btc,
        type="limit",
        quantity=D("0.0123456"),
        price=D("39999.999"),
    )

    assert order.quantity == D("0.01234")
    assert order.price == D("39999.99")  # a buy's limit rounds down


def test_below_the_minimum_is_refused_recorded_and_raised(exchange, btc, venue, queued):
    with pytest.raises(OrderRefusedError) as refused:
        order_submit(intent=intent(exchange, btc, quantity=D("0.0001"), expected_price=D("40000")))

    order = Order.objects.get(account=exchange)
    assert refused.value.code == "min_notional"
    assert order.status == Order.Status.REJECTED
    assert "min_notional" in order.status_reason
    assert RiskEvent.objects.filter(order=order, code="min_notional").exists()
    assert queued.ids("order_send") == []
    assert venue.requests_for(method="POST") == []


def test_tick_refusals_are_returned_not_raised(exchange, btc, queued):
    order = order_submit(intent=intent(exchange, btc, quantity=D("0.0001")), raise_refusal=False)

    assert order.status == Order.Status.REJECTED


def test_no_task_is_queued_for_an_order_that_rolled_back(exchange, btc, queued, django_capture_on_commit_callbacks):
    # given an order written inside a transaction that then fails (scenario 23)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        order_submit(intent=intent(exchange, btc))
        raise RuntimeError("the tick failed after submitting")

    assert callbacks == []
    assert queued.ids("order_send") == []
    assert not Order.objects.filter(account=exchange).exists()


# --- send ---------------------------------------------------------------------------------------


def test_market_order_is_sent_once_and_its_fill_recorded_exactly(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    order = submit(django_capture_on_commit_callbacks, exchange, btc, quantity=D("0.01234"))

    with django_capture_on_commit_callbacks(execute=True):
        assert order_send(order_id=order.pk) is None
    order_send(order_id=order.pk)  # redelivered: claims nothing

    order.refresh_from_db()
    [venue_order] = venue.orders_for(order.client_order_id)
    venue_trades = [t for t in venue.trades if str(t["orderId"]) == str(venue_order.order_id)]
    fills = list(order.fills.order_by("pk"))
    assert venue.post_count(order.client_order_id) == 1
    assert order.status == Order.Status.FILLED
    assert order.exchange_order_id == str(venue_order.order_id)
    assert [(f.trade_id, f.quantity, f.price, f.fee) for f in fills] == [
        (str(t["id"]), D(str(t["qty"])), D(str(t["price"])), D(str(t["commission"]))) for t in venue_trades
    ]
    assert order.filled_quantity == D("0.01234")


def test_order_and_fill_fields_are_decimals_never_floats(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    order_send(order_id=order.pk)

    order = Order.objects.get(pk=order.pk)
    fill = Fill.objects.get(order=order)
    for name in ("quantity", "filled_quantity", "average_price", "fees", "expected_price"):
        assert isinstance(getattr(order, name), Decimal), name
    for name in ("quantity", "price", "fee", "expected_price", "slippage_bps", "realized_pnl"):
        assert isinstance(getattr(fill, name), Decimal), name


def test_accept_then_hang_is_unknown_then_resolved_filled_without_a_second_post(
    exchange, btc, venue, queued, short_timeout, django_capture_on_commit_callbacks
):
    # given a venue that accepts (and fills) the order but never answers the POST
    venue.accept_then_hang = 1
    venue.fill_immediately = True
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    # when it is sent: the outcome is ambiguous
    assert order_send(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.UNKNOWN
    assert queued.ids("order_resolve") == [order.pk]

    # then retries of the send never POST again, and asking the venue resolves it
    for _ in range(5):
        order_send(order_id=order.pk)
    assert order_resolve(order_id=order.pk) is None

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert venue.post_count(order.client_order_id) == 1
    assert len(venue.orders_for(order.client_order_id)) == 1
    assert order.fills.count() == 1
    assert venue.requests_for(method="GET", path="/api/v3/order", client_order_id=order.client_order_id)


def test_accept_then_reset_with_an_immediate_fill_ends_filled_with_one_venue_order(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    venue.accept_then_reset = 1
    venue.fill_immediately = True
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    order_send(order_id=order.pk)
    assert Order.objects.get(pk=order.pk).status == Order.Status.UNKNOWN
    for _ in range(5):  # Celery's automatic retries of the message
        order_send(order_id=order.pk)
    order_resolve(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert venue.post_count(order.client_order_id) == 1
    assert Fill.objects.filter(order=order).count() == 1


def test_not_found_is_not_expired_before_three_checks_spanning_the_window(
    exchange, btc, venue, queued, clock, short_timeout, settings, django_capture_on_commit_callbacks
):
    # given an accepted order the venue will not show for a while, after an ambiguous send
    settings.ORDER_INFLIGHT_SECONDS = 30
    venue.accept_then_hang = 1
    venue.not_found_for(3600)
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    order_send(order_id=order.pk)

    # when it is asked about three times within 20 s
    for _ in range(3):
        assert order_resolve(order_id=order.pk) is not None
        clock.advance(10)

    # then it is still unknown, with no second POST
    order.refresh_from_db()
    assert order.status == Order.Status.UNKNOWN
    assert order.not_found_count == 3
    assert venue.post_count(order.client_order_id) == 1

    # and once the venue shows it, it takes the venue's state
    venue.hide_order(order.client_order_id, 0)
    assert order_resolve(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED  # a market order fills on arrival at this venue
    assert order.exchange_order_id
    assert order.fills.count() == 1
    assert venue.post_count(order.client_order_id) == 1


def test_5xx_before_accept_expires_as_not_sent_after_the_not_found_rule(
    exchange, btc, venue, queued, clock, settings, django_capture_on_commit_callbacks
):
    settings.ORDER_INFLIGHT_SECONDS = 30
    venue.fail_5xx_before_accept = 1
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    order_send(order_id=order.pk)
    assert Order.objects.get(pk=order.pk).status == Order.Status.UNKNOWN

    delays = []
    for _ in range(3):
        delays.append(order_resolve(order_id=order.pk))
        if delays[-1]:
            clock.advance(delays[-1])

    order.refresh_from_db()
    assert delays[-1] is None
    assert order.status == Order.Status.EXPIRED
    assert order.status_reason == NOT_SENT_REASON
    assert order.not_found_count == 3
    assert venue.post_count(order.client_order_id) == 1
    assert venue.orders_for(order.client_order_id) == []


def test_429_is_retried_after_retry_after_and_makes_one_order(
    exchange, btc, venue, queued, clock, django_capture_on_commit_callbacks
):
    venue.rate_limit(30)
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    delay = order_send(order_id=order.pk)
    order.refresh_from_db()
    assert delay is not None and delay >= 1
    assert order.status == Order.Status.NEW
    assert order_send(order_id=order.pk) is not None  # too early: waits for Retry-After
    venue.rate_limit(0)
    clock.advance(delay)

    assert order_send(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert len(venue.orders_for(order.client_order_id)) == 1


def test_revoked_key_rejects_marks_the_account_and_pauses_deployments_without_retry(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    deployment = make_deployment(exchange, btc)
    venue.revoked_key = True
    order = submit(
        django_capture_on_commit_callbacks, exchange, btc, deployment_id=deployment.pk, bar_ts=T0, leg="entry"
    )

    assert order_send(order_id=order.pk) is None

    order.refresh_from_db()
    exchange.refresh_from_db()
    deployment.refresh_from_db()
    assert order.status == Order.Status.REJECTED
    assert exchange.status == TradingAccount.Status.NEEDS_RECONNECT
    assert deployment.status == Deployment.Status.PAUSED
    assert "reconnect" in deployment.status_reason
    assert queued.ids("order_send") == [order.pk]  # only the first send, no retry
    assert venue.post_count(order.client_order_id) <= 1


def test_venue_rejection_is_rejected_with_its_message_after_one_post(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    venue.set_balance("USDT", "1")
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    assert order_send(order_id=order.pk) is None

    order.refresh_from_db()
    assert order.status == Order.Status.REJECTED
    assert "insufficient balance" in order.status_reason
    assert venue.post_count(order.client_order_id) == 1
    assert queued.ids("order_send") == [order.pk]
    assert RiskEvent.objects.filter(order=order).exists()


def test_kill_switch_set_after_submit_stops_the_send(exchange, btc, venue, queued, django_capture_on_commit_callbacks):
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    PlatformSwitch.objects.update_or_create(pk=1, defaults={"mode": PlatformSwitch.Mode.HALTED, "reason": "ops"})

    order_send(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Order.Status.REJECTED
    assert "halted" in order.status_reason.lower()
    assert venue.requests_for(method="POST") == []


# --- crashes ------------------------------------------------------------------------------------


def test_a_send_interrupted_after_the_venue_accepted_is_resolved_not_resent(
    exchange, btc, venue, queued, clock, settings, django_capture_on_commit_callbacks
):
    # given a worker that claimed the order, POSTed it and died before recording the answer
    settings.ORDER_INFLIGHT_SECONDS = 30
    from tests.fakes.fake_venue import fake_venue_broker

    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.SENDING, sent_at=clock.now())
    other = fake_venue_broker(venue)
    other.submit(
        order_services._order_request(Order.objects.select_related("account", "instrument").get(pk=order.pk), other)
    )
    other.close()

    # when the beat looks for stuck orders before and after the in-flight window
    assert orders_resolve_stuck()["resolve"] == 0
    clock.advance(31)
    assert orders_resolve_stuck()["resolve"] == 1
    order_resolve(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert venue.post_count(order.client_order_id) == 1
    assert order.fills.count() == 1


def test_a_send_interrupted_before_the_post_expires_as_not_sent(
    exchange, btc, venue, queued, clock, settings, django_capture_on_commit_callbacks
):
    settings.ORDER_INFLIGHT_SECONDS = 30
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.SENDING, sent_at=clock.now())
    clock.advance(31)

    for _ in range(4):
        delay = order_resolve(order_id=order.pk)
        if delay is None:
            break
        clock.advance(delay)

    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert order.status_reason == NOT_SENT_REASON
    assert venue.requests_for(method="POST") == []


def test_a_new_order_whose_message_was_lost_is_sent_again_then_expires_when_stale(
    exchange, btc, queued, clock, settings, django_capture_on_commit_callbacks
):
    settings.ORDER_INFLIGHT_SECONDS = 30
    settings.ORDER_STALE_SECONDS = 300
    order = submit(django_capture_on_commit_callbacks, exchange, btc)
    Order.objects.filter(pk=order.pk).update(created_at=clock.now())

    clock.advance(40)
    assert orders_resolve_stuck()["send"] == 1
    assert queued.ids("order_send") == [order.pk, order.pk]
    clock.advance(400)
    assert orders_resolve_stuck()["expired"] == 1
    assert Order.objects.get(pk=order.pk).status == Order.Status.EXPIRED


# --- cancel, rate ---------------------------------------------------------------------------------


def test_cancel_an_open_limit_order_at_the_venue(exchange, btc, venue, queued, django_capture_on_commit_callbacks):
    order = submit(django_capture_on_commit_callbacks, exchange, btc, type="limit", price=D("30000"))
    order_send(order_id=order.pk)
    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN

    cancelled = order_cancel(order=order)

    assert cancelled.status == Order.Status.CANCELLED
    assert venue.orders_for(order.client_order_id)[0].status == "CANCELED"


def test_cancel_inside_a_transaction_is_queued_after_commit(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    order = submit(django_capture_on_commit_callbacks, exchange, btc, type="limit", price=D("30000"))
    order_send(order_id=order.pk)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        order_cancel(order=order)
        assert venue.requests_for(method="DELETE") == []

    assert queued.ids("order_cancel") == [order.pk]


def test_cancel_of_an_unsent_order_needs_no_venue(exchange, btc, venue, queued, django_capture_on_commit_callbacks):
    order = submit(django_capture_on_commit_callbacks, exchange, btc)

    assert order_cancel(order=order).status == Order.Status.CANCELLED
    order_send(order_id=order.pk)
    assert venue.requests_for(method="POST") == []


def test_rate_reserve_spaces_sends_and_defers_the_excess(settings):
    settings.ORDER_RATE_PER_SECOND = 10
    settings.ORDER_RATE_MAX_WAIT_SECONDS = 0.5
    now = 1_000_000.0

    answers = [rate_reserve(account_id=7, now=now) for _ in range(12)]

    sent = [wait for ok, wait in answers if ok]
    deferred = [wait for ok, wait in answers if not ok]
    assert len(sent) == 5  # slots of 0.11 s within the 0.5 s wait
    assert all(b - a >= 0.0999 for a, b in pairwise(sent))  # never closer than 1/rate
    assert deferred and all(d > 0.5 for d in deferred)
    assert rate_reserve(account_id=8, now=now) == (True, pytest.approx(0.0, abs=0.11))
