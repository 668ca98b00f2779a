"""ML training and tick inference on real candles (issue 7).

Run: `.venv/bin/python bench/ml_train.py --json` from the repository root (no Django settings:
the pipeline is pure). Trains HistGradientBoosting (default parameters) on the newest 100,000
one-minute EUR/USD candles of ../shared/data/ohlcv (the only 1m / 5m series with >= 100k bars)
with 30 features (21 base + 9 of the 15-minute higher timeframe), a 12-bar forward-return label
and a 5-split purged walk-forward (embargo 12 bars), and reports:

- ``seconds``: the whole ``train()`` call (features, labels, folds, out-of-sample backtest,
  final fit, importances, drift reference); numba kernels are compiled / loaded from cache
  beforehand, as a worker does at start;
- ``tick_ms``: the median time of ``bundle_signals`` on a tick's window (``warmup`` bars) at 50
  different bars, after 5 warm-up calls;
- ``oos_auc`` and ``shuffled_auc``: the out-of-sample AUC, and the same pipeline with the labels
  shuffled (which must be ~0.5: anything above says the validation leaks);
- stage seconds, sample and feature counts, the warm-up, and the machine.

Targets: seconds <= 60 on the 2-core machine, tick_ms <= 20.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.ml.pipeline.bundle import bundle_signals  # noqa: E402
from apps.ml.pipeline.features import features_build  # noqa: E402
from apps.ml.pipeline.labels import LabelSpec, labels_build  # noqa: E402
from apps.ml.pipeline.training import TrainConfig, library_versions, train  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ohlcv" / "EUR-USD_1m.csv.gz"
ROWS = 100_000
TICKS = 50
FEATURES = [
    "ret_1",
    "ret_3",
    "ret_6",
    "ret_12",
    "ret_24",
    "ret_48",
    "vol_12",
    "vol_48",
    "rsi_14",
    "macd_line",
    "macd_hist",
    "bb_pctb",
    "bb_width",
    "atr_pct",
    "volume_z",
    "dist_support",
    "dist_resistance",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "htf_ret_1",
    "htf_ret_3",
    "htf_ret_12",
    "htf_vol_12",
    "htf_rsi_14",
    "htf_macd_hist",
    "htf_bb_pctb",
    "htf_atr_pct",
    "htf_dist_support",
]
CONFIG = {
    "timeframe": "1m",
    "higher_timeframe": "15m",
    "features": FEATURES,
    "label": {"kind": "forward", "horizon": 12, "threshold": 0.0},
    "model_kind": "hist_gb",
    "model_params": {},
    "decision": {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False},
    "validation": {"n_splits": 5, "embargo": 12},
    "seed": 42,
    "fee": 0.0001,
}


def load_candles() -> pd.DataFrame:
    frame = pd.read_csv(DATA)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp")
    return frame.astype("float64").iloc[-ROWS:]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def warm_up(candles: pd.DataFrame, config: TrainConfig) -> None:
    """Compile or load the numba kernels (indicators, labels, backtest engine) untimed."""
    from apps.backtests.engine import warm_up as engine_warm_up

    head = candles.iloc[:5000]
    features_build(head, config.features, timeframe=config.timeframe, higher_timeframe=config.higher_timeframe)
    labels_build(head, LabelSpec(kind="triple_barrier", horizon=3))
    engine_warm_up()


def tick_ms(bundle: Any, candles: pd.DataFrame) -> tuple[float, float]:
    """Median and max ms of bundle_signals on windows of ``warmup`` bars ending at TICKS bars."""
    window = bundle.warmup
    ends = np.linspace(len(candles) - 5000, len(candles), TICKS + 5).astype(int)
    times = []
    for n, end in enumerate(ends):
        frame = candles.iloc[end - window : end]
        started = time.perf_counter()
        bundle_signals(bundle, frame)
        if n >= 5:
            times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times), max(times)


def run() -> dict[str, Any]:
    candles = load_candles()
    config = TrainConfig.from_dict(CONFIG)
    warm_up(candles, config)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = train(candles, config)
    seconds = time.perf_counter() - started
    median_ms, max_ms = tick_ms(result.bundle, candles)
    started = time.perf_counter()
    shuffled = train(candles, config, shuffle_labels=True)
    shuffled_seconds = time.perf_counter() - started
    n_oos = int(result.metrics["n_oos"])
    return {
        "seconds": round(seconds, 2),
        "tick_ms": round(median_ms, 2),
        "tick_ms_max": round(max_ms, 2),
        "oos_auc": round(result.metrics["auc"], 4),
        "shuffled_auc": round(shuffled.metrics["auc"], 4),
        # The AUC of random scores on n_oos samples has a standard error of about sqrt(1/(3 n))
        # when the classes are balanced (Hanley & McNeil): the chance band the shuffled AUC lies in.
        "auc_chance_se": round(float(np.sqrt(1.0 / (3.0 * n_oos))), 4),
        "oos_accuracy": round(result.metrics["accuracy"], 4),
        "shuffled_accuracy": round(shuffled.metrics["accuracy"], 4),
        "oos_log_loss": round(result.metrics["log_loss"], 4),
        "base_rate": round(result.base_rate, 4),
        "oos_sharpe": result.metrics.get("sharpe"),
        "oos_trades": result.metrics.get("trades"),
        "stages": {name: round(value, 2) for name, value in result.timings.items()},
        "shuffled_seconds": round(shuffled_seconds, 2),
        "n_candles": len(candles),
        "n_samples": result.n_samples,
        "n_oos": n_oos,
        "n_features": len(config.features),
        "warmup_bars": result.bundle.warmup,
        "data": f"{DATA.name} {candles.index[0]:%Y-%m-%d %H:%M} .. {candles.index[-1]:%Y-%m-%d %H:%M} UTC",
        "machine": {
            "cpu": cpu_model(),
            "nproc": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "libraries": library_versions(),
        },
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: indented)")
    args = parser.parse_args()
    report = run()
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
