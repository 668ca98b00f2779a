"""Fixtures and helpers for deployment and tick tests.

A small market (``TST/USDT`` 1m, a seeded random walk stored with the market-data storage, no
announcements), paper accounts opened with the accounts service, and two hidden test
strategies whose signals depend only on the bar's own time, so a tick over any window gives the
same verdict as a backtest over the whole series:

- ``test_even_minutes``: long on bars opening at an even minute, out on odd ones.
- ``test_always_long``: enter long on every bar (no pyramiding: one entry, then nothing).

Ticks run the way the platform runs them: `feed_bar` stores a closed bar with
`candles_store_closed` (which announces it after commit); the receiver lets the paper venue
match it and queues the ticks, which `run_ticks_inline` makes run in this process at once.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.strategies.base import Strategy
from apps.strategies.registry import register
from apps.strategies.services import ticks

START = datetime(2024, 1, 1, tzinfo=UTC)
HISTORY_BARS = 120


@register
class EvenMinutesStrategy(Strategy):
    """Test only: long on bars opening at an even minute, flat on odd ones."""

    key = "test_even_minutes"
    name = "Even minutes (test)"
    is_public = False

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        even = pd.Series(candles.index.minute % 2 == 0, index=candles.index)
        return candles.assign(enter_long=even, exit_long=~even)


@register
class AlwaysLongStrategy(Strategy):
    """Test only: wants to be long on every bar."""

    key = "test_always_long"
    name = "Always long (test)"
    is_public = False

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        return candles.assign(enter_long=True)


def walk(bars: int, *, start: datetime = START, seed: int = 7, price: float = 100.0) -> pd.DataFrame:
    """A 1m random walk (open = previous close, prices on a 0.01 tick), indexed by aware-UTC
    open times."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, 0.002, bars)))
    open_ = np.concatenate([[price], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.001, bars)) * close
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(10, 100, bars),
        },
        index=pd.date_range(start, periods=bars, freq="1min", tz="UTC"),
    )
    # Prices on the instrument's 0.01 tick, as a venue quotes them.
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].round(2)
    return frame


@pytest.fixture
def market(db: Any) -> Instrument:
    """TST/USDT with HISTORY_BARS 1m bars of history (stored, not announced)."""
    instrument = market_services.instrument_get_or_create(
        venue="test", symbol="TST/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    candles_write(instrument=instrument, timeframe="1m", frame=walk(HISTORY_BARS), source="test")
    return instrument


def next_bars(count: int, *, after: int = HISTORY_BARS, seed: int = 7) -> pd.DataFrame:
    """The bars of the same walk after the history (the walk continued)."""
    return walk(after + count, seed=seed).iloc[after:]


@pytest.fixture
def paper_account(alice: Any) -> Any:
    from apps.accounts.services import account_connect_paper

    return account_connect_paper(owner=alice, name="Paper", balances={"USDT": Decimal("100000")}, costs={"fee": 0.001})


def deployment_kwargs(market: Instrument, account: Any, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "owner": account.owner,
        "account_id": account.pk,
        "instrument_ids": [market.pk],
        "timeframe": "1m",
        "capital": Decimal("10000"),
        "strategy_key": "test_even_minutes",
        "params": {},
        "settings": {"sizing": {"mode": "fixed_fraction", "fraction": 0.5}},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def ticks_inline(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Ticks queued by the receiver run at once in this process (the task's body)."""
    from apps.strategies import tasks

    queued: list[tuple[Any, ...]] = []

    def apply_async(args: tuple[Any, ...], **options: Any) -> None:
        queued.append(tuple(args))
        tasks.deployment_tick(*args)

    ticks.caches_clear()
    monkeypatch.setattr(tasks.deployment_tick, "apply_async", apply_async)
    yield queued
    ticks.caches_clear()


def feed_bar(instrument: Instrument, frame: pd.DataFrame, capture: Any) -> None:
    """Store one closed bar (a one-row frame) as the live feed does, and run what its
    announcement triggers (paper matching, ticks, sends) through the commit callbacks."""
    with capture(execute=True):
        market_services.candles_store_closed(instrument=instrument, timeframe="1m", frame=frame, source="test")


def bar_ts(index: int) -> datetime:
    return START + timedelta(minutes=index)
