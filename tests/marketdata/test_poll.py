"""The live poll: newly closed bars from the venue are stored, the higher stored timeframes
derived, and each new bar announced once (signal + websocket group), after commit."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from apps.marketdata import services, tasks
from apps.marketdata.feeds import ccxt_feed
from apps.marketdata.feeds.errors import TemporaryFeedError
from apps.marketdata.models import CandleSeries
from apps.marketdata.signals import candle_closed
from apps.marketdata.storage import candles_frame, candles_write
from tests.marketdata.fake_binance import EPOCH_2024_MS, bar_values, ccxt_config, fake_binance

HOUR = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY_100 = T0 + timedelta(days=100)  # 2024-04-10 00:00 UTC


class Announcements:
    """What was announced: candle_closed signals and market.* group pushes."""

    def __init__(self) -> None:
        self.signals: list[tuple[int, str, datetime]] = []
        self.pushes: list[tuple[str, str, dict[str, Any]]] = []

    def receiver(self, sender: Any, *, instrument_id: int, timeframe: str, ts: datetime, **kwargs: Any) -> None:
        self.signals.append((instrument_id, timeframe, ts))


@pytest.fixture
def announced(monkeypatch):
    seen = Announcements()
    candle_closed.connect(seen.receiver, weak=False, dispatch_uid="test-announcements")
    monkeypatch.setattr(
        "apps.common.broadcast.group_send", lambda group, event, data: seen.pushes.append((group, event, data))
    )
    yield seen
    candle_closed.disconnect(dispatch_uid="test-announcements")


@pytest.fixture
def fake():
    with fake_binance(now_ms=EPOCH_2024_MS + 2500 * 3_600_000) as server:
        yield server


@pytest.fixture
def exchange(fake):
    return ccxt_feed.exchange_create("binance", config=ccxt_config(fake.url))


@pytest.fixture
def btc(db, exchange):
    return services.instrument_from_exchange(venue="binance", symbol="BTC/USDT", exchange=exchange)


def fake_now(fake: Any) -> datetime:
    return datetime.fromtimestamp(fake.now_ms / 1000, tz=UTC)


def test_poll_stores_derives_and_announces_each_new_bar_once(
    btc, exchange, fake, announced, django_capture_on_commit_callbacks
):
    # given: hourly bars up to 01:00 on day 100, a 4h series derived from them, the 1h series live
    clock = lambda: fake.now_ms / 1000  # noqa: E731
    services.candles_backfill(
        instrument=btc, timeframe="1h", since=T0, until=DAY_100 + 2 * HOUR, exchange=exchange, clock=clock
    )
    services.candles_derive(instrument=btc, source="1h", target="4h")
    assert CandleSeries.objects.get(instrument=btc, timeframe="4h").last_ts == DAY_100 - 4 * HOUR
    series = CandleSeries.objects.get(instrument=btc, timeframe="1h")
    CandleSeries.objects.filter(pk=series.pk).update(is_live=True)
    # 05:00:30: the bars of 02:00, 03:00 and 04:00 have closed; 05:00 is open
    fake.now_ms = int((DAY_100 + 5 * HOUR).timestamp() * 1000) + 30_000

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        closed = services.candles_poll(series_id=series.pk, exchange=exchange, now=fake_now(fake))

    # then: three hourly bars, and the 4h bar of 00:00 they complete
    expected = [
        (btc.pk, "1h", DAY_100 + 2 * HOUR),
        (btc.pk, "1h", DAY_100 + 3 * HOUR),
        (btc.pk, "1h", DAY_100 + 4 * HOUR),
        (btc.pk, "4h", DAY_100),
    ]
    assert [(b.instrument_id, b.timeframe, b.ts) for b in closed] == expected
    assert announced.signals == expected
    assert len(callbacks) == 4
    group, event, data = announced.pushes[0]
    o, h, low, c, v = bar_values(int((DAY_100 + 2 * HOUR).timestamp() * 1000), 3_600_000)
    assert (group, event) == (f"market.{btc.pk}.1h", "candle")
    assert data == {
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": v,
        "t": int((DAY_100 + 2 * HOUR).timestamp()),
        "instrument": btc.pk,
        "timeframe": "1h",
        "ts": "2024-04-10T02:00:00Z",
    }
    four = candles_frame(btc, "4h")
    hourly = candles_frame(btc, "1h").loc[DAY_100 : DAY_100 + 3 * HOUR]
    assert four.index[-1] == pd.Timestamp(DAY_100)
    assert four.iloc[-1].tolist() == [
        hourly["open"].iloc[0],
        hourly["high"].max(),
        hourly["low"].min(),
        hourly["close"].iloc[-1],
        hourly["volume"].sum(),
    ]

    # when: the same poll again (a redelivered task)
    with django_capture_on_commit_callbacks(execute=True):
        again = services.candles_poll(series_id=series.pk, exchange=exchange, now=fake_now(fake))

    # then: nothing is announced twice
    assert again == []
    assert len(announced.signals) == 4


def test_poll_does_not_ask_before_the_next_bar_closed(btc, exchange, fake, announced):
    frame = pd.DataFrame(
        [[1.0, 2.0, 0.5, 1.5, 1.0]],
        columns=["open", "high", "low", "close", "volume"],
        index=pd.DatetimeIndex([DAY_100], tz="UTC", name="ts"),
    )
    candles_write(instrument=btc, timeframe="1h", frame=frame)
    CandleSeries.objects.filter(instrument=btc, timeframe="1h").update(is_live=True)
    series = CandleSeries.objects.get(instrument=btc, timeframe="1h")
    asked = len(fake.requests)

    closed = services.candles_poll(series_id=series.pk, exchange=exchange, now=DAY_100 + HOUR + timedelta(minutes=59))

    assert closed == []
    assert len(fake.requests) == asked


def test_poll_ignores_a_series_that_is_not_live(btc, exchange):
    series = CandleSeries.objects.create(instrument=btc, timeframe="1h")

    assert services.candles_poll(series_id=series.pk, exchange=exchange) == []


def test_poll_of_an_empty_live_series_starts_with_the_newest_closed_bars(btc, exchange, fake, announced):
    series = CandleSeries.objects.create(instrument=btc, timeframe="1h", is_live=True)
    fake.now_ms = int((DAY_100 + 5 * HOUR).timestamp() * 1000) + 30_000

    closed = services.candles_poll(series_id=series.pk, exchange=exchange, now=fake_now(fake))

    assert [b.ts for b in closed] == [DAY_100 + 3 * HOUR, DAY_100 + 4 * HOUR]


def test_announce_waits_for_commit(db, announced, django_capture_on_commit_callbacks):
    ts = datetime(2024, 1, 1, tzinfo=UTC)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.candle_closed_announce(
            instrument_id=7, timeframe="5m", ts=ts, bar={"open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 3}
        )
        assert announced.signals == []

    callbacks[0]()
    assert announced.signals == [(7, "5m", ts)]
    assert announced.pushes[0][0] == "market.7.5m"


def test_a_failing_receiver_does_not_stop_the_push(db, announced, django_capture_on_commit_callbacks):
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("boom")

    candle_closed.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.candle_closed_announce(
                instrument_id=7,
                timeframe="5m",
                ts=T0,
                bar={"open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 3},
            )
    finally:
        candle_closed.disconnect(dispatch_uid="test-broken")

    assert len(announced.pushes) == 1


def test_poll_beat_task_fans_out_per_live_series(db, monkeypatch):
    a = services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    b = services.instrument_get_or_create(venue="binance", symbol="ETH/USDT")
    live_a = CandleSeries.objects.create(instrument=a, timeframe="1m", is_live=True)
    CandleSeries.objects.create(instrument=a, timeframe="1h", is_live=False)
    live_b = CandleSeries.objects.create(instrument=b, timeframe="5m", is_live=True)
    sent: list[int] = []
    monkeypatch.setattr(tasks.candles_poll_series, "delay", sent.append)

    tasks.candles_poll()

    assert sent == [live_a.pk, live_b.pk]


def test_poll_series_task_retries_only_temporary_errors():
    assert tasks.candles_poll_series.autoretry_for == (TemporaryFeedError,)
    assert tasks.candles_poll_series.acks_late
    assert tasks.candles_poll_series.time_limit
    assert tasks.candles_poll.name == "apps.marketdata.tasks.candles_poll"
    assert tasks.replay_step.name == "apps.marketdata.tasks.replay_step"


def test_beat_schedule_has_the_market_data_tasks(settings):
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["apps.marketdata.tasks.candles_poll"] == timedelta(seconds=30)
    assert schedule["apps.marketdata.tasks.replay_step"] == timedelta(seconds=1)
