"""The stored model: round trip, refusals of a bad artifact, and its signals (the decision rule,
no signal in warm-up, and a tick's window agreeing with the full history)."""

import hashlib
import pickle
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.bundle import (
    FORMAT_VERSION,
    bundle_dumps,
    bundle_loads,
    bundle_predict,
    bundle_signals,
    decision_signals,
)
from apps.ml.pipeline.errors import ModelLoadError
from apps.ml.pipeline.training import train
from tests.ml.pipeline.support import btc_1h, config


@pytest.fixture(scope="module")
def trained():
    candles = btc_1h()
    return candles, train(
        candles, config("hist_gb", decision={"threshold": 0.52, "exit_threshold": 0.5, "allow_short": True})
    )


def test_round_trip_keeps_the_model(trained):
    candles, result = trained
    data, digest = bundle_dumps(result.bundle)
    assert digest == hashlib.sha256(data).hexdigest()
    loaded = bundle_loads(data, digest)
    assert loaded.features == result.bundle.features and loaded.warmup == result.bundle.warmup
    pd.testing.assert_series_equal(bundle_predict(loaded, candles), bundle_predict(result.bundle, candles))


def test_a_corrupted_artifact_is_refused_before_loading(trained):
    data, digest = bundle_dumps(trained[1].bundle)
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(ModelLoadError) as caught:
        bundle_loads(bytes(damaged), digest)
    assert caught.value.message == "The model file is corrupt (hash mismatch)."
    assert caught.value.code == "model_load_failed"
    assert caught.value.extra == {"fields": {"artifact": [caught.value.message]}}


def test_bytes_that_do_not_unpickle_are_refused_with_the_reason():
    data = zlib.compress(b"not a pickle at all")
    with pytest.raises(ModelLoadError) as caught:
        bundle_loads(data, hashlib.sha256(data).hexdigest())
    assert caught.value.message.startswith("The model file could not be loaded: UnpicklingError")


def test_something_else_than_a_bundle_is_refused():
    data = zlib.compress(pickle.dumps({"estimator": None}))
    with pytest.raises(ModelLoadError) as caught:
        bundle_loads(data, hashlib.sha256(data).hexdigest())
    assert caught.value.message == "The model file holds a dict, not a model bundle."


def test_another_format_version_is_refused(trained):
    data, digest = bundle_dumps(replace(trained[1].bundle, format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelLoadError) as caught:
        bundle_loads(data, digest)
    assert f"format version {FORMAT_VERSION + 1}" in caught.value.message


def test_the_decision_rule_on_hand_set_probabilities():
    p = np.array([0.70, 0.55, 0.54, 0.50, 0.49, 0.45, 0.30, np.nan])
    long_only = decision_signals(p, {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False})
    assert long_only["enter_long"].tolist() == [True, True, False, False, False, False, False, False]
    assert long_only["exit_long"].tolist() == [False, False, False, False, True, True, True, False]
    assert not long_only["enter_short"].any() and not long_only["exit_short"].any()
    both = decision_signals(p, {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": True})
    # short entries at p <= 0.45, short exits at p > 0.5
    assert both["enter_short"].tolist() == [False, False, False, False, False, True, True, False]
    assert both["exit_short"].tolist() == [True, True, True, False, False, False, False, False]


def test_signals_follow_the_probabilities_and_none_in_warm_up(trained):
    candles, result = trained
    bundle = result.bundle
    frame = bundle_signals(bundle, candles)
    assert frame.index.equals(candles.index)
    assert list(frame.columns[:5]) == ["open", "high", "low", "close", "volume"]
    proba = frame["proba"]
    assert proba.iloc[: bundle.warmup - 1].isna().all() and proba.iloc[bundle.warmup - 1 :].notna().all()
    warm = frame.iloc[: bundle.warmup - 1]
    assert not warm[["enter_long", "exit_long", "enter_short", "exit_short"]].any().any()
    known = frame.iloc[bundle.warmup - 1 :]
    assert (known["enter_long"] == (known["proba"] >= 0.52)).all()
    assert (known["exit_long"] == (known["proba"] < 0.5)).all()
    assert (known["enter_short"] == (known["proba"] <= 0.48)).all()
    assert (known["exit_short"] == (known["proba"] > 0.5)).all()
    assert known["enter_long"].any() and known["enter_short"].any()


def test_a_tick_window_of_warmup_bars_gives_the_backtest_signal(trained):
    # given the signals over the full history (what a backtest computes)
    candles, result = trained
    bundle = result.bundle
    full = bundle_signals(bundle, candles)
    rng = np.random.default_rng(2)
    for t in rng.integers(bundle.warmup, len(candles), 40):
        # when a deployment's tick sees only the newest `warmup` bars
        tick = bundle_signals(bundle, candles.iloc[t - bundle.warmup + 1 : t + 1]).iloc[-1]
        # then its last row is the backtest's row t
        assert tick["proba"] == full["proba"].iloc[t]
        for column in ("enter_long", "exit_long", "enter_short", "exit_short"):
            assert tick[column] == full[column].iloc[t]


def test_too_few_candles_give_no_prediction(trained):
    candles, result = trained
    frame = bundle_signals(result.bundle, candles.iloc[: result.bundle.warmup - 1])
    assert frame["proba"].isna().all() and not frame["enter_long"].any()


def test_newest_rows_only_on_a_long_window(trained):
    # given a window four times the warm-up (what a deployment's tick may be handed)
    candles, result = trained
    bundle = result.bundle
    window = candles.iloc[-4 * bundle.warmup :] if len(candles) >= 4 * bundle.warmup else candles
    full = bundle_signals(bundle, window)
    # when only the newest row is asked for
    tick = bundle_signals(bundle, window, newest=1)
    # then only that row has a probability, the same one
    assert tick["proba"].iloc[:-1].isna().all()
    assert tick["proba"].iloc[-1] == full["proba"].iloc[-1]
    assert not tick[["enter_long", "exit_long", "enter_short", "exit_short"]].iloc[:-1].any().any()
