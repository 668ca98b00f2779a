"""train(): reproducibility, no leakage, metrics that match an independent computation, and the
refusals of bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from apps.ml.pipeline.bundle import bundle_dumps, bundle_loads, bundle_predict
from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.estimators import MODEL_KINDS
from apps.ml.pipeline.training import TrainConfig, train
from tests.marketdata.ohlcv import load_candles
from tests.ml.pipeline.support import FEATURES, btc_1h, config


@pytest.fixture(scope="module")
def trained():
    candles = btc_1h()
    return candles, train(candles, config("hist_gb"))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_same_data_config_and_seed_give_the_same_model_and_metrics(kind):
    # given the same candles, configuration and seed, trained twice
    candles = btc_1h(2500)
    first = train(candles, config(kind))
    second = train(candles, config(kind))
    # then the same metrics, folds, importances, reference and out-of-sample predictions
    assert first.metrics == second.metrics
    assert first.folds == second.folds
    assert first.feature_importances == second.feature_importances
    assert first.reference == second.reference
    pd.testing.assert_series_equal(first.oos_proba, second.oos_proba)
    # and the same model: the stored artifacts predict the same, and as the in-memory model
    loaded = [bundle_loads(*bundle_dumps(result.bundle)) for result in (first, second)]
    in_memory = bundle_predict(first.bundle, candles)
    assert in_memory.notna().sum() == len(candles) - (first.bundle.warmup - 1)
    for bundle in loaded:
        pd.testing.assert_series_equal(bundle_predict(bundle, candles), in_memory)


def test_a_different_seed_changes_a_randomised_model():
    candles = btc_1h(2500)
    first = train(candles, config("lightgbm"))
    other = train(candles, config("lightgbm", seed=8))
    assert not first.oos_proba.equals(other.oos_proba)


def test_shuffled_labels_give_chance_out_of_sample_on_real_candles():
    # given real candles, and labels shuffled so that nothing can be learnt honestly: whatever
    # the model learns on a fold's training labels, its test labels are independent of its scores
    candles = load_candles("BTC-USDT_1h")
    labels = _independent_forward_labels(candles, 6)
    auc_z, accuracy_z = [], []
    for seed in range(1, 6):
        result = train(candles, config("hist_gb", seed=seed), shuffle_labels=True)
        n = result.metrics["n_oos"]
        assert n > 3500 and labels.notna().sum() > n
        positives = round(result.metrics["base_rate"] * n)
        # so the out-of-sample AUC is the AUC of random scores: mean 0.5, standard error
        # sqrt((n + 1) / (12 n1 n0)) (Mann-Whitney under the null), ~0.009 here
        se = math.sqrt((n + 1) / (12 * positives * (n - positives)))
        auc_z.append((result.metrics["auc"] - 0.5) / se)
        # and the accuracy the chance accuracy of its own mix of predictions, q b + (1 - q)(1 - b),
        # with standard error sqrt(b (1 - b) / n) given the predictions
        q = float((result.oos_proba >= 0.5).mean())
        b = result.metrics["base_rate"]
        chance = q * b + (1 - q) * (1 - b)
        accuracy_z.append((result.metrics["accuracy"] - chance) / math.sqrt(b * (1 - b) / n))
    # then no shuffle is far from chance (4 standard errors: p < 1e-4 each), and their mean is
    # within 3 standard errors of the mean of 5 (a leak shows as a consistent excess, not a fluke)
    assert max(abs(z) for z in auc_z) < 4 and max(abs(z) for z in accuracy_z) < 4, (auc_z, accuracy_z)
    assert abs(np.mean(auc_z)) < 3 / math.sqrt(5), auc_z
    assert abs(np.mean(accuracy_z)) < 3 / math.sqrt(5), accuracy_z


def _independent_forward_labels(candles: pd.DataFrame, horizon: int) -> pd.Series:
    close = candles["close"]
    future = close.shift(-horizon)
    return (future / close - 1 > 0).astype(float).where(future.notna())


def test_overall_and_fold_metrics_match_an_independent_computation(trained):
    candles, result = trained
    # labels computed here from the definition, the predictions from the result
    labels = _independent_forward_labels(candles, 6).reindex(result.oos_proba.index)
    y, p = labels.to_numpy(), result.oos_proba.to_numpy()
    assert result.metrics["n_oos"] == y.size == sum(f["n_test"] for f in result.folds)
    assert result.metrics["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)))
    assert result.metrics["auc"] == pytest.approx(roc_auc_score(y, p))
    assert result.metrics["log_loss"] == pytest.approx(log_loss(y, p))
    for fold in result.folds:
        window = result.oos_proba.loc[fold["test"][0] : fold["test"][1]]
        assert len(window) == fold["n_test"]
        assert fold["auc"] == pytest.approx(roc_auc_score(labels.loc[window.index], window))
    starts = [pd.Timestamp(f["test"][0]) for f in result.folds]
    assert starts == sorted(starts) and len(result.folds) == 4
    for fold in result.folds:
        # purged and embargoed: the last training bar is more than horizon + embargo bars before the test
        assert pd.Timestamp(fold["test"][0]) - pd.Timestamp(fold["train"][1]) > pd.Timedelta(hours=6)


def test_result_carries_the_backtest_importances_reference_and_bundle(trained):
    candles, result = trained
    backtest = result.oos_backtest
    assert 2 <= len(backtest["equity"]) <= 500
    stamps = [point[0] for point in backtest["equity"]]
    assert stamps == sorted(stamps)
    assert backtest["equity"][0][1] == pytest.approx(10_000.0)
    assert pd.Timestamp(backtest["start"]) == result.oos_proba.index[0]
    for key in ("total_return", "sharpe", "max_drawdown", "trades"):
        assert result.metrics[key] == backtest["metrics"][key]
    assert isinstance(result.metrics["trades"], int) and result.metrics["trades"] > 0
    names = list(result.bundle.features)
    assert set(result.feature_importances) == set(names)
    assert sum(result.feature_importances.values()) == pytest.approx(1.0)
    assert set(result.reference) == set(names)
    assert result.bundle.warmup == (250 + 1) * 4  # htf_rsi_14 on 4h bars of 1h candles
    assert result.bundle.label == {"kind": "forward", "horizon": 6, "threshold": 0.0, "stop": 0.01, "target": 0.02}
    assert result.data_start == candles.index[0] and result.data_end == candles.index[-1]
    assert result.library_versions["scikit-learn"]
    assert 0.3 < result.base_rate < 0.7


def test_lightgbm_importances_are_gain_fractions():
    result = train(btc_1h(2500), config("lightgbm"))
    values = np.array(list(result.feature_importances.values()))
    assert values.sum() == pytest.approx(1.0) and (values >= 0).all() and (values > 0).sum() >= 3


def test_pooled_instruments_are_merged_in_time_and_the_first_is_backtested():
    btc, eth = btc_1h(2000), load_candles("ETH-USDT_1h").iloc[-2000:]
    pooled = train([btc, eth], config("logistic"))
    alone = train(btc, config("logistic"))
    assert pooled.n_samples == pytest.approx(2 * alone.n_samples, abs=2)
    # the out-of-sample predictions and backtest reported are the first instrument's
    assert pooled.oos_proba.index.is_unique and pooled.oos_proba.index.isin(btc.index).all()
    assert pd.Timestamp(pooled.oos_backtest["start"]) == pooled.oos_proba.index[0]
    assert pooled.metrics["n_oos"] == pytest.approx(2 * len(pooled.oos_proba), abs=2)


def test_progress_goes_from_zero_to_one_through_the_folds():
    seen: list[tuple[float, str]] = []
    train(btc_1h(1500), config("logistic"), progress=lambda fraction, stage: seen.append((fraction, stage)))
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert [s for _, s in seen if s.startswith("Fold")] == [f"Fold {k} of 4" for k in range(1, 5)]


def test_one_class_labels_are_refused_with_a_suggestion():
    with pytest.raises(MLInputError) as caught:
        train(btc_1h(1500), config("hist_gb", label={"kind": "forward", "horizon": 6, "threshold": 0.45}))
    assert caught.value.field == "label"
    assert "no bar is labelled 1" in caught.value.message
    assert "lower the threshold or use a longer horizon" in caught.value.message


def test_one_class_in_a_fold_training_set_is_refused():
    # given a market that only rises for its first 1500 bars, then wanders
    rng = np.random.default_rng(4)
    steps = np.r_[np.full(1500, 0.001), rng.normal(0, 0.01, 1500)]
    close = 100 * np.exp(np.cumsum(steps))
    index = pd.date_range("2024-01-01", periods=close.size, freq="1h", tz="UTC")
    candles = pd.DataFrame(
        {
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": 1.0 + rng.random(close.size),
        },
        index=index,
    )
    # when trained with folds whose first training set lies in the rise
    with pytest.raises(MLInputError) as caught:
        train(candles, config("logistic", features=FEATURES, higher_timeframe=""))
    # then the refusal says which fold and which class is missing
    assert caught.value.field == "label"
    assert "in the training set of fold 1" in caught.value.message
    assert "no bar is labelled 0 (not up)" in caught.value.message


def test_too_little_history_is_refused():
    with pytest.raises(MLInputError) as caught:
        train(btc_1h(700), config("hist_gb", validation={"n_splits": 5, "embargo": 6}))
    assert caught.value.field == "history"
    assert "would train on" in caught.value.message


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"features": ["ret_1", "alpha_1"]}, "features"),
        ({"features": ["htf_rsi_14"], "higher_timeframe": ""}, "features"),
        ({"timeframe": "2d"}, "timeframe"),
        ({"higher_timeframe": "3m"}, "higher_timeframe"),
        ({"model_kind": "svm"}, "model_kind"),
        ({"model_params": {"max_iter": 0}}, "model_params.max_iter"),
        ({"label": {"kind": "forward", "horizon": -1}}, "label.horizon"),
        ({"decision": {"threshold": 0.4}}, "decision.threshold"),
        ({"decision": {"threshold": 0.6, "exit_threshold": 0.7}}, "decision.exit_threshold"),
        ({"decision": {"allow_short": "yes"}}, "decision.allow_short"),
        ({"validation": {"n_splits": 1}}, "validation.n_splits"),
        ({"validation": {"embargo": -1}}, "validation.embargo"),
        ({"seed": -5}, "seed"),
        ({"fee": 0.5}, "fee"),
    ],
)
def test_config_refuses_bad_input_naming_the_field(overrides, field):
    with pytest.raises(MLInputError) as caught:
        config("hist_gb", **overrides)
    assert caught.value.field == field
    assert caught.value.extra["fields"] == {field: [caught.value.message]}


def test_config_round_trips_through_a_dict():
    original = config("lightgbm")
    assert TrainConfig.from_dict(original.as_dict()) == original
    assert original.as_dict()["model_params"]["n_estimators"] == 40
    assert original.n_splits == 4 and original.embargo == 6
