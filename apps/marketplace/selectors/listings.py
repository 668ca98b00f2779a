"""Reads of listings and reviews, with the marketplace's visibility rules:

- The marketplace (`listing_list_public`) holds approved listings only.
- "My listings" (`listing_list_for_owner`) holds the user's own, in any state.
- One listing (`listing_get_for_user`): approved ones for everyone signed in; any other state
  only for its owner and staff (NotFound for anyone else, as if it did not exist).
- Writes by the owner find the listing with `listing_get_owned` (NotFound for anyone else).
- Recent trades of the leader are delayed by ``trade_delay_minutes`` for everyone but the
  owner and the listing's subscribers (any subscription still open: active, paused, stopped).
- Leaders never see followers' identities here: only counts and sums.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, F, Q, QuerySet
from django.utils import timezone

from apps.common.errors import NotFound
from apps.marketplace.models import Listing, Review, Subscription
from apps.users.models import User

SORTS: dict[str, list[Any]] = {
    "return": [F("stats_return").desc(nulls_last=True), "-pk"],
    "drawdown": [F("stats_max_drawdown").asc(nulls_last=True), "-pk"],
    "sharpe": [F("stats_sharpe").desc(nulls_last=True), "-pk"],
    "followers": ["-stats_followers", "-pk"],
    "age": [F("stats_since").asc(nulls_last=True), "-pk"],
    "newest": ["-approved_at", "-pk"],
}
DEFAULT_SORT = "return"
RECENT_TRADES = 50


def _with_rating(queryset: QuerySet[Listing]) -> QuerySet[Listing]:
    shown = Q(reviews__is_hidden=False)
    return queryset.annotate(
        rating_avg=Avg("reviews__rating", filter=shown), rating_count=Count("reviews", filter=shown)
    )


def listing_list_public(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Listing]:
    """Approved listings, searched, filtered and sorted. ``filters``: q (title, description,
    tags), asset_class, risk_level, pricing ("free" | "paid"), live_only (bool), sort (one of
    SORTS)."""
    filters = filters or {}
    queryset = Listing.objects.filter(status=Listing.Status.APPROVED).select_related("deployment", "owner")
    q = str(filters.get("q") or "").strip()
    if q:
        queryset = queryset.filter(Q(title__icontains=q) | Q(description__icontains=q) | Q(tags__icontains=q.lower()))
    if filters.get("asset_class"):
        queryset = queryset.filter(asset_class=filters["asset_class"])
    if filters.get("risk_level"):
        queryset = queryset.filter(risk_level=filters["risk_level"])
    pricing = filters.get("pricing")
    if pricing == "free":
        queryset = queryset.filter(monthly_fee=0, performance_fee_pct=0)
    elif pricing == "paid":
        queryset = queryset.filter(Q(monthly_fee__gt=0) | Q(performance_fee_pct__gt=0))
    if filters.get("live_only"):
        queryset = queryset.filter(is_live=True)
    sort = filters.get("sort") or DEFAULT_SORT
    return _with_rating(queryset).order_by(*SORTS.get(sort, SORTS[DEFAULT_SORT]))


def listing_list_for_owner(*, user: User) -> QuerySet[Listing]:
    """The user's own listings in every state, newest first."""
    return _with_rating(Listing.objects.filter(owner=user).select_related("deployment", "owner")).order_by(
        "-created_at", "-pk"
    )


def _visible(user: Any) -> Q:
    if getattr(user, "is_staff", False):
        return Q()
    visible = Q(status=Listing.Status.APPROVED)
    if getattr(user, "is_authenticated", False):
        visible |= Q(owner=user)
    return visible


def listing_get_for_user(*, user: Any, listing_id: int) -> Listing:
    """One listing as ``user`` may see it (see the module docstring); NotFound otherwise."""
    listing = (
        _with_rating(Listing.objects.filter(_visible(user), pk=listing_id))
        .select_related("deployment__account", "owner")
        .first()
    )
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def listing_get_owned(*, user: User, listing_id: int) -> Listing:
    """The user's own listing (to edit or submit); NotFound for a missing one or another user's."""
    listing = Listing.objects.filter(owner=user, pk=listing_id).select_related("deployment__account", "owner").first()
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def listing_is_subscriber(*, user: Any, listing: Listing) -> bool:
    """Does ``user`` hold an open subscription (active, paused or stopped) to the listing?"""
    if not getattr(user, "is_authenticated", False):
        return False
    return Subscription.objects.filter(listing=listing, follower=user, status__in=Subscription.LIVE_STATUSES).exists()


def listing_trade_delay_for(*, user: Any, listing: Listing) -> timedelta:
    """How far behind real time ``user`` sees the leader's trades."""
    if getattr(user, "pk", None) == listing.owner_id or listing_is_subscriber(user=user, listing=listing):
        return timedelta(0)
    return timedelta(minutes=listing.trade_delay_minutes)


def listing_recent_trades(*, user: Any, listing: Listing, limit: int = RECENT_TRADES) -> list[dict[str, Any]]:
    """The leader deployment's newest fills as ``user`` may see them: side, symbol, quantity,
    price, time; only fills older than the delay that applies to ``user``."""
    from apps.trades.models import Fill

    delay = listing_trade_delay_for(user=user, listing=listing)
    rows = (
        Fill.objects.filter(deployment_id=listing.deployment_id, filled_at__lte=timezone.now() - delay)
        .order_by("-filled_at", "-id")
        .values("id", "side", "quantity", "price", "filled_at", "instrument__symbol")[: max(1, min(limit, 200))]
    )
    return [
        {
            "id": row["id"],
            "side": row["side"],
            "symbol": row["instrument__symbol"],
            "quantity": row["quantity"],
            "price": row["price"],
            "filled_at": row["filled_at"],
        }
        for row in rows
    ]


def listing_track_record(*, listing: Listing) -> dict[str, Any]:
    """The verified track record (equity curve and numbers) as the page and the API show it,
    plus followers and capital following."""
    from apps.marketplace.services.track_record import listing_followers, track_record_compute

    record = track_record_compute(deployment=listing.deployment).as_dict()
    followers, capital = listing_followers(listing_id=listing.pk)
    return {**record, "followers": followers, "capital_following": capital, "currency": listing.currency}


def listing_backtests(*, listing: Listing, limit: int = 3) -> list[Any]:
    """The owner's finished backtests of the same strategy and params on one of the deployment's
    instruments and timeframe (hypothetical results, shown apart from the verified record)."""
    from apps.backtests.models import Backtest, JobStatus

    deployment = listing.deployment
    candidates = (
        Backtest.objects.filter(
            owner_id=listing.owner_id,
            strategy_key=deployment.strategy_key,
            timeframe=deployment.timeframe,
            instrument__in=deployment.instruments.all(),
            status=JobStatus.SUCCEEDED,
            is_lookahead_biased=False,
        )
        .select_related("instrument")
        .order_by("-created_at")[:50]
    )
    same = [
        b
        for b in candidates
        if (b.params or {}) == (deployment.params or {}) and (b.rules or None) == (deployment.rules or None)
    ]
    return same[:limit]


def review_list_for_listing(*, listing: Listing) -> QuerySet[Review]:
    """Shown reviews of a listing (hidden ones are not), newest first."""
    return (
        Review.objects.filter(listing=listing, is_hidden=False).select_related("author").order_by("-updated_at", "-pk")
    )


def review_get_own(*, user: Any, listing: Listing) -> Review | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Review.objects.filter(listing=listing, author=user).first()
