"""Fixtures and helpers for the platform side of backtests (services, tasks, API, admin).

Candles are real (../shared/data/ohlcv), imported with the market-data services, as the
platform stores them. Tasks are run the way this project tests them: the task function called
in the test (its body is one service call), with `django_capture_on_commit_callbacks` standing
in for the commit, and the embedded worker for the live paths (tests/common/live_stack.py).

Two test-only strategies are registered here, hidden from the catalogue (`is_public = False`):
`test_peeking` (uses the next bar's close: look-ahead bias) and `test_exploding` (raises).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from apps.backtests.models import Backtest, JobStatus, MonteCarlo, Optimisation, WalkForward
from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.strategies.base import Strategy
from apps.strategies.registry import register
from tests.conftest import require
from tests.marketdata.ohlcv import OHLCV_DIR

BTC_1H = OHLCV_DIR / "BTC-USDT_1h.csv.gz"


@register
class PeekingStrategy(Strategy):
    """Test only: buys when the NEXT bar closes higher (a deliberate look-ahead)."""

    key = "test_peeking"
    name = "Peeking (test)"
    is_public = False

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        rising = candles["close"].shift(-1) > candles["close"]
        return candles.assign(enter_long=rising, exit_long=~rising)


@register
class ExplodingStrategy(Strategy):
    """Test only: its code raises, as a broken plugin would."""

    key = "test_exploding"
    name = "Exploding (test)"
    is_public = False

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        raise ValueError("division by zero in my indicator")


def import_candles(instrument: Instrument, path: Any = BTC_1H, timeframe: str = "1h") -> None:
    require(path.exists(), f"needs real candles at {path} (the shared/ folder beside the repository)")
    market_services.candles_import_file(path=path, instrument=instrument, timeframe=timeframe)


@pytest.fixture
def btc(db: Any) -> Instrument:
    """BTC/USDT on Binance with its real 1h candles (5,482 bars, 2020-12-01 .. 2021-07-17)."""
    instrument = market_services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    import_candles(instrument)
    return instrument


@dataclass
class Sent:
    """Tasks the services queued (after commit), by task name: [args, ...]."""

    calls: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    # The grid points each optimisation chunk was sent with, by (optimisation id, chunk).
    points: dict[tuple[int, int], Any] = field(default_factory=dict)

    def chunk(self, pk: int, chunk: int, points: Any = None) -> None:
        self.add("optimisation_chunk_run", pk, chunk)
        self.points[(pk, chunk)] = points

    def add(self, name: str, *args: Any) -> None:
        self.calls.setdefault(name, []).append(args)

    def __getitem__(self, name: str) -> list[tuple[Any, ...]]:
        return self.calls.get(name, [])


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Record the task sends instead of publishing them."""
    record = Sent()
    monkeypatch.setattr("apps.backtests.services.backtests._enqueue", lambda pk: record.add("backtest_run", pk))
    monkeypatch.setattr(
        "apps.backtests.services.optimisations._enqueue_coordinator", lambda pk: record.add("optimisation_run", pk)
    )
    monkeypatch.setattr("apps.backtests.services.optimisations._enqueue_chunk", record.chunk)
    monkeypatch.setattr("apps.backtests.services.walkforward._enqueue", lambda pk: record.add("walk_forward_run", pk))
    monkeypatch.setattr("apps.backtests.services.montecarlo._enqueue", lambda pk: record.add("monte_carlo_run", pk))
    return record


@dataclass
class Pushed:
    """Live events sent (after commit) with apps.common.broadcast.send_now."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, user: Any, event: str = "job.progress") -> list[dict[str, Any]]:
        return [data for user_id, name, data in self.events if user_id == user.pk and name == event]

    @property
    def users(self) -> set[int]:
        return {user_id for user_id, _, _ in self.events}


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> Pushed:
    record = Pushed()
    monkeypatch.setattr(
        "apps.common.broadcast.send_now", lambda user_id, event, data: record.events.append((user_id, event, data))
    )
    return record


def run_spec(instrument: Instrument, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of backtest_create for sma_cross 10/30 over the whole stored range."""
    spec: dict[str, Any] = {
        "strategy_key": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "rule_set_id": None,
        "instrument_id": instrument.pk,
        "timeframe": "1h",
        "start_at": None,
        "end_at": None,
        "settings": {"cash": 10_000, "costs": {"fee": 0.001}},
    }
    spec.update(overrides)
    return spec


def reload(job: Backtest | Optimisation | WalkForward | MonteCarlo) -> Any:
    return type(job).objects.get(pk=job.pk)


def finished(job: Any) -> bool:
    return reload(job).status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def stored_range(instrument: Instrument, timeframe: str = "1h") -> tuple[datetime, datetime]:
    series = instrument.series.get(timeframe=timeframe)
    return series.first_ts, series.last_ts


@pytest.fixture
def optuna_dir(settings: Any, tmp_path: Any) -> Iterator[Any]:
    """Optuna's storage for the test: per-study SQLite files in a temporary folder when the test
    database is in memory, else the test database itself, whose pooled connections are closed
    afterwards (or the test database could not be dropped)."""
    from apps.backtests.research.optimise import storage_dispose
    from apps.backtests.services.studies import optuna_storage_url

    settings.OPTUNA_DATA_DIR = str(tmp_path / "optuna")
    yield tmp_path / "optuna"
    storage_dispose(optuna_storage_url(study_name="any"))
