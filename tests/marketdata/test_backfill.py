"""Backfill through real ccxt against a local server that answers like Binance's public kline
endpoint: paging, 429 with Retry-After, a 5xx in the middle, resumption, the errors an operator
sees (exit code 2), and nothing stored lost on failure."""

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from apps.marketdata import services
from apps.marketdata.feeds import ccxt_feed
from apps.marketdata.feeds.errors import ExchangeUnreachable, RateLimited, TimeframeNotOffered, UnknownExchange
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.storage import candles_frame, candles_write
from tests.conftest import free_port
from tests.marketdata.fake_binance import EPOCH_2024_MS, bar_values, ccxt_config, fake_binance
from tests.marketdata.ohlcv import assert_bars_equal

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
# 2024-04-14 04:20 UTC: the 04:00 bar is still open.
NOW_MS = EPOCH_2024_MS + 2500 * HOUR_MS + 20 * 60_000


def expected_bars(start: datetime, count: int, step: timedelta) -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq=step, name="ts")
    step_ms = int(step.total_seconds() * 1000)
    rows = [bar_values(int(ts.timestamp() * 1000), step_ms) for ts in index]
    return pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"], index=index)


@pytest.fixture
def fake():
    with fake_binance(now_ms=NOW_MS) as server:
        yield server


@pytest.fixture
def exchange(fake):
    return ccxt_feed.exchange_create("binance", config=ccxt_config(fake.url))


@pytest.fixture
def clock(fake):
    return lambda: fake.now_ms / 1000


@pytest.fixture
def configured(settings, fake):
    """The commands' shared exchanges talk to the fake."""
    settings.MARKETDATA_CCXT_CONFIG = {"binance": ccxt_config(fake.url)}
    ccxt_feed.exchange_cache_clear()
    yield fake
    ccxt_feed.exchange_cache_clear()


@pytest.fixture
def btc(db, exchange):
    return services.instrument_from_exchange(venue="binance", symbol="BTC/USDT", exchange=exchange)


def test_instrument_from_exchange_takes_the_market_description(btc):
    assert (btc.venue, btc.symbol, btc.base, btc.quote) == ("binance", "BTC/USDT", "BTC", "USDT")
    assert (btc.tick_size, btc.lot_size, btc.min_notional) == (Decimal("0.01"), Decimal("0.00001"), Decimal("5"))


def test_backfill_pages_through_the_range(btc, exchange, fake, clock):
    until = T0 + timedelta(days=60)  # 1440 hourly bars

    result = services.candles_backfill(
        instrument=btc, timeframe="1h", since=T0, until=until, exchange=exchange, clock=clock
    )

    # then: two pages, each starting after the last bar of the one before
    klines = fake.klines()
    assert [r.query["startTime"] for r in klines] == [str(EPOCH_2024_MS), str(EPOCH_2024_MS + 1000 * HOUR_MS)]
    assert {r.query["limit"] for r in klines} == {"1000"}
    assert {r.query["endTime"] for r in klines} == {str(int(until.timestamp() * 1000) - 1)}
    assert (result.fetched, result.written, result.pages) == (1440, 1440, 2)
    stored = candles_frame(btc, "1h")
    assert_bars_equal(stored, expected_bars(T0, 1440, timedelta(hours=1)))
    series = CandleSeries.objects.get(instrument=btc, timeframe="1h")
    assert (series.count, series.first_ts, series.last_ts, series.source) == (
        1440,
        T0,
        until - timedelta(hours=1),
        "backfill",
    )


def test_backfill_to_now_keeps_closed_bars_only(btc, exchange, fake, clock):
    since = datetime(2024, 4, 13, tzinfo=UTC)

    result = services.candles_backfill(instrument=btc, timeframe="1h", since=since, exchange=exchange, clock=clock)

    # 00:00 on the 13th .. 03:00 on the 14th; the 04:00 bar is still open at 04:20
    assert result.fetched == 28
    assert candles_frame(btc, "1h").index[-1] == pd.Timestamp("2024-04-14 03:00", tz="UTC")
    assert len(fake.klines()) == 1  # the page that held the open bar was the last


def test_backfill_waits_as_long_as_retry_after_says(btc, exchange, fake, clock):
    # given: the second request is refused with 429 and Retry-After: 1
    fake.script = [None, (429, {"Retry-After": "1"}, {"code": -1003, "msg": "Too much request weight used."})]
    until = T0 + timedelta(hours=1500)

    result = services.candles_backfill(
        instrument=btc, timeframe="1h", since=T0, until=until, exchange=exchange, clock=clock, limit=500
    )

    # then
    klines = fake.klines()
    assert [r.status for r in klines] == [200, 429, 200, 200]
    assert klines[1].query["startTime"] == klines[2].query["startTime"] == str(EPOCH_2024_MS + 500 * HOUR_MS)
    assert klines[2].at - klines[1].at >= 1.0  # measured where the server received them
    assert result.fetched == 1500
    assert_bars_equal(candles_frame(btc, "1h"), expected_bars(T0, 1500, timedelta(hours=1)))


def test_backfill_survives_a_5xx_in_the_middle(btc, exchange, fake, clock):
    fake.script = [None, None, (502, {}, b"<html>502 Bad Gateway</html>")]
    until = T0 + timedelta(hours=1500)

    result = services.candles_backfill(
        instrument=btc, timeframe="1h", since=T0, until=until, exchange=exchange, clock=clock, limit=400, backoff=0.01
    )

    assert [r.status for r in fake.klines()] == [200, 200, 502, 200, 200]
    assert (result.fetched, result.pages) == (1500, 4)
    assert_bars_equal(candles_frame(btc, "1h"), expected_bars(T0, 1500, timedelta(hours=1)))


def test_interrupted_backfill_keeps_its_pages_and_resumes(btc, exchange, fake, clock):
    # given: after the first page the venue fails until the retries run out
    fake.script = [None] + [(503, {}, {"code": -1001, "msg": "Internal error; unable to process your request."})] * 3
    until = T0 + timedelta(hours=1500)
    options = {"exchange": exchange, "clock": clock, "limit": 500, "retries": 2, "backoff": 0.01}

    with pytest.raises(ExchangeUnreachable, match=r"binance is unreachable for BTC/USDT 1h candles \(tried 3 times\)"):
        services.candles_backfill(instrument=btc, timeframe="1h", since=T0, until=until, **options)

    # then: the first page is stored
    assert CandleSeries.objects.get(instrument=btc, timeframe="1h").last_ts == T0 + timedelta(hours=499)
    assert Candle.objects.filter(instrument=btc).count() == 500
    asked_before = len(fake.klines())

    # when: run again
    result = services.candles_backfill(instrument=btc, timeframe="1h", since=T0, until=until, **options)

    # then: only the missing part is fetched
    again = fake.klines()[asked_before:]
    assert [r.query["startTime"] for r in again] == [
        str(EPOCH_2024_MS + 500 * HOUR_MS),
        str(EPOCH_2024_MS + 1000 * HOUR_MS),
    ]
    assert (result.fetched, result.written) == (1000, 1000)
    assert_bars_equal(candles_frame(btc, "1h"), expected_bars(T0, 1500, timedelta(hours=1)))


def test_backfill_of_older_history_fetches_only_before_the_first_bar(btc, exchange, fake, clock):
    later = T0 + timedelta(days=10)
    services.candles_backfill(
        instrument=btc, timeframe="1d", since=later, until=later + timedelta(days=5), exchange=exchange, clock=clock
    )
    asked_before = len(fake.klines())

    result = services.candles_backfill(
        instrument=btc, timeframe="1d", since=T0, until=later + timedelta(days=5), exchange=exchange, clock=clock
    )

    again = fake.klines()[asked_before:]
    assert [(r.query["startTime"], r.query["endTime"]) for r in again] == [
        (str(EPOCH_2024_MS), str(int(later.timestamp() * 1000) - 1))
    ]
    assert result.fetched == 10
    assert len(candles_frame(btc, "1d")) == 15


def test_interrupted_backfill_of_older_history_fills_the_hole_next_time(btc, exchange, fake, clock):
    # given: June is stored; a backfill from January fails after its first page
    june = T0 + timedelta(hours=2000)
    options = {"exchange": exchange, "clock": clock, "limit": 500, "retries": 2, "backoff": 0.01}
    services.candles_backfill(instrument=btc, timeframe="1h", since=june, until=june + timedelta(hours=100), **options)
    fake.script = [None] + [(503, {}, {"code": -1001, "msg": "Internal error; unable to process your request."})] * 3
    with pytest.raises(ExchangeUnreachable):
        services.candles_backfill(
            instrument=btc, timeframe="1h", since=T0, until=june + timedelta(hours=100), **options
        )
    assert Candle.objects.filter(instrument=btc).count() == 600  # 500 from January on, 100 in June
    asked_before = len(fake.klines())

    # when: run again with the same range
    result = services.candles_backfill(
        instrument=btc, timeframe="1h", since=T0, until=june + timedelta(hours=100), **options
    )

    # then: the hole between the two is fetched, and nothing else
    again = fake.klines()[asked_before:]
    assert again[0].query["startTime"] == str(EPOCH_2024_MS + 500 * HOUR_MS)
    assert result.written == 1500
    assert_bars_equal(candles_frame(btc, "1h"), expected_bars(T0, 2100, timedelta(hours=1)))


def test_rate_limited_to_the_end_is_a_clear_error(btc, exchange, fake, clock):
    fake.script = [(429, {"Retry-After": "0"}, {"code": -1003, "msg": "Too many requests."})] * 3

    with pytest.raises(RateLimited, match=r"binance keeps rate-limiting BTC/USDT 1h candles \(tried 3 times\)"):
        services.candles_backfill(
            instrument=btc, timeframe="1h", since=T0, exchange=exchange, clock=clock, retries=2, backoff=0.01
        )
    assert not Candle.objects.exists()


def test_unknown_exchange_is_refused():
    with pytest.raises(UnknownExchange, match="Unknown exchange 'nosuchexchange'"):
        ccxt_feed.exchange_create("nosuchexchange")


def test_timeframe_the_venue_does_not_offer_is_refused_without_asking_it():
    kraken = ccxt_feed.exchange_create("kraken")

    with pytest.raises(TimeframeNotOffered, match=r"kraken does not offer '3m' candles; timeframes it offers: 1m, 5m"):
        list(ccxt_feed.iter_ohlcv_pages("kraken", "BTC/USD", "3m", T0, exchange=kraken))


# --- the command ----------------------------------------------------------------------------------


def backfill(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_candles", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


BTC_1D = ["--venue", "binance", "--symbol", "BTC/USDT", "--timeframe", "1d"]


def test_backfill_command_then_nothing_new(db, configured):
    out, _ = backfill(*BTC_1D, "--since", "2024-01-01", "--until", "2024-04-01")

    btc = Instrument.objects.get()
    assert btc.tick_size == Decimal("0.01")
    assert (
        "BTC/USDT @ binance 1d: 91 bars fetched in 1 page(s), 91 written, 2024-01-01 00:00 .. 2024-03-31 00:00 UTC"
        in out
    )
    assert_bars_equal(candles_frame(btc, "1d"), expected_bars(T0, 91, timedelta(days=1)))
    asked = len(configured.klines())

    # when: again
    out, _ = backfill(*BTC_1D, "--since", "2024-01-01", "--until", "2024-04-01")

    # then
    assert "nothing new to fetch" in out
    assert len(configured.klines()) == asked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--venue", "binance", "--symbol", "DOGE/EUR", "--timeframe", "1h"], "binance does not list 'DOGE/EUR'"),
        (["--venue", "kraken", "--symbol", "BTC/USD", "--timeframe", "3m"], "kraken does not offer '3m' candles"),
        (["--venue", "binance", "--symbol", "BTC/USDT", "--timeframe", "7m"], "Unknown timeframe '7m'"),
        (
            ["--venue", "nosuchexchange", "--symbol", "BTC/USDT", "--timeframe", "1h"],
            "Unknown exchange 'nosuchexchange'",
        ),
        ([*BTC_1D, "--until", "2023-01-01"], "until must be later than since"),
    ],
)
def test_backfill_command_refusals_exit_2(db, configured, args, message):
    with pytest.raises(CommandError) as failed:
        backfill(*args, "--since", "2024-01-01")

    assert failed.value.returncode == 2
    assert message in str(failed.value)
    assert not Candle.objects.exists()


def test_backfill_command_bad_date_exits_2(db):
    with pytest.raises(CommandError, match="Not a date or date-time: 'January'") as failed:
        backfill(*BTC_1D, "--since", "January")
    assert failed.value.returncode == 2


def test_backfill_command_unreachable_exits_2_and_loses_nothing(db, settings):
    # given: stored bars, and a venue nobody answers for
    btc = services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    stored = expected_bars(T0, 30, timedelta(days=1))
    candles_write(instrument=btc, timeframe="1d", frame=stored, source="import")
    settings.MARKETDATA_CCXT_CONFIG = {"binance": ccxt_config(f"http://127.0.0.1:{free_port()}")}
    ccxt_feed.exchange_cache_clear()

    with pytest.raises(CommandError) as failed:
        backfill(*BTC_1D, "--since", "2024-01-01", "--retries", "1", "--backoff", "0.01")

    assert failed.value.returncode == 2
    assert "binance is unreachable for its market list (tried 2 times)" in str(failed.value)
    assert_bars_equal(candles_frame(btc, "1d"), stored)
    assert CandleSeries.objects.get(instrument=btc, timeframe="1d").count == 30
    ccxt_feed.exchange_cache_clear()


def test_backfill_command_failing_midway_keeps_the_pages_and_says_so(db, configured):
    configured.script = [None, *[(500, {}, {"code": -1000, "msg": "An unknown error occurred."})] * 2]
    btc_1h = ["--venue", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]

    with pytest.raises(CommandError) as failed:
        backfill(*btc_1h, "--since", "2024-01-01", "--until", "2024-03-01", "--retries", "1", "--backoff", "0.01")

    assert failed.value.returncode == 2
    assert "binance is unreachable for BTC/USDT 1h candles (tried 2 times)" in str(failed.value)
    assert "1000 bars fetched before the failure are stored; run again to resume." in str(failed.value)
    assert Candle.objects.count() == 1000

    # when: run again
    out, _ = backfill(*btc_1h, "--since", "2024-01-01", "--until", "2024-03-01")

    # then
    assert "440 bars fetched in 1 page(s), 440 written, 2024-02-11 16:00 .. 2024-02-29 23:00 UTC" in out


def test_backfill_command_exit_code_in_a_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="tradingplatform.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path}/none.db",  # no tables: the run must fail before using it
        MARKETDATA_CCXT_CONFIG=json.dumps({"binance": ccxt_config(f"http://127.0.0.1:{free_port()}")}),
    )

    done = subprocess.run(
        [sys.executable, "manage.py", "backfill_candles", *BTC_1D, "--since", "2024-01-01", "--retries", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "binance is unreachable for its market list (tried 1 times)" in done.stderr


def test_rows_frame_sorts_dedupes_and_drops_off_grid_rows():
    rows = [
        [EPOCH_2024_MS + HOUR_MS, 2, 3, 1, 2, None],
        [EPOCH_2024_MS, 1, 2, 0.5, 1.5, 10],
        [EPOCH_2024_MS + HOUR_MS, 2, 3, 1, 2.5, 11],
        [EPOCH_2024_MS + 90 * 60_000, 2, 3, 1, 2, 1],
        [EPOCH_2024_MS + 2 * HOUR_MS, None, 3, 1, 2, 1],
    ]

    frame = ccxt_feed.rows_frame(rows, "1h")

    assert list(frame.index) == [pd.Timestamp("2024-01-01 00:00", tz="UTC"), pd.Timestamp("2024-01-01 01:00", tz="UTC")]
    np.testing.assert_array_equal(frame.to_numpy(), [[1, 2, 0.5, 1.5, 10], [2, 3, 1, 2.5, 11]])
