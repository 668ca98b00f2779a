"""Replay: stored history played back as a live market.

A replay copies the bars of a source series, oldest first, into a target instrument's series
of the same timeframe, one bar every `seconds_per_bar` of wall-clock time, and each copied bar
goes through `services.candles_store_closed`: stored, higher stored timeframes derived, and
announced after commit, exactly as the live poll does. The embedded demo's paper market and
tests use it where no exchange is reachable.

Bars keep their original open times: a replayed 2021 bar is stored and announced as the 2021
bar it is (strategies and charts only need bars in order; a chart of the target shows the
history as it grows). Speed: `speed` is a multiple of real time (1 = a 5m bar every 5
minutes, 300 = a 5m bar every second), or give `seconds_per_bar` directly.

State lives in the database (`ReplayCursor`), so any worker may advance it: `replay_step` locks
the cursor, copies the bars that are due at `now`, and moves the cursor, in one transaction.
Bar k (0-based) is due at `anchor_at + (k + 1) * seconds_per_bar`. Running the step twice for
the same `now` copies and announces nothing the second time.
"""

import math
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.common.errors import ValidationFailed
from apps.marketdata import services, timeframes
from apps.marketdata.models import Candle, CandleSeries, Instrument, ReplayCursor
from apps.marketdata.storage import candles_frame, candles_write, series_refresh

# A replay that fell behind (its worker was stopped) catches up at most this many bars in one
# step and then goes on at its speed from there, instead of flooding its listeners.
MAX_BARS_PER_STEP = 500


def _pk(instrument: Instrument | int) -> int:
    return instrument if isinstance(instrument, int) else int(instrument.pk)


def _seconds_per_bar(timeframe: str, speed: float | None, seconds_per_bar: float | None) -> float:
    if seconds_per_bar is None:
        speed = 1.0 if speed is None else float(speed)
        if not math.isfinite(speed) or speed <= 0:
            raise ValidationFailed("The replay speed must be a positive multiple of real time.")
        seconds_per_bar = timeframes.seconds(timeframe) / speed
    if not math.isfinite(seconds_per_bar) or seconds_per_bar <= 0:
        raise ValidationFailed("Seconds per bar must be positive.")
    return float(seconds_per_bar)


def _clear_from(target_id: int, timeframe: str, start: datetime) -> None:
    """Delete the target's bars from `start` on, in `timeframe` and the timeframes derived
    from it, so a restarted replay announces its bars again."""
    chain = timeframes.DERIVATION_CHAIN
    affected = [timeframe] + (chain[chain.index(timeframe) + 1 :] if timeframe in chain else [])
    for tf in affected:
        stale = Candle.objects.filter(instrument_id=target_id, timeframe=tf, ts__gte=timeframes.floor(start, tf))
        if stale.delete()[0]:
            series_refresh(instrument_id=target_id, timeframe=tf)


@transaction.atomic
def replay_start(
    *,
    source: Instrument | int,
    target: Instrument | int,
    timeframe: str,
    start: datetime | None = None,
    speed: float | None = None,
    seconds_per_bar: float | None = None,
    preload: int = 0,
    reset: bool = False,
    now: datetime | None = None,
) -> ReplayCursor:
    """Start (or restart) replaying `source`'s `timeframe` bars from `start` (default: its
    first stored bar) into `target`.

    `preload` bars before `start` are copied at once without being announced (a strategy's
    warm-up). The target must not already hold bars from `start` on, since those would never
    be announced; `reset=True` deletes them (in this and the derived timeframes) first.
    """
    source_id, target_id = _pk(source), _pk(target)
    if source_id == target_id:
        raise ValidationFailed("A replay needs a target instrument other than its source.")
    spb = _seconds_per_bar(timeframe, speed, seconds_per_bar)
    stored = Candle.objects.filter(instrument_id=source_id, timeframe=timeframe)
    first_ts = (stored.filter(ts__gte=start) if start else stored).order_by("ts").values_list("ts", flat=True).first()
    if first_ts is None:
        raise ValidationFailed(f"The source holds no {timeframe} bars to replay from {start or 'its start'}.")
    if reset:
        _clear_from(target_id, timeframe, first_ts)
    elif Candle.objects.filter(instrument_id=target_id, timeframe=timeframe, ts__gte=first_ts).exists():
        raise ValidationFailed("The target already holds bars from the replay's start on; restart with reset.")
    if preload > 0:
        warmup = candles_frame(source_id, timeframe, end=first_ts, limit=preload)
        candles_write(instrument=target_id, timeframe=timeframe, frame=warmup, source="replay")
    CandleSeries.objects.get_or_create(instrument_id=target_id, timeframe=timeframe, defaults={"source": "replay"})
    cursor, _ = ReplayCursor.objects.update_or_create(
        target_id=target_id,
        timeframe=timeframe,
        defaults={
            "source_id": source_id,
            "seconds_per_bar": spb,
            "anchor_at": now or timezone.now(),
            "next_ts": first_ts,
            "bars_done": 0,
            "is_active": True,
            "finished_at": None,
        },
    )
    return cursor


def replay_due(cursor: ReplayCursor, now: datetime) -> int:
    """How many bars are due at `now` and not yet copied."""
    elapsed = (now - cursor.anchor_at).total_seconds()
    return max(0, math.floor(elapsed / cursor.seconds_per_bar + 1e-9) - cursor.bars_done)


@transaction.atomic
def replay_step(*, cursor_id: int, now: datetime | None = None) -> list[services.ClosedBar]:
    """Copy and announce the bars of one replay that are due at `now`. Idempotent per `now`:
    the cursor is locked and moved in the same transaction as the bars it copies."""
    now = now or timezone.now()
    cursor = ReplayCursor.objects.select_for_update().filter(pk=cursor_id, is_active=True).first()
    if cursor is None:
        return []
    due = replay_due(cursor, now)
    if due <= 0:
        return []
    if due > MAX_BARS_PER_STEP:
        due = MAX_BARS_PER_STEP
        cursor.anchor_at = now - timedelta(seconds=(cursor.bars_done + due) * cursor.seconds_per_bar)
    frame = candles_frame(cursor.source_id, cursor.timeframe, cursor.next_ts, limit=due)
    closed: list[services.ClosedBar] = []
    if not frame.empty:
        closed = services.candles_store_closed(
            instrument=cursor.target_id, timeframe=cursor.timeframe, frame=frame, source="replay"
        )
        cursor.bars_done += len(frame)
        cursor.next_ts = frame.index[-1].to_pydatetime() + timeframes.delta(cursor.timeframe)
    if len(frame) < due:
        cursor.is_active = False
        cursor.finished_at = now
    cursor.save()
    return closed


def replay_active_ids() -> list[int]:
    return list(ReplayCursor.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))


def replay_step_all(*, now: datetime | None = None) -> int:
    """Advance every active replay (each in its own transaction); returns the bars announced."""
    return sum(len(replay_step(cursor_id=cursor_id, now=now)) for cursor_id in replay_active_ids())


def replay_stop(*, cursor_id: int, now: datetime | None = None) -> None:
    ReplayCursor.objects.filter(pk=cursor_id, is_active=True).update(
        is_active=False, finished_at=now or timezone.now(), updated_at=timezone.now()
    )


class ReplayFeed:
    """A handle on the replay of `source_instrument` into `target_instrument`:

    feed = ReplayFeed(btc, demo_btc, "1m", speed=60, start=datetime(2021, 4, 2, tzinfo=UTC))
    feed.start()            # the first bar is due one bar-interval (here 1 s) from now
    feed.step()             # what the beat task does for every active replay
    """

    def __init__(
        self,
        source_instrument: Instrument | int,
        target_instrument: Instrument | int,
        timeframe: str,
        speed: float | None = None,
        start: datetime | None = None,
        *,
        seconds_per_bar: float | None = None,
        preload: int = 0,
    ):
        self.source_id = _pk(source_instrument)
        self.target_id = _pk(target_instrument)
        self.timeframe = timeframe
        self.speed = speed
        self.start_at = start
        self.seconds_per_bar = seconds_per_bar
        self.preload = preload

    def start(self, *, now: datetime | None = None, reset: bool = False) -> ReplayCursor:
        return replay_start(
            source=self.source_id,
            target=self.target_id,
            timeframe=self.timeframe,
            start=self.start_at,
            speed=self.speed,
            seconds_per_bar=self.seconds_per_bar,
            preload=self.preload,
            reset=reset,
            now=now,
        )

    @property
    def cursor(self) -> ReplayCursor | None:
        return ReplayCursor.objects.filter(target_id=self.target_id, timeframe=self.timeframe).first()

    def step(self, *, now: datetime | None = None) -> list[services.ClosedBar]:
        cursor = self.cursor
        return replay_step(cursor_id=cursor.pk, now=now) if cursor is not None else []

    def stop(self, *, now: datetime | None = None) -> None:
        cursor = self.cursor
        if cursor is not None:
            replay_stop(cursor_id=cursor.pk, now=now)
