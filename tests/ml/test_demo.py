"""`seed_demo` (what `make run` starts with) gives Alice the demo ML strategy: on the real
BTC/USDT candles, with a promoted model, a daily schedule and a drift history; a second run
creates nothing."""

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.core.management import call_command

from apps.marketdata.storage import candles_frame
from apps.ml import demo
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.strategies.models import Deployment
from tests.marketdata.ohlcv import load_candles
from tests.marketdata.test_demo import small_markets  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

# Real 1h candles: above demo.MIN_BARS, below demo.HISTORY_BARS (it trains on all of them), and
# enough for every drift check to have a whole window after the features' warm-up.
BARS = 3800


@pytest.fixture
def candle_dir(tmp_path: Path) -> Path:
    """A DEMO_CANDLES_DIR with only the newest real BTC/USDT 1h candles (the other demo markets
    are generated, small)."""
    frame = load_candles("BTC-USDT_1h").iloc[-BARS:]
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(tmp_path / "BTC-USDT_1h.csv.gz", index_label="timestamp", compression="gzip")
    return tmp_path


def seed() -> None:
    with open("/dev/null", "w") as sink:
        call_command("seed_demo", stdout=sink)


def test_demo_has_a_trained_ml_strategy_with_schedule_and_drift_history(
    settings: Any,
    candle_dir: Path,
    small_markets: None,  # noqa: F811
) -> None:
    settings.DEMO_CANDLES_DIR = str(candle_dir)
    settings.DEMO_FETCH_LIVE = False

    seed()

    ml = MLStrategy.objects.get(name=demo.NAME)
    assert ml.owner.email == "alice@demo.local"
    instrument = ml.instruments.get()
    assert (instrument.venue, instrument.symbol, instrument.is_synthetic, ml.timeframe) == (
        "binance",
        "BTC/USDT",
        False,
        "1h",
    )
    assert ml.model_kind == "hist_gb"
    version = ml.promoted_version
    assert version is not None and version.status == ModelVersion.Status.PROMOTED and version.trigger == "demo"
    assert version.n_samples > 0 and version.artifact_sha256 and 0.0 < version.metrics["auc"] < 1.0
    assert version.feature_importances and len(version.oos_backtest["equity"]) > 1
    # The daily schedule, as a beat entry at 03:00 UTC.
    assert ml.schedule is not None and ml.schedule.enabled
    assert (ml.schedule.crontab.hour, ml.schedule.crontab.minute) == ("3", "0")
    # The drift history: DRIFT_POINTS checks DRIFT_STEP bars apart, the newest at the last bar.
    checks = list(DriftCheck.objects.filter(ml_strategy=ml).order_by("checked_at"))
    assert len(checks) == demo.DRIFT_POINTS
    stored = candles_frame(instrument, "1h").index
    positions = [stored.get_loc(pd.Timestamp(check.checked_at)) for check in checks]
    assert positions[-1] == BARS - 1
    assert {b - a for a, b in itertools.pairwise(positions)} == {demo.DRIFT_STEP}
    assert all(c.version_id == version.pk and c.n_bars == demo.DRIFT_WINDOW and c.psi for c in checks)

    # A second run creates nothing.
    counts = (MLStrategy.objects.count(), ModelVersion.objects.count(), DriftCheck.objects.count())
    seed()
    assert (MLStrategy.objects.count(), ModelVersion.objects.count(), DriftCheck.objects.count()) == counts


def test_demo_is_left_out_without_a_long_enough_series(settings: Any, small_markets: None) -> None:  # noqa: F811
    # Generated demo markets with little history (small_markets): no series reaches MIN_BARS.
    settings.DEMO_CANDLES_DIR = ""
    settings.DEMO_FETCH_LIVE = False
    lines: list[str] = []
    seed()

    assert demo.demo_ml_seed(log=lines.append) is None
    assert not MLStrategy.objects.exists()
    assert lines and "no demo ML strategy" in lines[0]


@pytest.fixture
def replay_dir(tmp_path: Path) -> Path:
    """A DEMO_CANDLES_DIR with 12,000 real BTC/USDT 1m candles: the replay preloads half of them
    (6,000, above demo.MIN_BARS) and replays the rest."""
    frame = load_candles("BTC-USDT_1m").iloc[:12000]
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(tmp_path / "BTC-USDT_1m.csv.gz", index_label="timestamp", compression="gzip")
    return tmp_path


def test_with_a_long_replay_the_demo_model_trains_on_it_and_trades_it_on_paper(
    settings: Any,
    replay_dir: Path,
    small_markets: None,  # noqa: F811
) -> None:
    settings.DEMO_CANDLES_DIR = str(replay_dir)
    settings.DEMO_FETCH_LIVE = False

    seed()

    ml = MLStrategy.objects.get(name=demo.NAME)
    instrument = ml.instruments.get()
    assert (instrument.venue, instrument.symbol, ml.timeframe) == ("replay", "BTC/USDT", "1m")
    assert (ml.label["kind"], ml.label["horizon"], ml.label["threshold"]) == ("forward", 60, 0.003)
    assert ml.promoted_version is not None and ml.promoted_version.status == ModelVersion.Status.PROMOTED
    deployment = Deployment.objects.get(strategy_key="ml", params__model=ml.pk)
    assert deployment.owner == ml.owner and deployment.status == "paper"
    assert deployment.account.name == demo.ACCOUNT_NAME and deployment.timeframe == "1m"
    assert list(deployment.instruments.all()) == [instrument]

    # A second run deploys nothing more.
    seed()
    assert Deployment.objects.filter(strategy_key="ml").count() == 1
