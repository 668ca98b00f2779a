"""The fee ledger of copy trading: monthly fees and high-water-mark performance fees, accrued per
subscription and calendar month (UTC) into ``FeeEntry`` rows, UNIQUE(subscription, kind,
period_start), so running the accrual twice (a redelivered task, two beat processes) adds nothing.

When fees accrue (``fees_accrue``, run daily by beat as the task of the same name):

- Monthly fee, in arrears, for every *completed* calendar month in which the subscription was
  live (started before the month ended, not ended before it began), *prorated by calendar
  day*: ``monthly_fee x days live in the month / days in the month``, where a day counts when
  the subscription was live at any time during it (joining on the 20th of a 30-day month
  pays 11/30; a whole month pays the whole fee). Paused subscriptions pay (the follower keeps
  the seat; pausing is their choice); a subscription that is *stopped* (its maximum loss was
  hit, its key revoked) when the accrual runs pays nothing for that month: the platform keeps
  no history of when it stopped, and charging for copying that did not happen is worse than
  missing part of a month.
- Performance fee, for the most recently completed month only: ``performance_fee_pct % x
  (copy-book equity - high-water mark)`` when the equity is above the mark, after which the
  mark rises to the equity; otherwise nothing is charged and the mark stays. The mark starts at
  the allocation. The equity is the copy book's (``Subscription.deployment``) at the time the
  accrual runs, normally minutes after the month closed (beat runs it daily at 00:05 UTC): a
  month whose run was missed is not reconstructed; the next month's run charges the gain over
  the mark then, so a missed run defers the fee and never charges a gain twice. One row is
  written per period *also when no fee is due* (amount 0, with the equity and the mark): the
  period is then settled, and a second run later in the month cannot charge a gain made after
  the month ended.

The terms are the subscription's own (``Subscription.monthly_fee`` / ``performance_fee_pct``,
copied from the listing when the follower subscribed): a leader's later change of terms applies
to new subscribers only. Nothing accrues while the listing is suspended or rejected.

Amounts are Decimal quantized to 10 places (``MONEY_PLACES``, the ledger's precision), rounded
half-even. ``fee_split`` divides a fee into the leader's and the platform's share
(``settings.MARKETPLACE_PLATFORM_FEE_SHARE``, default 0.2): the platform's part is rounded, the
leader gets the rest, so the two always sum to the fee exactly.

Payment collection is out of scope: ``PaymentProvider`` is the interface a payment integration
implements (``collect(entry) -> CollectionResult``); the default ``NullPaymentProvider`` collects
nothing and leaves every entry accrued. ``fee_collect`` asks the configured provider
(``settings.MARKETPLACE_PAYMENT_PROVIDER``, a dotted path; unset = the null provider) and marks
an entry collected only when the provider says so. Operators can waive an accrued entry with a
note (``fee_waive``, from the admin).
"""

import calendar
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.audit.services import audit_record
from apps.common.errors import Conflict, ValidationFailed
from apps.marketplace.models import FeeEntry, Listing, Subscription

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
MONEY_PLACES = Decimal("0.0000000001")
DEFAULT_PLATFORM_SHARE = Decimal("0.2")
# Statuses whose amounts count as owed or paid (earnings, statement totals); waived ones do not.
COUNTED = (FeeEntry.Status.ACCRUED, FeeEntry.Status.COLLECTED)


def money(value: Decimal) -> Decimal:
    """``value`` at the ledger's precision (10 places), half-even."""
    return value.quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN)


# --- months ---------------------------------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def next_month(first: date) -> date:
    return (month_end(first) + timedelta(days=1)).replace(day=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def completed_months(*, since: datetime, now: datetime) -> Iterator[date]:
    """First days of the calendar months (UTC) from ``since``'s month up to the last month that
    ended before ``now``."""
    current = month_start(since.astimezone(UTC).date())
    this_month = month_start(now.astimezone(UTC).date())
    while current < this_month:
        yield current
        current = next_month(current)


def live_days(*, subscription: Subscription, period_start: date) -> int:
    """Calendar days of the month starting ``period_start`` during which the subscription was
    live at any time (0 when it was not live in that month)."""
    period_end = month_end(period_start)
    first = max(period_start, subscription.started_at.astimezone(UTC).date())
    last = period_end
    if subscription.ended_at is not None:
        last = min(period_end, subscription.ended_at.astimezone(UTC).date())
    return max(0, (last - first).days + 1)


# --- amounts --------------------------------------------------------------------------------------


def monthly_fee_amount(*, monthly_fee: Decimal, days: int, days_in_month: int) -> Decimal:
    """The prorated monthly fee: ``monthly_fee x days / days_in_month`` at 10 places."""
    if days <= 0 or monthly_fee <= 0:
        return ZERO
    if days >= days_in_month:
        return money(monthly_fee)
    return money(monthly_fee * Decimal(days) / Decimal(days_in_month))


def performance_fee_amount(*, pct: Decimal, equity: Decimal, high_water_mark: Decimal) -> Decimal:
    """``pct`` % of the equity above the mark (0 when the equity is not above it)."""
    if pct <= 0 or equity <= high_water_mark:
        return ZERO
    return money(pct / HUNDRED * (equity - high_water_mark))


def platform_share() -> Decimal:
    share = Decimal(str(getattr(settings, "MARKETPLACE_PLATFORM_FEE_SHARE", DEFAULT_PLATFORM_SHARE)))
    if not ZERO <= share <= 1:
        raise ValueError(f"MARKETPLACE_PLATFORM_FEE_SHARE must be between 0 and 1, not {share}")
    return share


def fee_split(amount: Decimal, *, share: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """(leader's share, platform's share) of a fee. The platform's share is rounded to 10 places
    and the leader's is the rest, so ``leader + platform == amount`` exactly for any amount at
    the ledger's precision."""
    share = platform_share() if share is None else share
    platform = money(amount * share)
    return amount - platform, platform


# --- accrual --------------------------------------------------------------------------------------


def copy_book_equity(*, subscription: Subscription) -> Decimal:
    """The copy book's equity now: capital + its ledger + its open positions at the newest
    prices (``apps.trades.services.positions.deployment_pnl_summary``)."""
    from apps.trades.services.positions import deployment_pnl_summary

    return Decimal(deployment_pnl_summary(deployment=subscription.deployment)["equity"])


def _lock(subscription_id: int) -> Subscription:
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("listing", "deployment")
        .get(pk=subscription_id)
    )


def _charging(listing: Listing) -> bool:
    """Fees accrue while the listing is approved (or back in review after a change of its
    terms); a suspended or rejected listing charges nothing."""
    return listing.status in (Listing.Status.APPROVED, Listing.Status.PENDING)


@transaction.atomic
def fee_accrue_monthly(*, subscription: Subscription, period_start: date) -> FeeEntry | None:
    """Accrue the monthly fee of one completed month (idempotent: an existing entry for the
    period is returned unchanged). None when the listing has no monthly fee or the subscription
    was not live (or is stopped) in that month."""
    subscription = _lock(subscription.pk)
    existing = FeeEntry.objects.filter(
        subscription=subscription, kind=FeeEntry.Kind.MONTHLY, period_start=period_start
    ).first()
    if existing is not None:
        return existing
    listing = subscription.listing
    if subscription.monthly_fee <= 0 or subscription.status == Subscription.Status.STOPPED or not _charging(listing):
        return None
    days = live_days(subscription=subscription, period_start=period_start)
    period_end = month_end(period_start)
    amount = monthly_fee_amount(monthly_fee=subscription.monthly_fee, days=days, days_in_month=period_end.day)
    if amount <= 0:
        return None
    memo = "" if days >= period_end.day else f"{days} of {period_end.day} days"
    entry = FeeEntry(
        subscription=subscription,
        kind=FeeEntry.Kind.MONTHLY,
        period_start=period_start,
        period_end=period_end,
        amount=amount,
        currency=listing.currency,
        memo=memo,
    )
    entry.full_clean()
    entry.save()
    audit_record(action="marketplace.fee_accrued", user=subscription.follower, target=entry)
    return entry


@transaction.atomic
def fee_accrue_performance(
    *, subscription: Subscription, period_start: date, equity: Decimal | None = None
) -> FeeEntry | None:
    """Settle the performance fee of one completed month against the high-water mark
    (idempotent per period). ``equity`` defaults to the copy book's equity now. Writes an entry
    (amount 0 when the equity is not above the mark) and raises the mark when a fee is due.
    None when the listing charges no performance fee or the subscription was not live then."""
    subscription = _lock(subscription.pk)
    existing = FeeEntry.objects.filter(
        subscription=subscription, kind=FeeEntry.Kind.PERFORMANCE, period_start=period_start
    ).first()
    if existing is not None:
        return existing
    listing = subscription.listing
    if (
        subscription.performance_fee_pct <= 0
        or not _charging(listing)
        or live_days(subscription=subscription, period_start=period_start) == 0
    ):
        return None
    if equity is None:
        equity = copy_book_equity(subscription=subscription)
    equity = money(equity)
    mark = subscription.high_water_mark if subscription.high_water_mark is not None else subscription.allocation
    amount = performance_fee_amount(pct=subscription.performance_fee_pct, equity=equity, high_water_mark=mark)
    mark_after = equity if equity > mark else mark
    entry = FeeEntry(
        subscription=subscription,
        kind=FeeEntry.Kind.PERFORMANCE,
        period_start=period_start,
        period_end=month_end(period_start),
        amount=amount,
        currency=listing.currency,
        equity=equity,
        high_water_mark_before=mark,
        high_water_mark_after=mark_after,
        memo="" if amount > 0 else "No new equity high: no fee.",
    )
    entry.full_clean()
    entry.save()
    if mark_after != subscription.high_water_mark:
        subscription.high_water_mark = mark_after
        subscription.save(update_fields=["high_water_mark", "updated_at"])
    audit_record(
        action="marketplace.fee_accrued",
        user=subscription.follower,
        target=entry,
        details={"equity": str(equity), "high_water_mark": str(mark), "amount": str(amount)},
    )
    return entry


def fees_accrue_for_subscription(*, subscription: Subscription, now: datetime | None = None) -> list[FeeEntry]:
    """Every fee now due for one subscription (see the module docstring); entries already in the
    ledger are not written again. Returns the monthly entries written by this call and the last
    month's performance entry (new or already there)."""
    now = now or timezone.now()
    months = list(completed_months(since=subscription.started_at, now=now))
    entries: list[FeeEntry] = []
    if subscription.monthly_fee > 0:
        done = set(
            FeeEntry.objects.filter(subscription=subscription, kind=FeeEntry.Kind.MONTHLY).values_list(
                "period_start", flat=True
            )
        )
        for first in months:
            if first not in done and live_days(subscription=subscription, period_start=first) > 0:
                monthly = fee_accrue_monthly(subscription=subscription, period_start=first)
                if monthly is not None:
                    entries.append(monthly)
    if months and subscription.performance_fee_pct > 0:
        performance = fee_accrue_performance(subscription=subscription, period_start=months[-1])
        if performance is not None:
            entries.append(performance)
    return entries


def fees_accrue(*, now: datetime | None = None) -> dict[str, int]:
    """Accrue the fees of every paying subscription live during the last completed month or
    later (the daily beat task). One subscription's failure is logged and skips only it."""
    now = now or timezone.now()
    last_month = month_start((now.astimezone(UTC) - timedelta(days=now.astimezone(UTC).day)).date())
    candidates = (
        Subscription.objects.filter(started_at__lt=_midnight(month_start(now.astimezone(UTC).date())))
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=_midnight(last_month)))
        .filter(Q(monthly_fee__gt=0) | Q(performance_fee_pct__gt=0))
        .select_related("listing", "deployment", "follower")
        .order_by("pk")
    )
    before = FeeEntry.objects.count()
    seen = failed = 0
    for subscription in candidates.iterator(chunk_size=500):
        seen += 1
        try:
            fees_accrue_for_subscription(subscription=subscription, now=now)
        except Exception:
            failed += 1
            logger.exception("accruing the fees of subscription %s failed", subscription.pk)
    return {"subscriptions": seen, "entries": FeeEntry.objects.count() - before, "failed": failed}


# --- collection and waivers -----------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionResult:
    """What a payment provider did with one entry: ``collected`` True once the money moved;
    ``reference`` is the provider's id of the payment; ``message`` says why not."""

    collected: bool
    reference: str = ""
    message: str = ""


class PaymentProvider(Protocol):
    """The interface a payment integration implements. Payment collection itself is out of
    scope of the platform: no provider ships with it."""

    def collect(self, entry: FeeEntry) -> CollectionResult: ...


class NullPaymentProvider:
    """The default: collects nothing, so every entry stays accrued (an IOU in the ledger)."""

    def collect(self, entry: FeeEntry) -> CollectionResult:
        return CollectionResult(collected=False, message="No payment provider is configured.")


def payment_provider() -> PaymentProvider:
    path = getattr(settings, "MARKETPLACE_PAYMENT_PROVIDER", "")
    if not path:
        return NullPaymentProvider()
    provider: PaymentProvider = import_string(path)()
    return provider


def fee_collect(*, entry: FeeEntry, provider: PaymentProvider | None = None) -> CollectionResult:
    """Ask the payment provider to collect an accrued entry; mark it collected when it did.
    The provider is called outside any transaction (it may be a network call); the status
    change is a conditional UPDATE, so a concurrent waiver or collection wins cleanly."""
    if entry.status != FeeEntry.Status.ACCRUED or entry.amount <= 0:
        return CollectionResult(collected=False, message=f"Entry is {entry.status}: nothing to collect.")
    result = (provider or payment_provider()).collect(entry)
    if result.collected:
        with transaction.atomic():
            changed = FeeEntry.objects.filter(pk=entry.pk, status=FeeEntry.Status.ACCRUED).update(
                status=FeeEntry.Status.COLLECTED, memo=(result.reference or entry.memo)[:200]
            )
            if changed:
                audit_record(action="marketplace.fee_collected", target=entry, details={"reference": result.reference})
    return result


@transaction.atomic
def fee_waive(*, entry: FeeEntry, actor: Any, note: str) -> FeeEntry:
    """Waive an accrued entry (an operator's decision): it no longer counts as owed or earned.
    The note is kept on the entry and in the audit trail."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("Say why the fee is waived.", extra={"field": "note", "fields": {"note": ["Required."]}})
    entry = FeeEntry.objects.select_for_update().get(pk=entry.pk)
    if entry.status != FeeEntry.Status.ACCRUED:
        raise Conflict(f"Only an accrued fee can be waived; this one is {entry.get_status_display().lower()}.")
    entry.status = FeeEntry.Status.WAIVED
    entry.memo = f"Waived: {note}"[:200]
    entry.save(update_fields=["status", "memo"])
    audit_record(action="marketplace.fee_waived", actor=actor, target=entry, details={"note": note})
    return entry
