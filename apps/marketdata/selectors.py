"""Reads of the market-data app that leave it: instruments, their stored series, and candle
windows for charts.

Instruments and candles are public market data: every signed-in user sees the same ones, so
nothing here is owner-scoped (the API still requires authentication).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from django.db.models import Prefetch, Q, QuerySet

from apps.marketdata import timeframes
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.storage import candles_frame


def _series_prefetch() -> Prefetch:
    return Prefetch("series", queryset=CandleSeries.objects.filter(count__gt=0))


def instrument_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Instrument]:
    """Active instruments (all with `include_inactive`), by venue and symbol, with their stored
    series prefetched. Filters: venue (exact), asset_class (exact), search (in symbol, base,
    quote or venue)."""
    filters = filters or {}
    qs = Instrument.objects.all().prefetch_related(_series_prefetch()).order_by("venue", "symbol")
    if not filters.get("include_inactive"):
        qs = qs.filter(is_active=True)
    if venue := (filters.get("venue") or "").strip().lower():
        qs = qs.filter(venue=venue)
    if asset_class := (filters.get("asset_class") or "").strip().lower():
        qs = qs.filter(asset_class=asset_class)
    if search := (filters.get("search") or "").strip():
        qs = qs.filter(
            Q(symbol__icontains=search) | Q(base__iexact=search) | Q(quote__iexact=search) | Q(venue__iexact=search)
        )
    return qs


def instrument_get(*, instrument_id: int) -> Instrument | None:
    return Instrument.objects.prefetch_related(_series_prefetch()).filter(pk=instrument_id).first()


def venue_list() -> list[str]:
    return list(Instrument.objects.filter(is_active=True).values_list("venue", flat=True).distinct().order_by("venue"))


def series_list_for_instrument(*, instrument: Instrument) -> list[CandleSeries]:
    """The instrument's non-empty series, shortest timeframe first (uses a prefetch if present)."""
    series = [s for s in instrument.series.all() if s.count > 0]
    return sorted(series, key=lambda s: timeframes.TIMEFRAMES.get(s.timeframe, 0))


def stored_timeframes(*, instrument: Instrument) -> list[str]:
    return [s.timeframe for s in series_list_for_instrument(instrument=instrument)]


def default_timeframe(*, instrument: Instrument) -> str | None:
    """What a chart opens on: 1h when stored, else the shortest timeframe of at least 1h, else
    the longest stored."""
    stored = stored_timeframes(instrument=instrument)
    if not stored:
        return None
    if "1h" in stored:
        return "1h"
    hourly_or_more = [tf for tf in stored if timeframes.seconds(tf) >= 3600]
    return hourly_or_more[0] if hourly_or_more else stored[-1]


@dataclass(frozen=True)
class CandleWindow:
    """`frame` holds `warmup` bars (as many as exist) followed by the `shown` bars asked for."""

    frame: pd.DataFrame
    shown: int
    has_older: bool
    has_newer: bool

    @property
    def window(self) -> pd.DataFrame:
        return self.frame.iloc[len(self.frame) - self.shown :]


def _exists(instrument_id: int, timeframe: str, **where: datetime) -> bool:
    return Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe, **where).exists()


def candle_window(
    *,
    instrument: Instrument,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int,
    warmup: int = 0,
) -> CandleWindow:
    """Bars with open time in [start, end): the oldest `limit` from `start`, or without `start`
    the newest `limit` before `end`; plus up to `warmup` bars before them for indicators."""
    pk = int(instrument.pk)
    if start is None:
        frame = candles_frame(pk, timeframe, end=end, limit=limit + warmup)
        shown = min(limit, len(frame))
        has_newer = end is not None and _exists(pk, timeframe, ts__gte=end)
    else:
        ahead = candles_frame(pk, timeframe, start, end, limit=limit + 1)
        has_newer = len(ahead) > limit or (end is not None and _exists(pk, timeframe, ts__gte=end))
        window = ahead.iloc[:limit]
        before = candles_frame(pk, timeframe, end=start, limit=warmup) if warmup else window.iloc[:0]
        frame = pd.concat([before, window]) if len(before) else window
        shown = len(window)
    first_shown = frame.index[len(frame) - shown] if shown else None
    has_older = first_shown is not None and _exists(pk, timeframe, ts__lt=first_shown.to_pydatetime())
    return CandleWindow(frame=frame, shown=shown, has_older=has_older, has_newer=has_newer)


def structure_window(*, instrument: Instrument, timeframe: str, at: datetime | None, bars: int) -> pd.DataFrame:
    """The `bars` bars ending with the bar that opens at or before `at` (the newest without it)."""
    # At or after the last representable instant means "the newest bar".
    end = at + timedelta(microseconds=1) if at is not None and at < datetime.max.replace(tzinfo=at.tzinfo) else None
    return candles_frame(int(instrument.pk), timeframe, end=end, limit=bars)
