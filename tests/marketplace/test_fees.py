"""The fee ledger: monthly fees (prorated by calendar day, in arrears), high-water-mark
performance fees, idempotent accrual, the platform/leader split (exact, property-tested),
collection through a payment provider (none by default) and waivers."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.common.errors import Conflict, ValidationFailed
from apps.marketplace import tasks
from apps.marketplace.models import FeeEntry, Subscription
from apps.marketplace.selectors.subscriptions import fee_statement
from apps.marketplace.services import fees
from apps.marketplace.services import subscriptions as subscription_services
from tests.marketplace.test_subscription_views import (
    approved_listing,
    btc_market,
    copy,
    leader_fill,
    move_price,
    subscribe,
)

D = Decimal
pytestmark = pytest.mark.django_db


def _started(subscription: Subscription, when: datetime, ended: datetime | None = None) -> Subscription:
    Subscription.objects.filter(pk=subscription.pk).update(started_at=when, ended_at=ended)
    subscription.refresh_from_db()
    return subscription


@pytest.fixture
def monthly(alice: Any, staff: Any) -> Any:
    return approved_listing(alice, staff, btc_market(), monthly_fee=D("31"))


@pytest.fixture
def performance(alice: Any, staff: Any) -> Any:
    return approved_listing(alice, staff, btc_market(), performance_fee_pct=D("20"))


def _entries(subscription: Subscription, kind: str) -> list[FeeEntry]:
    return list(FeeEntry.objects.filter(subscription=subscription, kind=kind).order_by("period_start"))


# --- monthly ------------------------------------------------------------------------------------


def test_monthly_fee_accrues_once_per_completed_month_prorated_by_day(bob, monthly):
    # given: bob joined on 20 January 2024 (12 of January's 31 days)
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 20, 15, tzinfo=UTC))
    # when: the accrual runs in early March, twice
    first = fees.fees_accrue(now=datetime(2024, 3, 1, 0, 5, tzinfo=UTC))
    second = fees.fees_accrue(now=datetime(2024, 3, 1, 0, 6, tzinfo=UTC))
    # then: January prorated, February whole, March not yet; the second run adds nothing
    entries = _entries(subscription, FeeEntry.Kind.MONTHLY)
    assert [(e.period_start, e.period_end, e.amount) for e in entries] == [
        (date(2024, 1, 1), date(2024, 1, 31), D("12.0000000000")),
        (date(2024, 2, 1), date(2024, 2, 29), D("31.0000000000")),
    ]
    assert entries[0].memo == "12 of 31 days" and entries[0].currency == "USDT"
    assert all(e.status == FeeEntry.Status.ACCRUED for e in entries)
    assert first == {"subscriptions": 1, "entries": 2, "failed": 0}
    assert second["entries"] == 0
    assert FeeEntry.objects.count() == 2


def test_monthly_fee_of_the_month_an_ended_subscription_left(bob, monthly):
    subscription = subscribe(bob, monthly)
    subscription_services.subscription_unsubscribe(subscription=subscription, actor=bob, close_positions=False)
    subscription = _started(subscription, datetime(2024, 1, 1, tzinfo=UTC), ended=datetime(2024, 2, 10, 9, tzinfo=UTC))
    fees.fees_accrue(now=datetime(2024, 3, 2, tzinfo=UTC))
    amounts = [e.amount for e in _entries(subscription, FeeEntry.Kind.MONTHLY)]
    # January whole; February 10 of 29 days: 31 x 10 / 29 at 10 places
    assert amounts == [D("31"), fees.money(D(31) * 10 / 29)]
    # and a later month adds nothing for it
    fees.fees_accrue(now=datetime(2024, 5, 1, tzinfo=UTC))
    assert len(_entries(subscription, FeeEntry.Kind.MONTHLY)) == 2


def test_a_paused_subscription_pays_and_a_stopped_one_does_not(bob, mallory, monthly):
    paused = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    subscription_services.subscription_pause(subscription=paused, actor=bob)
    stopped = _started(subscribe(mallory, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    Subscription.objects.filter(pk=stopped.pk).update(status=Subscription.Status.STOPPED)
    fees.fees_accrue(now=datetime(2024, 2, 1, 0, 5, tzinfo=UTC))
    assert [e.amount for e in _entries(paused, FeeEntry.Kind.MONTHLY)] == [D("31")]
    assert _entries(stopped, FeeEntry.Kind.MONTHLY) == []


def test_the_current_month_is_not_charged_yet(bob, monthly):
    subscription = subscribe(bob, monthly)  # started now
    assert fees.fees_accrue_for_subscription(subscription=subscription) == []
    assert not FeeEntry.objects.exists()


def test_a_free_listing_accrues_nothing(alice, bob, staff):
    listing = approved_listing(alice, staff, btc_market())
    _started(subscribe(bob, listing), datetime(2024, 1, 1, tzinfo=UTC))
    assert fees.fees_accrue(now=datetime(2024, 6, 1, tzinfo=UTC))["subscriptions"] == 0
    assert not FeeEntry.objects.exists()


def test_a_concurrent_second_accrual_of_a_period_returns_the_entry_already_there(bob, monthly):
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    one = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    two = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    assert one is not None and two == one
    assert FeeEntry.objects.count() == 1


# --- performance ----------------------------------------------------------------------------------


def test_performance_fee_only_above_the_high_water_mark_which_then_rises(bob, performance):
    subscription = _started(subscribe(bob, performance, allocation=D("10000")), datetime(2024, 1, 5, tzinfo=UTC))
    assert subscription.high_water_mark == D("10000")  # the mark starts at the allocation
    # January: equity 10500 -> 20 % of 500
    jan = fees.fee_accrue_performance(subscription=subscription, period_start=date(2024, 1, 1), equity=D("10500"))
    assert jan is not None and jan.amount == D("100")
    assert (jan.high_water_mark_before, jan.high_water_mark_after, jan.equity) == (D("10000"), D("10500"), D("10500"))
    subscription.refresh_from_db()
    assert subscription.high_water_mark == D("10500")
    # February: equity fell to 10200: no fee, the mark stays
    feb = fees.fee_accrue_performance(subscription=subscription, period_start=date(2024, 2, 1), equity=D("10200"))
    assert feb is not None and feb.amount == 0 and feb.high_water_mark_after == D("10500")
    # March: 10800 -> 20 % of (10800 - 10500), not of the gain over 10200
    mar = fees.fee_accrue_performance(subscription=subscription, period_start=date(2024, 3, 1), equity=D("10800"))
    assert mar is not None and mar.amount == D("60")
    subscription.refresh_from_db()
    assert subscription.high_water_mark == D("10800")


def test_a_settled_period_is_not_charged_again_when_equity_rises_later(bob, performance):
    subscription = _started(subscribe(bob, performance), datetime(2024, 1, 5, tzinfo=UTC))
    first = fees.fee_accrue_performance(subscription=subscription, period_start=date(2024, 1, 1), equity=D("9000"))
    again = fees.fee_accrue_performance(subscription=subscription, period_start=date(2024, 1, 1), equity=D("20000"))
    assert first == again and again.amount == 0
    subscription.refresh_from_db()
    assert subscription.high_water_mark == D("10000")
    assert FeeEntry.objects.count() == 1


def test_performance_fee_from_the_copy_books_real_equity(bob, alice, performance):
    # given: bob copies 10 BTC of the leader's buy at 100 and the price rises to 110
    subscription = subscribe(bob, performance, sizing_mode="multiplier", multiplier=D("1"))
    market = performance.deployment.instruments.get()
    fill = leader_fill(performance, quantity="10")
    [copy_trade] = copy(fill)
    assert copy_trade.order is not None and copy_trade.order.filled_quantity == D("10")
    move_price(market, 110.0)
    equity = fees.copy_book_equity(subscription=subscription)
    assert equity > D("10000")
    # when: January closes (the subscription started in January)
    _started(subscription, datetime(2024, 1, 3, tzinfo=UTC))
    fees.fees_accrue(now=datetime(2024, 2, 1, 0, 5, tzinfo=UTC))
    # then
    [entry] = _entries(subscription, FeeEntry.Kind.PERFORMANCE)
    assert entry.equity == fees.money(equity)
    assert entry.amount == fees.money(D("0.2") * (equity - D("10000")))
    subscription.refresh_from_db()
    assert subscription.high_water_mark == entry.equity


# --- the split, collection, waivers ----------------------------------------------------------------


@given(
    amount=st.decimals(min_value=0, max_value=D("1e12"), places=10, allow_nan=False, allow_infinity=False),
    share=st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False),
)
def test_fee_split_sums_to_the_fee_exactly(amount, share):
    leader, platform = fees.fee_split(amount, share=share)
    assert leader + platform == amount
    assert platform == fees.money(platform) and leader == fees.money(leader)
    assert abs(platform - amount * share) <= D("0.00000000005")
    assert leader >= 0 and platform >= 0


def test_fee_split_uses_the_setting(settings):
    assert fees.fee_split(D("100")) == (D("80.0000000000"), D("20.0000000000"))
    settings.MARKETPLACE_PLATFORM_FEE_SHARE = "0.3333"
    leader, platform = fees.fee_split(D("10"))
    assert platform == D("3.3330000000") and leader + platform == D("10")


def test_null_payment_provider_leaves_entries_accrued(bob, monthly):
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    entry = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    assert entry is not None
    result = fees.fee_collect(entry=entry)
    assert result.collected is False
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.ACCRUED


class _ProviderThatCollects:
    """A payment provider (the external interface) that always collects."""

    def collect(self, entry: FeeEntry) -> fees.CollectionResult:
        return fees.CollectionResult(collected=True, reference=f"pay-{entry.pk}")


def test_a_provider_that_collects_marks_the_entry_collected(bob, monthly):
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    entry = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    assert entry is not None
    assert fees.fee_collect(entry=entry, provider=_ProviderThatCollects()).collected
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.COLLECTED and entry.memo == f"pay-{entry.pk}"
    assert fee_statement(subscription=subscription).collected == D("31")


def test_waive_needs_a_note_and_an_accrued_entry(bob, staff, monthly):
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    entry = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    assert entry is not None
    with pytest.raises(ValidationFailed):
        fees.fee_waive(entry=entry, actor=staff, note="  ")
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.ACCRUED
    fees.fee_waive(entry=entry, actor=staff, note="Outage on 3 January")
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.WAIVED and "Outage on 3 January" in entry.memo
    assert AuditEvent.objects.filter(action="marketplace.fee_waived").exists()
    statement = fee_statement(subscription=subscription)
    assert statement.total == 0 and statement.waived == D("31")
    with pytest.raises(Conflict):
        fees.fee_waive(entry=entry, actor=staff, note="again")


def test_the_daily_task_and_its_schedule(bob, monthly):
    entry = settings.CELERY_BEAT_SCHEDULE["marketplace-fees-accrue"]
    assert entry["task"] == tasks.fees_accrue.name == "apps.marketplace.tasks.fees_accrue"
    _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    tasks.fees_accrue.run()
    assert FeeEntry.objects.filter(kind=FeeEntry.Kind.MONTHLY).count() >= 1


def test_admin_waives_a_fee_with_a_note(bob, staff, enable_2fa, monthly):
    from tests.users.steps import verified_client

    client = verified_client(staff, enable_2fa(staff))
    subscription = _started(subscribe(bob, monthly), datetime(2024, 1, 1, tzinfo=UTC))
    entry = fees.fee_accrue_monthly(subscription=subscription, period_start=date(2024, 1, 1))
    assert entry is not None
    assert "bob@example.com" in client.get("/admin/marketplace/feeentry/", {"q": "bob@"}).content.decode()
    # without a note nothing is waived
    client.post("/admin/marketplace/feeentry/", {"action": "waive", "_selected_action": [entry.pk], "note": ""})
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.ACCRUED
    client.post("/admin/marketplace/feeentry/", {"action": "waive", "_selected_action": [entry.pk], "note": "Goodwill"})
    entry.refresh_from_db()
    assert entry.status == FeeEntry.Status.WAIVED and entry.memo == "Waived: Goodwill"
    assert 'name="amount"' not in client.get(f"/admin/marketplace/feeentry/{entry.pk}/change/").content.decode()
