"""The verified track record of a listing: computed only from the leader deployment's own Fill
rows and the stored candle closes, never from anything the leader types.

- Daily equity curve (UTC calendar days): the deployment's ``capital`` + the cash of every fill
  up to the end of the day (a buy pays quantity x price, a sell receives it, every fill pays its
  fee, counted in the quote currency) + each open position (signed quantity) marked at that day's
  close: the close of the last candle of the deployment's timeframe opening that day, carried
  forward over days without candles, or the last fill's price before any candle. The curve starts
  the day before the first fill at ``capital`` and ends on ``as_of``'s day (today by default).
- Total return = last equity / capital - 1. Maximum drawdown = the largest fall from a running
  peak of the curve, as a fraction (>= 0).
- Sharpe: the daily simple returns of the curve, mean / sample standard deviation (ddof 1) x
  sqrt(365) (calendar days: markets like crypto trade every day, and the curve has a point per
  day), no risk-free rate; none with fewer than two returns or no variation.
- Trades: closed round trips, i.e. the times an instrument's position went back to flat or
  flipped side. (The fills are counted separately.)
- Age: since the first fill. Followers: subscriptions copying now (status active); capital
  following: the sum of their allocations.
- Paper or live: the deployment's account (a paper account is paper, any other is live).

`listing_stats_refresh` writes the result into the listing's ``stats_*`` columns (so the
marketplace sorts and filters in SQL); it runs after a leader fill or a subscription change (the
task ``listing_stats_refresh``) and for every listing on the beat (``listings_stats_refresh_all``).
"""

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.marketplace.models import Listing, Subscription
from apps.strategies.models import Deployment

ZERO = Decimal(0)
TRADING_DAYS_PER_YEAR = 365
MAX_DAYS = 3660  # ten years of points at most


@dataclass(frozen=True)
class TrackRecord:
    is_live: bool
    capital: Decimal
    curve: list[tuple[date, float]] = field(default_factory=list)
    total_return: float | None = None
    max_drawdown: float | None = None
    sharpe: float | None = None
    trades: int = 0
    fills: int = 0
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "is_live": self.is_live,
            "label": "live" if self.is_live else "paper",
            "capital": self.capital,
            "total_return": self.total_return,
            "max_drawdown": self.max_drawdown,
            "sharpe": self.sharpe,
            "trades": self.trades,
            "fills": self.fills,
            "since": self.since,
            "curve": [{"t": _epoch(day), "equity": value} for day, value in self.curve],
        }


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time.min, tzinfo=UTC).timestamp())


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _daily_closes(instrument_id: int, timeframe: str, start: datetime, end: datetime) -> dict[date, float]:
    """The close of the last candle opening on each UTC day in [start, end)."""
    from apps.marketdata.storage import candles_frame

    frame = candles_frame(instrument_id, timeframe, start=start, end=end)
    if frame.empty:
        return {}
    closes = frame["close"].groupby(frame.index.date).last()
    return {day: float(value) for day, value in closes.items()}


def _sharpe(values: list[float]) -> float | None:
    returns = [b / a - 1.0 for a, b in itertools.pairwise(values) if a != 0]
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if variance <= 0:
        return None
    return mean / math.sqrt(variance) * math.sqrt(TRADING_DAYS_PER_YEAR)


def _max_drawdown(values: list[float]) -> float:
    peak = -math.inf
    worst = 0.0
    for value in values:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, 1.0 - value / peak)
    return worst


def track_record_compute(*, deployment: Deployment, as_of: datetime | None = None) -> TrackRecord:
    """The track record of ``deployment`` up to ``as_of`` (now by default); see the module
    docstring for every definition. Reads only; no lock."""
    from apps.trades.models import Fill

    as_of = as_of or timezone.now()
    is_live = deployment.account.kind != TradingAccount.Kind.PAPER
    capital = deployment.capital
    fills = list(
        Fill.objects.filter(deployment=deployment, filled_at__lte=as_of)
        .order_by("filled_at", "id")
        .values_list("instrument_id", "side", "quantity", "price", "fee", "filled_at")
    )
    if not fills:
        return TrackRecord(is_live=is_live, capital=capital)
    first_day = fills[0][5].astimezone(UTC).date()
    last_day = max(as_of.astimezone(UTC).date(), first_day)
    first_shown = last_day - timedelta(days=MAX_DAYS) if (last_day - first_day).days > MAX_DAYS else first_day
    start = datetime.combine(first_day, time.min, tzinfo=UTC)
    closes = {
        instrument_id: _daily_closes(instrument_id, deployment.timeframe, start, _day_end(last_day))
        for instrument_id in {row[0] for row in fills}
    }

    cash = capital
    positions: dict[int, Decimal] = defaultdict(lambda: ZERO)
    marks: dict[int, float] = {}
    round_trips = 0
    truncated = first_shown != first_day
    # A truncated curve starts with the equity of the day before its first day, else with capital.
    cutoff = first_shown - timedelta(days=1) if truncated else first_shown
    curve: list[tuple[date, float]] = [] if truncated else [(first_day - timedelta(days=1), float(capital))]
    index = 0
    day = first_day
    while day <= last_day:
        end = _day_end(day)
        while index < len(fills) and fills[index][5] < end:
            instrument_id, side, quantity, price, fee, _ = fills[index]
            signed = quantity if side == "buy" else -quantity
            before = positions[instrument_id]
            after = before + signed
            if before != 0 and (after == 0 or (after > 0) != (before > 0)):
                round_trips += 1
            positions[instrument_id] = after
            cash += -signed * price - fee
            marks[instrument_id] = float(price)
            index += 1
        for instrument_id in positions:
            close = closes.get(instrument_id, {}).get(day)
            if close is not None:
                marks[instrument_id] = close
        equity = float(cash) + sum(float(qty) * marks[i] for i, qty in positions.items() if qty != 0)
        if day >= cutoff:
            curve.append((day, equity))
        day += timedelta(days=1)

    values = [value for _, value in curve]
    return TrackRecord(
        is_live=is_live,
        capital=capital,
        curve=curve,
        total_return=values[-1] / float(capital) - 1.0 if capital else None,
        max_drawdown=_max_drawdown(values),
        sharpe=_sharpe(values),
        trades=round_trips,
        fills=len(fills),
        since=fills[0][5],
    )


def listing_followers(*, listing_id: int) -> tuple[int, Decimal]:
    """(followers copying now, the sum of their allocations)."""
    row = Subscription.objects.filter(listing_id=listing_id, status=Subscription.Status.ACTIVE).aggregate(
        n=Count("id"), capital=Sum("allocation")
    )
    return int(row["n"] or 0), row["capital"] or ZERO


def listing_stats_refresh(*, listing_id: int, as_of: datetime | None = None) -> Listing | None:
    """Recompute the listing's track record and write its ``stats_*`` columns (one UPDATE, so a
    concurrent edit of the listing's text is not overwritten). Safe to run twice; a listing
    deleted meanwhile is skipped (None)."""
    listing = Listing.objects.select_related("deployment__account").filter(pk=listing_id).first()
    if listing is None:
        return None
    record = track_record_compute(deployment=listing.deployment, as_of=as_of)
    followers, capital = listing_followers(listing_id=listing.pk)
    values = {
        "is_live": record.is_live,
        "stats_return": record.total_return,
        "stats_max_drawdown": record.max_drawdown,
        "stats_sharpe": record.sharpe,
        "stats_trades": record.trades,
        "stats_followers": followers,
        "stats_capital": capital,
        "stats_since": record.since,
        "stats_updated_at": timezone.now(),
    }
    Listing.objects.filter(pk=listing.pk).update(**values)
    for name, value in values.items():
        setattr(listing, name, value)
    return listing


def listings_stats_refresh_all() -> int:
    """Refresh every listing that is not a draft (drafts refresh when created and submitted);
    returns how many."""
    ids = list(Listing.objects.exclude(status=Listing.Status.DRAFT).values_list("pk", flat=True))
    for listing_id in ids:
        listing_stats_refresh(listing_id=listing_id)
    return len(ids)
