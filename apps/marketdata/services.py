"""Writes of the market-data app: instruments, imports, backfills, derived timeframes, the live
poll, and closed-candle events.

A newly closed bar is announced once, after commit (`candle_closed_announce`): the
`candle_closed` signal (strategy ticks) and a `candle` event to the `market.<id>.<tf>` group
(charts). Bars enter a series as "closed" through `candles_store_closed`, which holds the
series' row lock while it decides which bars are new, so two pollers (or a retried task)
never announce the same bar twice. Backfills and imports write history and announce nothing.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import Lead
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.services import audit_record
from apps.common.errors import ValidationFailed
from apps.marketdata import importers, timeframes
from apps.marketdata.feeds.errors import FeedError
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.signals import candle_closed
from apps.marketdata.storage import COLUMNS, candles_frame, candles_write

if TYPE_CHECKING:
    import ccxt

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


class CandleImportError(ValidationFailed):
    default_code = "invalid_candles"


@dataclass(frozen=True)
class ImportResult:
    instrument: Instrument
    timeframe: str
    rows: int
    written: int
    format: str
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def _base_quote(symbol: str) -> tuple[str, str]:
    if "/" in symbol:
        base, quote = symbol.split("/", 1)
        return base, quote.split(":")[0]
    return symbol, ""


@transaction.atomic
def instrument_get_or_create(
    *, venue: str, symbol: str, asset_class: str = Instrument.AssetClass.CRYPTO, **fields: object
) -> Instrument:
    venue = venue.strip().lower()
    symbol = symbol.strip().upper()
    if not venue or not symbol:
        raise ValidationFailed("Both a venue and a symbol are needed.")
    base, quote = _base_quote(symbol)
    instrument, created = Instrument.objects.get_or_create(
        venue=venue,
        symbol=symbol,
        defaults={"asset_class": asset_class, "base": base, "quote": quote, **fields},
    )
    if created:
        instrument.full_clean()
    return instrument


@dataclass(frozen=True)
class CandleFile:
    """A parsed and validated candle file, ready to write."""

    frame: pd.DataFrame
    format: str
    name: str


def candles_file_read(*, path: Path | str, timeframe: str) -> CandleFile:
    """Parse and validate a candle file without touching the database. Raises
    CandleImportError naming the line and the reason."""
    try:
        timeframes.seconds(timeframe)
        parsed = importers.read_file(path)
        frame = importers.validate(parsed, timeframe, name=Path(path).name)
    except (importers.ImportFileError, timeframes.UnknownTimeframe) as exc:
        raise CandleImportError(str(exc)) from exc
    return CandleFile(frame=frame, format=parsed.format, name=Path(path).name)


def candles_import_file(
    *,
    path: Path | str,
    instrument: Instrument,
    timeframe: str,
    progress: ProgressCallback | None = None,
    chunk_rows: int = 200_000,
    validated: CandleFile | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> ImportResult:
    """Import a candle file (see `importers` for formats) into one series.

    The whole file is parsed and validated first (or `validated`, from `candles_file_read`, is
    used); any problem raises CandleImportError naming the line, and nothing is written.
    Writing happens in one transaction (chunked, so progress can be shown). Re-importing the
    same file writes nothing. With an `actor` (an operator's upload) the import is audited as
    `candles.imported`.
    """
    parsed = validated or candles_file_read(path=path, timeframe=timeframe)
    frame = parsed.frame
    total = len(frame)
    written = 0
    first = frame.index[0] if total else None
    last = frame.index[-1] if total else None
    with transaction.atomic():
        for start in range(0, total, chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            written += candles_write(instrument=instrument, timeframe=timeframe, frame=chunk, source="import")
            if progress is not None:
                progress(min(start + chunk_rows, total), total)
        if actor is not None:
            audit_record(
                action="candles.imported",
                actor=actor,
                target=instrument,
                request=request,
                details={
                    "file": parsed.name,
                    "timeframe": timeframe,
                    "format": parsed.format,
                    "rows": total,
                    "written": written,
                    "first": first.isoformat() if first is not None else None,
                    "last": last.isoformat() if last is not None else None,
                },
            )
    result = ImportResult(
        instrument=instrument,
        timeframe=timeframe,
        rows=total,
        written=written,
        format=parsed.format,
        first=first,
        last=last,
    )
    return result


def candles_derive(
    *,
    instrument: Instrument,
    source: str,
    target: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> int:
    """Build `target` bars from stored `source` bars (complete bars only) and store them."""
    if not timeframes.can_derive(source, target):
        raise ValidationFailed(f"{target} bars cannot be built from {source} bars.")
    if start is not None:
        start = timeframes.floor(start.to_pydatetime(), target)
    frame = candles_frame(instrument, source, start, end)
    derived = timeframes.resample(frame, target, source=source)
    return candles_write(instrument=instrument, timeframe=target, frame=derived, source="derived")


# --- Exchange instruments and backfill ----------------------------------------------------------


def instrument_from_exchange(
    *,
    venue: str,
    symbol: str,
    asset_class: str = Instrument.AssetClass.CRYPTO,
    exchange: "ccxt.Exchange | None" = None,
    **fetch_options: Any,
) -> Instrument:
    """The instrument for `symbol` on the ccxt exchange `venue`, created from the venue's
    market description (base, quote, tick and lot size, minimum notional) if new.

    Asks the venue first, so an unknown exchange or symbol raises (UnknownExchange,
    UnknownSymbol, or a temporary FeedError) before anything is written. `fetch_options`
    (retries, backoff, sleep) go to `ccxt_feed.market_info`.
    """
    from apps.marketdata.feeds import ccxt_feed

    venue = venue.strip().lower()
    symbol = symbol.strip().upper()
    info = ccxt_feed.market_info(venue, symbol, exchange=exchange, **fetch_options)
    return instrument_get_or_create(
        venue=venue,
        symbol=symbol,
        asset_class=asset_class,
        base=info.base,
        quote=info.quote,
        tick_size=info.tick_size,
        lot_size=info.lot_size,
        min_notional=info.min_notional,
    )


@dataclass(frozen=True)
class BackfillResult:
    instrument: Instrument
    timeframe: str
    fetched: int
    written: int
    pages: int
    ranges: tuple[tuple[datetime, datetime | None], ...]
    first: datetime | None
    last: datetime | None


def _aware(value: datetime, name: str) -> datetime:
    if timezone.is_naive(value):
        raise ValidationFailed(f"{name} must be timezone-aware (UTC).")
    return value.astimezone(UTC)


# Holes inside the stored range that a backfill re-asks the venue about, at most. A hole is
# usually an interrupted earlier backfill; a venue's own outage costs one empty request.
MAX_BACKFILL_HOLES = 100


def _stored_holes(
    series: CandleSeries, timeframe: str, since: datetime, until: datetime | None
) -> list[tuple[datetime, datetime]]:
    """(first missing open time, next stored open time) for each hole between stored bars."""
    step = timeframes.delta(timeframe)
    bars = Candle.objects.filter(instrument_id=series.instrument_id, timeframe=timeframe, ts__gte=since)
    if until is not None:
        bars = bars.filter(ts__lt=until)
    rows = bars.annotate(next_ts=Window(Lead("ts"), order_by=F("ts").asc())).values_list("ts", "next_ts")
    holes = []
    for ts, next_ts in rows.iterator(chunk_size=10_000):
        if next_ts is not None and next_ts - ts > step:
            holes.append((ts + step, next_ts))
            if len(holes) == MAX_BACKFILL_HOLES:
                break
    return holes


def _backfill_ranges(
    series: CandleSeries | None, timeframe: str, since: datetime, until: datetime | None
) -> list[tuple[datetime, datetime | None]]:
    """What is missing from [since, until) given what is stored: history before the first
    stored bar, holes between stored bars (an earlier backfill that was interrupted), and
    everything after the last one (the resumption point)."""
    if series is None or not series.count or series.first_ts is None or series.last_ts is None:
        return [(since, until)]
    ranges: list[tuple[datetime, datetime | None]] = []
    if since < series.first_ts:
        ranges.append((since, series.first_ts if until is None else min(until, series.first_ts)))
    ranges.extend(_stored_holes(series, timeframe, since, until))
    resume = max(since, series.last_ts + timeframes.delta(timeframe))
    if until is None or resume < until:
        ranges.append((resume, until))
    return ranges


def candles_backfill(
    *,
    instrument: Instrument,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    exchange: "ccxt.Exchange | None" = None,
    on_page: Callable[[pd.DataFrame], None] | None = None,
    **fetch_options: Any,
) -> BackfillResult:
    """Fetch the closed bars in [since, until) from the instrument's venue (a ccxt exchange
    id) and store them, page by page.

    Resumable: only what the stored series lacks is fetched (before its first bar, and after
    its last one), and every page is written in its own transaction as it arrives, so an
    interruption keeps the pages before it and a second run continues from there. Raises a
    FeedError subclass (unknown exchange, symbol or timeframe; unreachable; rate-limited);
    a failure never touches what is stored. Call outside a transaction. Announces nothing:
    backfilled bars are history (`candles_poll` announces newly closed bars).
    """
    from apps.marketdata.feeds import ccxt_feed

    timeframes.seconds(timeframe)
    since = _aware(since, "since")
    until = _aware(until, "until") if until is not None else None
    if until is not None and until <= since:
        raise ValidationFailed("until must be later than since.")
    exchange = exchange or ccxt_feed.exchange_get(instrument.venue)
    series = CandleSeries.objects.filter(instrument=instrument, timeframe=timeframe).first()
    ranges = _backfill_ranges(series, timeframe, since, until)
    fetched = written = pages = 0
    first: datetime | None = None
    last: datetime | None = None
    for start, end in ranges:
        for page in ccxt_feed.iter_ohlcv_pages(
            instrument.venue, instrument.symbol, timeframe, start, end, exchange=exchange, **fetch_options
        ):
            written += candles_write(instrument=instrument, timeframe=timeframe, frame=page, source="backfill")
            fetched += len(page)
            pages += 1
            first = min(first, page.index[0].to_pydatetime()) if first else page.index[0].to_pydatetime()
            last = max(last, page.index[-1].to_pydatetime()) if last else page.index[-1].to_pydatetime()
            if on_page is not None:
                on_page(page)
    return BackfillResult(
        instrument=instrument,
        timeframe=timeframe,
        fetched=fetched,
        written=written,
        pages=pages,
        ranges=tuple(ranges),
        first=first,
        last=last,
    )


# --- Closed bars: store, derive, announce -------------------------------------------------------


@dataclass(frozen=True)
class ClosedBar:
    instrument_id: int
    timeframe: str
    ts: datetime
    values: dict[str, float]


def _bar_payload(instrument_id: int, timeframe: str, ts: datetime, values: Mapping[str, float]) -> dict[str, Any]:
    ts = ts.astimezone(UTC)
    return {
        **{c: float(values[c]) for c in COLUMNS},
        "t": int(ts.timestamp()),
        "instrument": instrument_id,
        "timeframe": timeframe,
        "ts": ts.isoformat().replace("+00:00", "Z"),
    }


def _bar_values(instrument_id: int, timeframe: str, ts: datetime) -> dict[str, float] | None:
    row = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe, ts=ts).values(*COLUMNS).first()
    return {c: float(row[c]) for c in COLUMNS} if row else None


def candle_closed_announce(
    *, instrument_id: int, timeframe: str, ts: datetime, bar: Mapping[str, float] | None = None
) -> None:
    """After commit: send `candle_closed(instrument_id, timeframe, ts)` and push the bar as a
    `candle` event to the `market.<instrument_id>.<timeframe>` group.

    `bar` (open, high, low, close, volume) saves a read; without it the stored bar is read
    after commit. A failing receiver is logged and does not keep the others or the push from
    running. Call once per newly closed bar (see `candles_store_closed`).
    """

    def send() -> None:
        from apps.common.broadcast import group_send

        values = dict(bar) if bar is not None else _bar_values(instrument_id, timeframe, ts)
        if values is None:
            return
        for receiver, result in candle_closed.send_robust(
            sender=Candle, instrument_id=instrument_id, timeframe=timeframe, ts=ts
        ):
            if isinstance(result, Exception):
                logger.error(
                    "candle_closed receiver %r failed", receiver, exc_info=(type(result), result, result.__traceback__)
                )
        group_send(f"market.{instrument_id}.{timeframe}", "candle", _bar_payload(instrument_id, timeframe, ts, values))

    transaction.on_commit(send)


def _series_lock(instrument_id: int, timeframe: str) -> CandleSeries:
    CandleSeries.objects.get_or_create(instrument_id=instrument_id, timeframe=timeframe)
    return CandleSeries.objects.select_for_update().get(instrument_id=instrument_id, timeframe=timeframe)


def _store_new(instrument_id: int, timeframe: str, frame: pd.DataFrame, source: str) -> list[ClosedBar]:
    """Write `frame`; return its bars newer than the series' last bar before the write.
    Holds the series' row lock until the transaction ends, so concurrent writers agree."""
    if frame.empty:
        return []
    last = _series_lock(instrument_id, timeframe).last_ts
    candles_write(instrument=instrument_id, timeframe=timeframe, frame=frame, source=source)
    new = frame if last is None else frame[frame.index > pd.Timestamp(last)]
    return [
        ClosedBar(instrument_id, timeframe, ts.to_pydatetime(), dict(zip(COLUMNS, map(float, row), strict=True)))
        for ts, row in zip(new.index, new[COLUMNS].to_numpy(), strict=True)
    ]


def _derive_stored(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> list[ClosedBar]:
    """Re-derive, along DERIVATION_CHAIN, every higher timeframe the instrument stores, over
    the span `frame` touched; each from the nearest stored timeframe below it."""
    chain = timeframes.DERIVATION_CHAIN
    if timeframe not in chain or frame.empty:
        return []
    stored = set(CandleSeries.objects.filter(instrument_id=instrument_id).values_list("timeframe", flat=True))
    source, start, end = timeframe, frame.index.min(), frame.index.max() + timeframes.delta(timeframe)
    closed: list[ClosedBar] = []
    for target in chain[chain.index(timeframe) + 1 :]:
        if target not in stored or not timeframes.can_derive(source, target):
            continue
        lower = candles_frame(instrument_id, source, timeframes.floor(start.to_pydatetime(), target), end)
        derived = timeframes.resample(lower, target, source=source)
        if derived.empty:
            break
        closed += _store_new(instrument_id, target, derived, "derived")
        source, start, end = target, derived.index.min(), derived.index.max() + timeframes.delta(target)
    return closed


@transaction.atomic
def candles_store_closed(
    *, instrument: Instrument | int, timeframe: str, frame: pd.DataFrame, source: str = ""
) -> list[ClosedBar]:
    """Store newly closed bars of a series, derive the higher timeframes stored for the
    instrument, and announce (after commit) every bar newer than what its series held.

    Idempotent: storing the same bars again announces nothing, because a bar is new only when
    it is later than the series' last bar, read under the series' row lock. Returns the bars
    announced, lowest timeframe first.
    """
    instrument_id = instrument if isinstance(instrument, int) else int(instrument.pk)
    timeframes.seconds(timeframe)
    closed = _store_new(instrument_id, timeframe, frame, source)
    closed += _derive_stored(instrument_id, timeframe, frame)
    for bar in closed:
        candle_closed_announce(instrument_id=bar.instrument_id, timeframe=bar.timeframe, ts=bar.ts, bar=bar.values)
    return closed


# --- The live poll ------------------------------------------------------------------------------

# Bars a live series that holds nothing yet starts from: the newest closed ones. A deployment
# backfills its warm-up history with `candles_backfill` (which announces nothing) first.
POLL_START_BARS = 2


def live_series_ids() -> list[int]:
    live = CandleSeries.objects.filter(is_live=True, instrument__is_active=True)
    return list(live.order_by("pk").values_list("pk", flat=True))


def candles_poll(
    *, series_id: int, exchange: "ccxt.Exchange | None" = None, now: datetime | None = None, **fetch_options: Any
) -> list[ClosedBar]:
    """Fetch the bars of a live series that closed since its last stored bar, store them,
    derive the higher stored timeframes, and announce each new bar once.

    Does nothing for a series that is not live, or when its next bar cannot have closed yet.
    The venue is asked before any lock is taken. Raises FeedError subclasses.
    """
    from apps.marketdata.feeds import ccxt_feed

    series = CandleSeries.objects.select_related("instrument").filter(pk=series_id, is_live=True).first()
    if series is None:
        return []
    now = now or timezone.now()
    step = timeframes.delta(series.timeframe)
    if series.last_ts is not None:
        since = series.last_ts + step
    else:
        since = timeframes.floor(now, series.timeframe) - POLL_START_BARS * step
    if since + step > now:
        return []
    fetch_options.setdefault("retries", 2)
    frame = ccxt_feed.fetch_ohlcv_range(
        series.instrument.venue,
        series.instrument.symbol,
        series.timeframe,
        since,
        exchange=exchange,
        clock=lambda: now.timestamp(),
        **fetch_options,
    )
    if frame.empty:
        return []
    return candles_store_closed(instrument=series.instrument_id, timeframe=series.timeframe, frame=frame)


def candles_poll_all(*, now: datetime | None = None) -> int:
    """Poll every live series in turn (one failing venue does not stop the others); returns
    how many bars were announced. The beat task fans out instead; this is for the CLI."""
    announced = 0
    for series_id in live_series_ids():
        try:
            announced += len(candles_poll(series_id=series_id, now=now))
        except FeedError as exc:
            logger.warning("poll of series %s failed: %s", series_id, exc.message)
    return announced
