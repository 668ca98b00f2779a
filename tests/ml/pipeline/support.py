"""Shared pieces of the pipeline tests: real candles and small but real configurations."""

from typing import Any

import pandas as pd

from apps.ml.pipeline.training import TrainConfig
from tests.marketdata.ohlcv import load_candles

FEATURES = ["ret_1", "ret_3", "ret_12", "vol_12", "rsi_14", "macd_hist", "bb_pctb", "volume_z", "dist_support"]
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "hist_gb": {"max_iter": 40, "max_leaf_nodes": 15, "min_samples_leaf": 40},
    "lightgbm": {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 40, "subsample": 0.8},
    "logistic": {"C": 0.5},
}


def btc_1h(bars: int = 3000) -> pd.DataFrame:
    return load_candles("BTC-USDT_1h").iloc[-bars:]


def config(kind: str = "hist_gb", **overrides: Any) -> TrainConfig:
    data: dict[str, Any] = {
        "timeframe": "1h",
        "higher_timeframe": "4h",
        "features": [*FEATURES, "htf_rsi_14", "htf_ret_1"],
        "label": {"kind": "forward", "horizon": 6, "threshold": 0.0},
        "model_kind": kind,
        "model_params": SMALL_PARAMS[kind],
        "decision": {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False},
        "validation": {"n_splits": 4, "embargo": 6},
        "seed": 7,
    }
    data.update(overrides)
    return TrainConfig.from_dict(data)
