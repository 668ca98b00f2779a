"""Demo markets for `make run`: from candle files, from the exchange, or generated (synthetic)."""

import dataclasses
import gzip
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command

from apps.marketdata import demo
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.storage import candles_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_markets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's markets with few generated bars, so the tests stay quick."""
    small = tuple(dataclasses.replace(m, synthetic_bars=3 * 1440 if m.symbol == "BTC/USDT" else 300)
                  for m in demo.MARKETS)  # fmt: skip
    monkeypatch.setattr(demo, "MARKETS", small)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    for ts, row in frame.iterrows():
        lines.append(f"{ts:%Y-%m-%dT%H:%M:%SZ},{row.open},{row.high},{row.low},{row.close},{row.volume}")
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.fixture
def candle_dir(tmp_path: Path) -> Path:
    end = pd.Timestamp("2021-05-20", tz="UTC").to_pydatetime()
    for name, tf, bars in (("BTC-USDT_1m", "1m", 600), ("BTC-USDT_5m", "5m", 600), ("BTC-USDT_1h", "1h", 600),
                           ("SPY_1d", "1d", 50)):  # fmt: skip
        frame = demo.random_walk(bars=bars, timeframe=tf, start_price=100, annual_vol=0.3, tick=0.01, seed=1, end=end)
        _write_csv(tmp_path / f"{name}.csv.gz", frame)
    return tmp_path


def test_demo_seed_from_files_imports_real_candles_and_derives_the_chain(settings, candle_dir, small_markets):
    settings.DEMO_CANDLES_DIR = str(candle_dir)
    settings.DEMO_FETCH_LIVE = False

    demo.demo_seed(log=lambda _: None)

    btc = Instrument.objects.get(venue="binance", symbol="BTC/USDT")
    assert btc.is_synthetic is False
    series = {s.timeframe: s for s in CandleSeries.objects.filter(instrument=btc)}
    assert set(series) == {"1m", "5m", "15m", "1h", "4h", "1d"}
    assert series["1m"].count == 600 and series["1m"].source == "import"
    assert series["15m"].source == "derived" and series["15m"].count == 200
    assert Instrument.objects.get(venue="demo", symbol="SPY").is_synthetic is False
    # No files for ETH/USDT and EUR/USD in this folder: those are generated, and labelled so.
    assert Instrument.objects.get(venue="demo", symbol="ETH/USDT").is_synthetic is True
    assert Instrument.objects.get(venue="demo", symbol="EUR/USD").is_synthetic is True


def test_demo_seed_keeps_only_the_newest_bars_of_a_long_file(settings, candle_dir, small_markets, monkeypatch):
    settings.DEMO_CANDLES_DIR = str(candle_dir)
    monkeypatch.setattr(demo, "MAX_FILE_BARS", 100)
    demo.demo_seed(log=lambda _: None)
    btc = Instrument.objects.get(venue="binance", symbol="BTC/USDT")
    frame = candles_frame(btc, "1m")
    assert len(frame) == 100
    assert frame.index[-1] == pd.Timestamp("2021-05-19T23:59:00Z")


def test_demo_seed_is_idempotent(settings, candle_dir, small_markets, django_assert_max_num_queries):
    settings.DEMO_CANDLES_DIR = str(candle_dir)
    demo.demo_seed(log=lambda _: None)
    candles = Candle.objects.count()
    with django_assert_max_num_queries(60):
        demo.demo_seed(log=lambda _: None)
    assert Candle.objects.count() == candles
    assert Instrument.objects.count() == 5  # four markets and the BTC/USDT replay


def test_demo_seed_without_a_folder_generates_synthetic_markets(settings, small_markets):
    settings.DEMO_CANDLES_DIR = ""
    settings.DEMO_FETCH_LIVE = False
    messages: list[str] = []

    instruments = demo.demo_seed(log=messages.append)

    assert {(i.venue, i.symbol) for i in instruments} == {
        ("demo", "BTC/USDT"),
        ("demo", "ETH/USDT"),
        ("demo", "SPY"),
        ("demo", "EUR/USD"),
        ("replay", "BTC/USDT"),
    }
    assert all(i.is_synthetic for i in instruments)
    btc = Instrument.objects.get(venue="demo", symbol="BTC/USDT")
    timeframes = set(CandleSeries.objects.filter(instrument=btc, count__gt=0).values_list("timeframe", flat=True))
    assert timeframes == {"1m", "5m", "15m", "1h", "4h", "1d"}
    frame = candles_frame(btc, "1m")
    assert len(frame) == 3 * 1440
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    # The newest generated bar is the last closed one: the chart starts at "now".
    assert pd.Timestamp.now(tz="UTC") - frame.index[-1] < pd.Timedelta(minutes=3)
    assert any("synthetic" in m for m in messages)


def test_demo_seed_never_mixes_real_candles_into_a_synthetic_instrument(settings, candle_dir, small_markets):
    settings.DEMO_CANDLES_DIR = ""
    demo.demo_seed(log=lambda _: None)
    settings.DEMO_CANDLES_DIR = str(candle_dir)
    demo.demo_seed(log=lambda _: None)
    spy = Instrument.objects.get(venue="demo", symbol="SPY")
    assert spy.is_synthetic is True
    assert CandleSeries.objects.get(instrument=spy, timeframe="1d").source == "synthetic"
    # BTC/USDT real candles went to binance, the synthetic ones stayed on demo.
    assert Instrument.objects.get(venue="binance", symbol="BTC/USDT").is_synthetic is False


def test_seed_from_exchange_writes_fetched_bars(small_markets):
    btc = next(m for m in demo.MARKETS if m.symbol == "BTC/USDT")
    end = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()

    def fetch(symbol: str, timeframe: str, limit: int) -> pd.DataFrame:
        return demo.random_walk(
            bars=300, timeframe=timeframe, start_price=1, annual_vol=0.3, tick=0.01, seed=2, end=end
        )

    instrument = demo.seed_from_exchange(btc, lambda _: None, fetch=fetch)

    assert instrument is not None and not instrument.is_synthetic
    assert CandleSeries.objects.get(instrument=instrument, timeframe="1h").source == "backfill"
    assert CandleSeries.objects.filter(instrument=instrument, timeframe="4h").exists()


def test_seed_from_exchange_falls_back_when_the_network_fails(settings, small_markets, monkeypatch):
    def offline(symbol: str, timeframe: str, limit: int) -> pd.DataFrame:
        raise OSError("network unreachable")

    monkeypatch.setattr(demo, "_fetch_binance", offline)
    monkeypatch.setattr(demo.seed_from_exchange, "__defaults__", (offline,))
    settings.DEMO_FETCH_LIVE = True
    settings.DEMO_CANDLES_DIR = ""
    messages: list[str] = []
    demo.demo_seed(log=messages.append)
    assert Instrument.objects.get(venue="demo", symbol="BTC/USDT").is_synthetic is True
    assert any("live candles unavailable" in m for m in messages)


def test_seed_demo_command_seeds_markets(settings, small_markets):
    settings.DEMO_CANDLES_DIR = ""
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # The four demo markets and the replay of BTC/USDT, all generated here.
    assert Instrument.objects.filter(is_synthetic=True).count() == 5


def test_demo_seed_starts_a_live_replay_with_history_and_derived_timeframes(settings, candle_dir, small_markets):
    from apps.marketdata.feeds.replay import replay_step
    from apps.marketdata.models import ReplayCursor

    settings.DEMO_CANDLES_DIR = str(candle_dir)
    demo.demo_seed(log=lambda _: None)

    source = Instrument.objects.get(venue="binance", symbol="BTC/USDT")
    target = Instrument.objects.get(venue=demo.REPLAY_VENUE, symbol="BTC/USDT")
    cursor = ReplayCursor.objects.get(target=target)
    assert cursor.is_active and cursor.source == source and cursor.timeframe == "1m"
    history = candles_frame(target, "1m")
    source_bars = candles_frame(source, "1m")
    # Half of the 600 source bars are history at once; the rest arrive one by one.
    assert len(history) == 300
    pd.testing.assert_frame_equal(history, source_bars.iloc[:300])
    assert set(CandleSeries.objects.filter(instrument=target).values_list("timeframe", flat=True)) == {
        "1m",
        "5m",
        "15m",
        "1h",
    }
    # when: two bars are due
    due = cursor.anchor_at + timedelta(seconds=2 * demo.REPLAY_SECONDS_PER_BAR)
    replay_step(cursor_id=cursor.pk, now=due)
    # then: the next two source bars are on the target
    pd.testing.assert_frame_equal(candles_frame(target, "1m"), source_bars.iloc[:302])


def test_demo_seed_leaves_a_running_replay_alone(settings, candle_dir, small_markets):
    from apps.marketdata.models import ReplayCursor

    settings.DEMO_CANDLES_DIR = str(candle_dir)
    demo.demo_seed(log=lambda _: None)
    before = ReplayCursor.objects.get()

    demo.demo_seed(log=lambda _: None)

    after = ReplayCursor.objects.get()
    assert (after.pk, after.anchor_at, after.next_ts) == (before.pk, before.anchor_at, before.next_ts)
