"""Replay: stored history copied into a target series at wall-clock speed and announced exactly
like live closed bars; every bar once, in order; speed by due time (explicit `now`, no sleeps)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from apps.common.errors import ValidationFailed
from apps.marketdata import services, tasks
from apps.marketdata.feeds.replay import ReplayFeed, replay_due, replay_start, replay_step, replay_step_all
from apps.marketdata.models import CandleSeries, ReplayCursor
from apps.marketdata.signals import candle_closed
from apps.marketdata.storage import candles_frame, candles_write
from tests.marketdata.ohlcv import assert_bars_equal

T0 = datetime(2021, 4, 2, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def minute_bars(count: int, start: datetime = T0) -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq="1min", name="ts")
    rows = [(100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1.0 + i) for i in range(count)]
    return pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"], index=index)


@pytest.fixture
def heard(monkeypatch):
    signals: list[tuple[int, str, datetime]] = []

    def receiver(sender: Any, *, instrument_id: int, timeframe: str, ts: datetime, **kwargs: Any) -> None:
        signals.append((instrument_id, timeframe, ts))

    candle_closed.connect(receiver, weak=False, dispatch_uid="test-replay")
    monkeypatch.setattr("apps.common.broadcast.group_send", lambda *args: None)
    yield signals
    candle_closed.disconnect(dispatch_uid="test-replay")


@pytest.fixture
def source(db):
    instrument = services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    candles_write(instrument=instrument, timeframe="1m", frame=minute_bars(10), source="import")
    return instrument


@pytest.fixture
def target(db):
    return services.instrument_get_or_create(venue="demo", symbol="BTC/USDT")


def test_replay_announces_each_bar_once_in_order_at_its_speed(
    source, target, heard, django_capture_on_commit_callbacks
):
    # given: 60 x real time, a 1m bar every second
    feed = ReplayFeed(source, target, "1m", speed=60)
    cursor = feed.start(now=NOW)
    assert cursor.seconds_per_bar == 1.0

    def step(at: datetime) -> list[datetime]:
        with django_capture_on_commit_callbacks(execute=True):
            return [bar.ts for bar in feed.step(now=at)]

    # then: nothing before the first bar is due
    assert step(NOW) == []
    assert step(NOW + 0.999 * S) == []
    # the first bar at +1 s, and only once
    assert step(NOW + S) == [T0]
    assert step(NOW + S) == []
    assert step(NOW + 1.5 * S) == []
    # two more by +3.5 s
    assert step(NOW + 3.5 * S) == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    # the rest, and the replay ends with the source
    assert len(step(NOW + 100 * S)) == 7
    assert step(NOW + 200 * S) == []

    announced = [ts for (_, _, ts) in heard]
    assert announced == list(minute_bars(10).index.to_pydatetime())
    assert {(i, tf) for (i, tf, _) in heard} == {(target.pk, "1m")}
    assert_bars_equal(candles_frame(target, "1m"), minute_bars(10))
    cursor.refresh_from_db()
    assert (cursor.is_active, cursor.bars_done, cursor.finished_at) == (False, 10, NOW + 100 * S)
    assert CandleSeries.objects.get(instrument=target, timeframe="1m").source == "replay"


def test_due_bars_follow_seconds_per_bar(source, target):
    cursor = replay_start(source=source, target=target, timeframe="1m", seconds_per_bar=2.5, now=NOW)

    assert [replay_due(cursor, NOW + k * S) for k in (0, 2, 3, 5, 7, 10)] == [0, 0, 1, 2, 2, 4]


def test_replay_from_a_start_with_preload_and_derived_timeframe(
    source, target, heard, django_capture_on_commit_callbacks
):
    # given: the target keeps 5m bars too; replay from 00:02 with two bars of warm-up
    CandleSeries.objects.create(instrument=target, timeframe="5m")
    feed = ReplayFeed(source, target, "1m", start=T0 + timedelta(minutes=2), seconds_per_bar=1, preload=2)
    feed.start(now=NOW)
    assert len(candles_frame(target, "1m")) == 2  # warm-up, not announced
    assert heard == []

    # when: eight bars are due
    with django_capture_on_commit_callbacks(execute=True):
        feed.step(now=NOW + 8 * S)

    # then: 00:02 .. 00:09, and the 5m bars they complete (00:00 and 00:05), announced after
    # the 1m bars of the same step
    one = [(target.pk, "1m", T0 + timedelta(minutes=m)) for m in range(2, 10)]
    five = [(target.pk, "5m", T0), (target.pk, "5m", T0 + timedelta(minutes=5))]
    assert heard == one + five
    five_bars = candles_frame(target, "5m")
    assert five_bars.iloc[0].tolist() == [100.0, 105.0, 99.0, 104.5, 15.0]


def test_the_beat_task_advances_every_active_replay(source, target, heard, django_capture_on_commit_callbacks):
    other = services.instrument_get_or_create(venue="demo", symbol="ETH/USDT")
    now = datetime.now(tz=UTC)
    replay_start(source=source, target=target, timeframe="1m", seconds_per_bar=1, now=now - 3.5 * S)
    replay_start(source=source, target=other, timeframe="1m", seconds_per_bar=1, now=now - 10.5 * S)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.replay_step()

    assert [ts for (i, _, ts) in heard if i == target.pk] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert len([ts for (i, _, ts) in heard if i == other.pk]) == 10


def test_step_twice_for_the_same_time_copies_nothing_more(source, target, heard, django_capture_on_commit_callbacks):
    cursor = replay_start(source=source, target=target, timeframe="1m", seconds_per_bar=1, now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        first = replay_step(cursor_id=cursor.pk, now=NOW + 4 * S)
        second = replay_step(cursor_id=cursor.pk, now=NOW + 4 * S)
        everything = replay_step_all(now=NOW + 4 * S)

    assert (len(first), second, everything) == (4, [], 0)
    assert len(heard) == 4


def test_a_stalled_replay_catches_up_a_bounded_number_of_bars(source, target, monkeypatch):
    monkeypatch.setattr("apps.marketdata.feeds.replay.MAX_BARS_PER_STEP", 3)
    cursor = replay_start(source=source, target=target, timeframe="1m", seconds_per_bar=1, now=NOW)

    first = replay_step(cursor_id=cursor.pk, now=NOW + 8 * S)
    nothing = replay_step(cursor_id=cursor.pk, now=NOW + 8 * S)
    next_one = replay_step(cursor_id=cursor.pk, now=NOW + 9 * S)

    assert (len(first), nothing, len(next_one)) == (3, [], 1)


def test_restart_needs_reset_when_the_target_holds_the_bars(source, target, heard, django_capture_on_commit_callbacks):
    feed = ReplayFeed(source, target, "1m", seconds_per_bar=1)
    feed.start(now=NOW)
    feed.step(now=NOW + 5 * S)

    with pytest.raises(ValidationFailed, match="restart with reset"):
        feed.start(now=NOW + 10 * S)

    cursor = feed.start(now=NOW + 10 * S, reset=True)
    assert len(candles_frame(target, "1m")) == 0
    assert (cursor.bars_done, cursor.next_ts, cursor.is_active) == (0, T0, True)
    with django_capture_on_commit_callbacks(execute=True):
        feed.step(now=NOW + 12 * S)
    assert [ts for (_, _, ts) in heard][-2:] == [T0, T0 + timedelta(minutes=1)]
    assert ReplayCursor.objects.count() == 1


def test_stop(source, target):
    feed = ReplayFeed(source, target, "1m", seconds_per_bar=1)
    feed.start(now=NOW)

    feed.stop(now=NOW + S)

    assert feed.step(now=NOW + 5 * S) == []
    assert feed.cursor is not None and not feed.cursor.is_active


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 0}, "positive multiple of real time"),
        ({"seconds_per_bar": -1}, "Seconds per bar must be positive"),
        ({"start": T0 + timedelta(days=1)}, "The source holds no 1m bars"),
    ],
)
def test_replay_refusals(source, target, kwargs, message):
    with pytest.raises(ValidationFailed, match=message):
        replay_start(source=source, target=target, timeframe="1m", now=NOW, **kwargs)


def test_replay_into_itself_is_refused(source):
    with pytest.raises(ValidationFailed, match="other than its source"):
        replay_start(source=source, target=source, timeframe="1m", now=NOW)
