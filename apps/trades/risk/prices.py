"""Marks: the last known price of instruments, for exposure checks and unrealised P&L.

The mark is the close of the newest stored candle of any timeframe (found through
CandleSeries.last_ts, so no scan of the candle table); an instrument without candles has no
mark and callers fall back to the position's average price.
"""

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from apps.marketdata.models import Candle, CandleSeries


def last_prices(*, instrument_ids: Iterable[int]) -> dict[int, Decimal]:
    """{instrument id: the newest stored close} for the instruments that have candles."""
    ids = sorted(set(instrument_ids))
    if not ids:
        return {}
    newest: dict[int, tuple[str, Any]] = {}
    for instrument_id, timeframe, last_ts in (
        CandleSeries.objects.filter(instrument_id__in=ids, last_ts__isnull=False)
        .order_by("instrument_id", "-last_ts")
        .values_list("instrument_id", "timeframe", "last_ts")
    ):
        newest.setdefault(instrument_id, (timeframe, last_ts))
    out: dict[int, Decimal] = {}
    for instrument_id, (timeframe, last_ts) in newest.items():
        close = (
            Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe, ts__lte=last_ts)
            .order_by("-ts")
            .values_list("close", flat=True)
            .first()
        )
        if close is not None:
            out[instrument_id] = Decimal(repr(close))
    return out
