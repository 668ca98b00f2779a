"""Helpers of the ML app's platform tests: real candles stored with the market-data storage, a
small but real configuration (HistGradientBoosting with few iterations, three purged folds), the
task sends recorded instead of published, and the live events recorded.

Nothing here mocks the pipeline: trainings run for real, on real BTC/USDT 1h candles, kept to a
few thousand bars so the suite stays fast.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.ml import runtime, services
from apps.ml.models import MLStrategy, ModelVersion
from tests.marketdata.ohlcv import load_candles

BARS = 2000
SMALL_MODEL = {"max_iter": 20, "max_leaf_nodes": 7, "min_samples_leaf": 20}
FEATURES = ["ret_1", "ret_3", "ret_12", "vol_12", "rsi_14", "bb_pctb", "volume_z"]


def real_candles(bars: int = BARS, name: str = "BTC-USDT_1h") -> pd.DataFrame:
    """The newest ``bars`` real candles of ``name``."""
    return load_candles(name).iloc[-bars:]


def store(instrument: Instrument, frame: pd.DataFrame, timeframe: str = "1h") -> None:
    candles_write(instrument=instrument, timeframe=timeframe, frame=frame, source="test")


def make_instrument(symbol: str = "BTC/USDT", venue: str = "binance") -> Instrument:
    return market_services.instrument_get_or_create(
        venue=venue, symbol=symbol, tick_size="0.01", lot_size="0.00001", min_notional="10"
    )


def config(instrument: Instrument, **overrides: Any) -> dict[str, Any]:
    """A small, valid ML strategy input on ``instrument``'s 1h candles."""
    data: dict[str, Any] = {
        "name": "BTC direction",
        "instrument_ids": [instrument.pk],
        "timeframe": "1h",
        "features": list(FEATURES),
        "label": {"kind": "forward", "horizon": 6, "threshold": 0.0},
        "model_kind": "hist_gb",
        "model_params": dict(SMALL_MODEL),
        "decision": {"threshold": 0.52, "exit_threshold": 0.5, "allow_short": False},
        "validation": {"n_splits": 3, "embargo": 6, "history_bars": BARS},
    }
    data.update(overrides)
    return data


def fresh(version: ModelVersion) -> ModelVersion:
    """The version as stored now."""
    return ModelVersion.objects.get(pk=version.pk)


def corrupt(version: ModelVersion) -> None:
    """Flip one byte of the stored model file (its SHA-256 no longer matches)."""
    data = bytearray(bytes(ModelVersion.objects.get(pk=version.pk).artifact))
    data[len(data) // 2] ^= 0xFF
    ModelVersion.objects.filter(pk=version.pk).update(artifact=bytes(data))


def paper_account(owner: Any, usdt: str = "100000", **costs: Any) -> Any:
    """A funded paper account of ``owner`` (costs: the paper venue's, default a 0.1 % fee)."""
    from apps.accounts.services import account_connect_paper

    return account_connect_paper(
        owner=owner, name="Paper", balances={"USDT": Decimal(usdt)}, costs=costs or {"fee": 0.001}
    )


@dataclass
class Sent:
    """Training tasks the services queued (after commit): version ids."""

    versions: list[int] = field(default_factory=list)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()
    monkeypatch.setattr("apps.ml.services.training._enqueue", record.versions.append)
    return record


@dataclass
class Pushed:
    """Live events sent (after commit) with apps.common.broadcast.send_now."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, user: Any, event: str) -> list[dict[str, Any]]:
        return [data for user_id, name, data in self.events if user_id == user.pk and name == event]


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> Pushed:
    record = Pushed()
    monkeypatch.setattr(
        "apps.common.broadcast.send_now", lambda user_id, event, data: record.events.append((user_id, event, data))
    )
    return record


@pytest.fixture
def btc(db: Any) -> Instrument:
    """BTC/USDT with its newest BARS real 1h candles stored."""
    instrument = make_instrument()
    store(instrument, real_candles())
    return instrument


@pytest.fixture
def ml(alice: Any, btc: Instrument) -> MLStrategy:
    """alice's ML strategy of ``config`` on ``btc``, not trained yet."""
    return services.ml_strategy_create(owner=alice, data=config(btc))


@pytest.fixture(autouse=True)
def _fresh_models() -> Iterator[None]:
    """Every test loads models afresh (the SQLite test database hands out the same ids again)."""
    runtime.caches_clear()
    yield
    runtime.caches_clear()
