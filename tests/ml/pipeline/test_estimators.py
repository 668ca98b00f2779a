"""Model parameters: defaults, bounds, refusals naming the field; the estimators they build."""

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.estimators import (
    MODEL_KINDS,
    estimator_build,
    estimator_fit,
    model_params_schema,
    model_params_validate,
    predict_proba,
)


def test_defaults_fill_every_parameter():
    params = model_params_validate("hist_gb", {"max_iter": 50})
    assert params["max_iter"] == 50
    assert set(params) == set(model_params_schema("hist_gb"))
    assert isinstance(params["learning_rate"], float)
    assert (
        model_params_validate("lightgbm", None)["n_estimators"]
        == model_params_schema("lightgbm")["n_estimators"]["default"]
    )


def test_a_whole_float_is_accepted_for_an_integer_parameter():
    assert model_params_validate("hist_gb", {"max_iter": 100.0})["max_iter"] == 100


@pytest.mark.parametrize(
    ("kind", "params", "field", "words"),
    [
        ("hist_gb", {"max_iter": 5}, "model_params.max_iter", "between 10 and 2000"),
        ("hist_gb", {"max_iter": 2001}, "model_params.max_iter", "between 10 and 2000"),
        ("hist_gb", {"learning_rate": 0.0}, "model_params.learning_rate", "between 0.001 and 1"),
        ("hist_gb", {"learning_rate": 2}, "model_params.learning_rate", "between"),
        ("hist_gb", {"max_iter": 10.5}, "model_params.max_iter", "whole number"),
        ("hist_gb", {"max_iter": "100"}, "model_params.max_iter", "must be a number"),
        ("hist_gb", {"max_leaf_nodes": True}, "model_params.max_leaf_nodes", "must be a number"),
        ("hist_gb", {"n_estimators": 100}, "model_params.n_estimators", "Unknown parameter 'n_estimators'"),
        ("lightgbm", {"subsample": 1.5}, "model_params.subsample", "between 0.1 and 1"),
        ("lightgbm", {"num_leaves": 1}, "model_params.num_leaves", "between 2 and 1024"),
        ("logistic", {"C": -1.0}, "model_params.C", "between"),
        ("logistic", {"C": float("inf")}, "model_params.C", "must be a number"),
        ("logistic", {"penalty": "l1"}, "model_params.penalty", "Unknown parameter"),
        ("forest", {}, "model_kind", "Unknown model 'forest'"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(kind, params, field, words):
    with pytest.raises(MLInputError) as caught:
        model_params_validate(kind, params)
    assert caught.value.field == field
    assert words in caught.value.message
    assert caught.value.extra == {"fields": {field: [caught.value.message]}}


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_fits_with_missing_values_and_predicts_probabilities(kind):
    # given a learnable problem with a feature that is sometimes missing (and one always missing)
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600), "c": np.nan})
    y = (X["a"] + 0.3 * rng.normal(size=600) > 0).astype(int).to_numpy()
    X.loc[::7, "b"] = np.nan
    # when fitted
    small = {"hist_gb": {"max_iter": 30}, "lightgbm": {"n_estimators": 30, "min_child_samples": 10}, "logistic": {}}
    model = estimator_fit(estimator_build(kind, small[kind], seed=1), X, y)
    p = predict_proba(model, X)
    # then probabilities that separate the classes
    assert p.shape == (600,) and np.all((p >= 0) & (p <= 1))
    assert p[y == 1].mean() > p[y == 0].mean() + 0.3
    assert predict_proba(model, X.iloc[:0]).shape == (0,)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_the_same_seed_gives_the_same_model(kind):
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(800, 4)), columns=list("abcd"))
    y = (X["a"] * X["b"] + 0.5 * rng.normal(size=800) > 0).astype(int).to_numpy()
    params = {"lightgbm": {"n_estimators": 40, "subsample": 0.7, "colsample_bytree": 0.5}}.get(kind, {})
    first = predict_proba(estimator_fit(estimator_build(kind, params, seed=9), X, y), X)
    second = predict_proba(estimator_fit(estimator_build(kind, params, seed=9), X, y), X)
    np.testing.assert_array_equal(first, second)
