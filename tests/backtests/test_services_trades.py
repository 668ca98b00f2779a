"""Storing a backtest's trades in bulk (binary COPY on PostgreSQL, executemany elsewhere):
every field round-trips, nulls included, and a second store replaces the first."""

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db import connection, transaction

from apps.backtests import services
from apps.backtests.models import BacktestTrade
from apps.backtests.services.trades import trades_store
from tests.backtests.platform_support import run_spec

pytestmark = pytest.mark.django_db

REASONS = ["signal", "stop", "target", "trailing", "breakeven", "time", "end", ""]


def synthetic_trades(n: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    entry = pd.date_range("2021-01-01", periods=n, freq="7min", tz="UTC")
    held = rng.integers(1, 400, n)
    exit_at = pd.Series(entry + pd.to_timedelta(held, unit="min"))
    exit_price = rng.uniform(10, 60_000, n)
    # a few open trades (no exit yet): both the time and the price are missing
    open_rows = rng.choice(n, size=max(1, n // 1000), replace=False)
    exit_at.iloc[open_rows] = pd.NaT
    exit_price[open_rows] = np.nan
    return pd.DataFrame(
        {
            "side": rng.choice(["long", "short"], n),
            "entry_at": entry,
            "entry_price": rng.uniform(10, 60_000, n),
            "exit_at": exit_at.to_numpy(),
            "exit_price": exit_price,
            "size": rng.uniform(1e-6, 3.0, n),
            "fees": rng.uniform(0, 20, n),
            "pnl": rng.normal(0, 50, n),
            "return_pct": rng.normal(0, 0.01, n),
            "bars_held": held,
            "exit_reason": rng.choice(REASONS, n),
        }
    )


@pytest.fixture
def backtest(alice: Any, btc: Any, sent: Any) -> Any:
    return services.backtest_create(owner=alice, **run_spec(btc))


def test_thirty_thousand_trades_round_trip(backtest):
    # given
    trades = synthetic_trades(30_000)
    # when
    with transaction.atomic():
        stored = trades_store(backtest_id=backtest.pk, trades=trades)
    # then: every field of every trade, in order
    assert stored == 30_000 == BacktestTrade.objects.filter(backtest=backtest).count()
    rows = list(
        BacktestTrade.objects.filter(backtest=backtest)
        .order_by("number")
        .values_list(
            "number",
            "side",
            "entry_at",
            "entry_price",
            "exit_at",
            "exit_price",
            "size",
            "fees",
            "pnl",
            "return_pct",
            "bars_held",
            "exit_reason",
        )
    )
    assert [r[0] for r in rows] == list(range(1, 30_001))
    assert [r[1] for r in rows] == trades["side"].tolist()
    assert [r[11] for r in rows] == trades["exit_reason"].tolist()
    assert [r[10] for r in rows] == trades["bars_held"].tolist()
    assert [r[2] for r in rows] == [ts.to_pydatetime() for ts in trades["entry_at"]]
    exits = [None if pd.isna(ts) else pd.Timestamp(ts).to_pydatetime() for ts in trades["exit_at"]]
    assert [r[4] for r in rows] == exits
    for column, position in (("entry_price", 3), ("size", 6), ("fees", 7), ("pnl", 8), ("return_pct", 9)):
        assert [r[position] for r in rows] == trades[column].tolist(), column
    assert [r[5] for r in rows] == [None if np.isnan(v) else v for v in trades["exit_price"]]
    assert rows[0][2].tzinfo is not None and rows[0][2] == datetime(2021, 1, 1, tzinfo=UTC)


def test_storing_again_replaces_and_an_empty_frame_stores_nothing(backtest):
    with transaction.atomic():
        trades_store(backtest_id=backtest.pk, trades=synthetic_trades(50))
        trades_store(backtest_id=backtest.pk, trades=synthetic_trades(20, seed=9))
    assert BacktestTrade.objects.filter(backtest=backtest).count() == 20
    with transaction.atomic():
        assert trades_store(backtest_id=backtest.pk, trades=synthetic_trades(10).iloc[:0]) == 0
    assert not BacktestTrade.objects.filter(backtest=backtest).exists()


def test_trades_go_with_their_backtest(backtest):
    with transaction.atomic():
        trades_store(backtest_id=backtest.pk, trades=synthetic_trades(100))
    backtest.delete()
    assert not BacktestTrade.objects.exists()


@pytest.mark.postgres
def test_postgres_uses_the_binary_copy(backtest, django_assert_max_num_queries):
    assert connection.vendor == "postgresql"
    with transaction.atomic(), django_assert_max_num_queries(3):  # delete, COPY
        trades_store(backtest_id=backtest.pk, trades=synthetic_trades(5000))
    assert BacktestTrade.objects.filter(backtest=backtest).count() == 5000
