"""Reads of copy trading, owner-scoped here and nowhere else:

- a follower sees their own subscriptions, their copies, fees and copy book (another user's
  subscription is NotFound, never PermissionRefused: its existence is not revealed);
- a leader sees, for their own listings only, aggregate figures of the followers and a
  followers table in which a follower's identity (email, name) appears only when that follower
  allowed it (``Subscription.show_identity``); otherwise the row is "Follower #<n>", n being the
  follower's place in the order they joined the listing.

Aggregates over many copy books are computed in a few SQL queries (positions summed per
deployment and instrument, marked at each instrument's newest price), not one summary per
follower.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from apps.common.errors import NotFound
from apps.marketplace.models import CopyTrade, FeeEntry, Listing, Subscription
from apps.marketplace.services.events import copy_slippage_bps
from apps.marketplace.services.fees import COUNTED, fee_split

ZERO = Decimal(0)
OPEN_SEATS = (Subscription.Status.ACTIVE, Subscription.Status.PAUSED)


# --- the follower's side --------------------------------------------------------------------------


def subscription_list_for_user(*, user: Any, filters: Mapping[str, Any] | None = None) -> QuerySet[Subscription]:
    """The user's subscriptions (as follower), newest first; ``filters``: status, listing (id),
    account (id)."""
    queryset = (
        Subscription.objects.filter(follower=user)
        .select_related("listing", "listing__owner", "account", "deployment")
        .order_by("-created_at", "-pk")
    )
    filters = filters or {}
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("listing"):
        queryset = queryset.filter(listing_id=filters["listing"])
    if filters.get("account"):
        queryset = queryset.filter(account_id=filters["account"])
    return queryset


def subscription_get_for_user(*, user: Any, subscription_id: Any) -> Subscription:
    """One of the user's subscriptions; NotFound for a missing one or another user's."""
    try:
        pk = int(subscription_id)
    except (TypeError, ValueError):
        raise NotFound("No such subscription.") from None
    subscription = subscription_list_for_user(user=user).filter(pk=pk).first()
    if subscription is None:
        raise NotFound("No such subscription.")
    return subscription


def subscription_open_for_listing(*, user: Any, listing: Listing) -> Subscription | None:
    """The user's subscription to the listing that has not ended, if any."""
    return subscription_list_for_user(user=user).filter(listing=listing).exclude(status="ended").first()


def listing_get_for_subscribe(*, user: Any, listing_id: Any) -> Listing:
    """The listing a user asks to subscribe to: an approved or suspended one (public once; the
    subscription service refuses a suspended one with its reason), or the user's own in any
    state (refused as their own). Anyone else's draft, pending or rejected listing is NotFound:
    its title and terms are not public."""
    try:
        pk = int(listing_id)
    except (TypeError, ValueError):
        raise NotFound("No such listing.") from None
    listing = (
        Listing.objects.filter(pk=pk)
        .filter(Q(status__in=(Listing.Status.APPROVED, Listing.Status.SUSPENDED)) | Q(owner=user))
        .select_related("owner", "deployment")
        .first()
    )
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def subscription_copies(*, subscription: Subscription) -> QuerySet[CopyTrade]:
    """The subscription's copied trades, newest first, with the leader's fill and the follower's
    order (call with a subscription from ``subscription_get_for_user``)."""
    return (
        CopyTrade.objects.filter(subscription=subscription)
        .select_related("leader_fill", "order")
        .order_by("-created_at", "-pk")
    )


@dataclass(frozen=True)
class CopyRow:
    """One row of the copied-trades table: the leader's fill beside the follower's order."""

    copy: CopyTrade
    symbol: str
    leader_filled_at: Any
    order_status: str | None
    order_status_display: str
    filled_quantity: Decimal | None
    average_price: Decimal | None
    slippage_bps: Decimal | None

    @property
    def is_ordered(self) -> bool:
        return self.copy.status == CopyTrade.Status.ORDERED


def copy_rows(copies: Iterable[CopyTrade]) -> list[CopyRow]:
    rows = []
    for copy in copies:
        order = copy.order
        average = order.average_price if order is not None else None
        rows.append(
            CopyRow(
                copy=copy,
                symbol=order.symbol if order is not None else "",
                leader_filled_at=copy.leader_fill.filled_at,
                order_status=order.status if order is not None else None,
                order_status_display=order.get_status_display() if order is not None else "",
                filled_quantity=order.filled_quantity if order is not None else None,
                average_price=average,
                slippage_bps=copy_slippage_bps(side=copy.side, leader_price=copy.leader_price, follower_price=average),
            )
        )
    return rows


def subscription_pnl(*, subscription: Subscription) -> dict[str, Any]:
    """The copy book's P&L summary (equity, realised, unrealised, fees, net, fills)."""
    from apps.trades.services.positions import deployment_pnl_summary

    return deployment_pnl_summary(deployment=subscription.deployment)


def subscription_positions(*, subscription: Subscription) -> list[Any]:
    from apps.trades.models import Position

    return list(
        Position.objects.filter(deployment_id=subscription.deployment_id).exclude(quantity=0).order_by("symbol", "pk")
    )


def subscription_fills(*, subscription: Subscription, limit: int = 50) -> list[Any]:
    from apps.trades.models import Fill

    return list(Fill.objects.filter(deployment_id=subscription.deployment_id).order_by("-filled_at", "-pk")[:limit])


def subscription_fees(*, subscription: Subscription) -> QuerySet[FeeEntry]:
    return FeeEntry.objects.filter(subscription=subscription).order_by("-period_start", "kind", "-pk")


@dataclass
class FeeStatement:
    entries: list[FeeEntry]
    currency: str
    accrued: Decimal = ZERO
    collected: Decimal = ZERO
    waived: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """Owed or paid: accrued + collected (waived fees are not owed)."""
        return self.accrued + self.collected


def fee_statement(*, subscription: Subscription) -> FeeStatement:
    """The subscription's fee ledger and its totals by status."""
    entries = list(subscription_fees(subscription=subscription))
    statement = FeeStatement(entries=entries, currency=subscription.listing.currency)
    for entry in entries:
        setattr(statement, entry.status, getattr(statement, entry.status) + entry.amount)
    return statement


# --- the leader's side ----------------------------------------------------------------------------


def copy_books_pnl(*, deployment_ids: Iterable[int]) -> dict[int, Decimal]:
    """Net P&L (realised + unrealised - fees) of each copy book, in two queries plus one newest
    price per instrument held: the same figure as ``deployment_pnl_summary``'s ``net_pnl``."""
    from apps.trades.models import Position
    from apps.trades.services.positions import last_price

    ids = list(deployment_ids)
    result: dict[int, Decimal] = dict.fromkeys(ids, ZERO)
    if not ids:
        return result
    booked = (
        Position.objects.filter(deployment_id__in=ids)
        .values("deployment_id")
        .annotate(realized=Sum("realized_pnl"), fees=Sum("fees"))
        .order_by()
    )
    for row in booked:
        result[row["deployment_id"]] += (row["realized"] or ZERO) - (row["fees"] or ZERO)
    held = (
        Position.objects.filter(deployment_id__in=ids)
        .exclude(quantity=0)
        .values("deployment_id", "instrument_id")
        .annotate(held=Sum("quantity"), cost=Sum(F("quantity") * F("average_price")))
        .order_by()
    )
    marks: dict[int, Decimal | None] = {}
    for holding in held:
        instrument_id = holding["instrument_id"]
        if instrument_id not in marks:
            marks[instrument_id] = last_price(instrument_id=instrument_id)
        cost = holding["cost"] or ZERO
        mark = marks[instrument_id]
        if mark is not None:
            result[holding["deployment_id"]] += holding["held"] * mark - cost
    return result


def _fee_totals(subscriptions: QuerySet[Subscription]) -> dict[int, Decimal]:
    """Fees counted as earned (accrued + collected) per subscription."""
    rows = (
        FeeEntry.objects.filter(subscription__in=subscriptions, status__in=COUNTED)
        .values("subscription_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {row["subscription_id"]: row["total"] or ZERO for row in rows}


@dataclass
class LeaderListingSummary:
    listing: Listing
    followers: int = 0
    paused: int = 0
    capital: Decimal = ZERO
    followers_pnl: Decimal = ZERO
    fees_gross: Decimal = ZERO
    fees_leader: Decimal = ZERO
    fees_platform: Decimal = ZERO
    rows: list["FollowerRow"] = field(default_factory=list)


@dataclass(frozen=True)
class FollowerRow:
    number: int
    subscription_id: int
    display_name: str
    email: str | None
    status: str
    status_display: str
    allocation: Decimal
    pnl: Decimal
    fees: Decimal
    started_at: Any

    @property
    def identity_shown(self) -> bool:
        return self.email is not None


def leader_listing_list_for_user(*, user: Any) -> QuerySet[Listing]:
    """The user's own listings (as leader), newest first."""
    return Listing.objects.filter(owner=user).select_related("deployment").order_by("-created_at", "-pk")


def leader_listing_get_for_user(*, user: Any, listing_id: Any) -> Listing:
    """One of the user's own listings; NotFound for a missing one or another user's."""
    try:
        pk = int(listing_id)
    except (TypeError, ValueError):
        raise NotFound("No such listing.") from None
    listing = leader_listing_list_for_user(user=user).filter(pk=pk).first()
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def _follower_rows(listing: Listing, fees: Mapping[int, Decimal], pnl: Mapping[int, Decimal]) -> list[FollowerRow]:
    rows = []
    subscriptions = Subscription.objects.filter(listing=listing).select_related("follower").order_by("started_at", "pk")
    for number, subscription in enumerate(subscriptions, start=1):
        if subscription.show_identity:
            follower = subscription.follower
            display, email = (follower.display_name or follower.email), follower.email
        else:
            display, email = f"Follower #{number}", None
        rows.append(
            FollowerRow(
                number=number,
                subscription_id=subscription.pk,
                display_name=display,
                email=email,
                status=subscription.status,
                status_display=subscription.get_status_display(),
                allocation=subscription.allocation,
                pnl=pnl.get(subscription.deployment_id, ZERO),
                fees=fees.get(subscription.pk, ZERO),
                started_at=subscription.started_at,
            )
        )
    return rows


def leader_listing_summary(*, listing: Listing, with_rows: bool = True) -> LeaderListingSummary:
    """Followers of one listing (call with a listing from ``leader_listing_get_for_user``):
    followers copying (active), capital following (allocations of active and paused ones),
    the followers' aggregate copy-book P&L, fee earnings (accrued + collected; gross and the
    leader's share after the platform's), and the followers table (identities only where
    allowed). Ended subscriptions stay in the table and the P&L (their books are history)."""
    subscriptions = Subscription.objects.filter(listing=listing)
    counts = subscriptions.aggregate(
        active=Count("pk", filter=Q(status=Subscription.Status.ACTIVE)),
        paused=Count("pk", filter=Q(status=Subscription.Status.PAUSED)),
        capital=Sum("allocation", filter=Q(status__in=OPEN_SEATS)),
    )
    fees = _fee_totals(subscriptions)
    pnl = copy_books_pnl(deployment_ids=subscriptions.values_list("deployment_id", flat=True))
    gross = sum(fees.values(), ZERO)
    leader_share, platform = fee_split(gross)
    summary = LeaderListingSummary(
        listing=listing,
        followers=counts["active"] or 0,
        paused=counts["paused"] or 0,
        capital=counts["capital"] or ZERO,
        followers_pnl=sum(pnl.values(), ZERO),
        fees_gross=gross,
        fees_leader=leader_share,
        fees_platform=platform,
    )
    if with_rows:
        summary.rows = _follower_rows(listing, fees, pnl)
    return summary


def leader_dashboard(*, user: Any) -> list[LeaderListingSummary]:
    """A summary with the followers table of each of the user's listings."""
    return [leader_listing_summary(listing=listing) for listing in leader_listing_list_for_user(user=user)]
