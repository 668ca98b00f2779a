"""The three model families, their parameters (validated, with bounds) and importances.

- ``logistic``: median imputation, standardisation, L2 logistic regression; the baseline a
  tree model has to beat. Imputation because NaN is a legitimate feature value here (no
  support level nearby).
- ``hist_gb``: scikit-learn's HistGradientBoostingClassifier, early stopping off (its
  validation split would be random, i.e. would look ahead, and change with the data size) and
  seeded.
- ``lightgbm``: LGBMClassifier, seeded, ``deterministic=True`` with row-wise histograms and two
  threads, so that the same data give the same model.

Trees take NaN as is (they learn which side missing values go to).

Threads: every fit and prediction runs single-threaded (:func:`single_threaded`, LightGBM's
``n_jobs=1``). On this 2-core machine the Celery workers share the cores, and OpenMP's
spin-waiting made two threads 4-10x *slower* than one as soon as another process was busy
(a 5,000-row HistGradientBoosting fit: 0.3 s on one thread, 20 s on two under load; a one-row
prediction 1.4 ms against 15 ms). One thread costs little when the machine is idle.
"""

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.ml.pipeline.errors import MLInputError

MODEL_KINDS = ("logistic", "hist_gb", "lightgbm")


@dataclass(frozen=True)
class ParamBound:
    default: float | int
    low: float
    high: float
    integer: bool
    help: str


PARAMS: dict[str, dict[str, ParamBound]] = {
    "logistic": {
        "C": ParamBound(1.0, 1e-4, 1e4, False, "Inverse regularisation strength"),
        "max_iter": ParamBound(1000, 50, 10_000, True, "Solver iterations"),
    },
    "hist_gb": {
        "max_iter": ParamBound(200, 10, 2000, True, "Boosting iterations (trees)"),
        "learning_rate": ParamBound(0.05, 0.001, 1.0, False, "Shrinkage per tree"),
        "max_leaf_nodes": ParamBound(31, 2, 256, True, "Leaves per tree"),
        "min_samples_leaf": ParamBound(100, 1, 100_000, True, "Samples per leaf, at least"),
        "l2_regularization": ParamBound(1.0, 0.0, 1000.0, False, "L2 penalty on leaf values"),
        "max_depth": ParamBound(0, 0, 64, True, "Tree depth limit (0 = none)"),
    },
    "lightgbm": {
        "n_estimators": ParamBound(200, 10, 5000, True, "Boosting iterations (trees)"),
        "learning_rate": ParamBound(0.05, 0.001, 1.0, False, "Shrinkage per tree"),
        "num_leaves": ParamBound(31, 2, 1024, True, "Leaves per tree"),
        "min_child_samples": ParamBound(100, 1, 100_000, True, "Samples per leaf, at least"),
        "subsample": ParamBound(1.0, 0.1, 1.0, False, "Fraction of rows per tree"),
        "colsample_bytree": ParamBound(1.0, 0.1, 1.0, False, "Fraction of features per tree"),
        "reg_lambda": ParamBound(1.0, 0.0, 1000.0, False, "L2 penalty on leaf values"),
    },
}


def model_kind_validate(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise MLInputError(f"Unknown model {kind!r}; use one of {', '.join(MODEL_KINDS)}.", field="model_kind")
    return kind


def model_params_schema(kind: str) -> dict[str, dict[str, Any]]:
    """The parameters of ``kind`` with default, bounds, type and help (for forms and the API)."""
    return {
        name: {
            "default": b.default,
            "low": b.low,
            "high": b.high,
            "type": "int" if b.integer else "float",
            "help": b.help,
        }
        for name, b in PARAMS[model_kind_validate(kind)].items()
    }


def model_params_validate(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every parameter of ``kind``: the given ones checked (type, bounds), the rest defaulted.
    MLInputError(field="model_params.<name>") for an unknown or invalid one."""
    bounds = PARAMS[model_kind_validate(kind)]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise MLInputError("Model parameters must be an object.", field="model_params")
    for name in params:
        if name not in bounds:
            raise MLInputError(
                f"Unknown parameter {name!r} for {kind}; use {', '.join(bounds)}.", field=f"model_params.{name}"
            )
    out: dict[str, Any] = {}
    for name, bound in bounds.items():
        value = params.get(name, bound.default)
        field = f"model_params.{name}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MLInputError(f"{name} must be a number.", field=field)
        if bound.integer:
            if float(value) != int(value):
                raise MLInputError(f"{name} must be a whole number.", field=field)
            value = int(value)
        else:
            value = float(value)
        if not bound.low <= value <= bound.high:
            raise MLInputError(f"{name} must be between {bound.low:g} and {bound.high:g}.", field=field)
        out[name] = value
    return out


def estimator_build(kind: str, params: Mapping[str, Any] | None, *, seed: int) -> Any:
    """An unfitted sklearn-compatible classifier (``fit`` / ``predict_proba``) of ``kind``."""
    p = model_params_validate(kind, params)
    if kind == "logistic":
        return make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=p["C"], max_iter=p["max_iter"], random_state=seed),
        )
    if kind == "hist_gb":
        model = HistGradientBoostingClassifier(
            max_iter=p["max_iter"],
            learning_rate=p["learning_rate"],
            max_leaf_nodes=p["max_leaf_nodes"],
            min_samples_leaf=p["min_samples_leaf"],
            l2_regularization=p["l2_regularization"],
            max_depth=p["max_depth"] or None,
            early_stopping=False,
            random_state=seed,
        )
        return Pipeline([("empty", EmptyColumnsAsZero()), ("model", model)])
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=p["n_estimators"],
        learning_rate=p["learning_rate"],
        num_leaves=p["num_leaves"],
        min_child_samples=p["min_child_samples"],
        subsample=p["subsample"],
        subsample_freq=1 if p["subsample"] < 1.0 else 0,
        colsample_bytree=p["colsample_bytree"],
        reg_lambda=p["reg_lambda"],
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )


class EmptyColumnsAsZero(TransformerMixin, BaseEstimator):
    """Columns without a single value in the training data become 0 (fit and transform).

    HistGradientBoosting cannot bin a feature that is all NaN (a short history with no support
    level yet, say) and fails; a constant column is never split on, so its values do not matter.
    Every other NaN is left for the trees."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> "EmptyColumnsAsZero":
        values = np.asarray(X, dtype=np.float64)
        self.empty_ = np.isnan(values).all(axis=0) if values.shape[0] else np.zeros(values.shape[1], dtype=bool)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.empty_.any():
            return X
        out = X.copy() if isinstance(X, pd.DataFrame) else np.array(X, dtype=np.float64)
        if isinstance(out, pd.DataFrame):
            out.iloc[:, np.flatnonzero(self.empty_)] = 0.0
        else:
            out[:, self.empty_] = 0.0
        return out


@cache
def _threadpools() -> Any:
    # Created once, after the libraries whose OpenMP / BLAS pools it limits are loaded (scanning
    # the loaded libraries costs milliseconds; limiting with the controller then costs ~20 us).
    import lightgbm  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded() -> Iterator[None]:
    """OpenMP and BLAS pools limited to one thread inside the block (module docstring)."""
    with _threadpools().limit(limits=1):
        yield


def estimator_fit(estimator: Any, X: pd.DataFrame, y: np.ndarray) -> Any:
    """Fit on a float64 frame (column names kept, so predictions check them), single-threaded."""
    with single_threaded():
        estimator.fit(X, y)
    return estimator


def predict_proba(estimator: Any, X: pd.DataFrame) -> np.ndarray:
    """P(label = 1) per row, single-threaded."""
    if len(X) == 0:
        return np.empty(0)
    with single_threaded():
        return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def feature_importances(
    kind: str, estimator: Any, X_test: pd.DataFrame, y_test: np.ndarray, *, seed: int, max_rows: int = 2000
) -> dict[str, float]:
    """Importances as fractions of their total (negatives clipped to 0).

    LightGBM: total gain of the splits on each feature (of ``estimator``). Others: permutation
    importance (the log-loss increase when a feature is shuffled, 3 repeats, seeded) on at most
    ``max_rows`` rows of ``X_test``, a block the estimator was not trained on.
    """
    names = list(X_test.columns)
    if kind == "lightgbm":
        raw = np.asarray(estimator.booster_.feature_importance(importance_type="gain"), dtype=np.float64)
    else:
        rows = np.arange(len(X_test))
        if rows.size > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
        if rows.size == 0 or np.unique(y_test[rows]).size < 2:
            return dict.fromkeys(names, 0.0)
        with single_threaded():
            result = permutation_importance(
                estimator,
                X_test.iloc[rows],
                y_test[rows],
                scoring="neg_log_loss",
                n_repeats=3,
                random_state=seed,
                n_jobs=1,
            )
        raw = np.asarray(result.importances_mean, dtype=np.float64)
    raw = np.clip(np.nan_to_num(raw, nan=0.0), 0.0, None)
    total = raw.sum()
    return {name: float(value / total) if total > 0 else 0.0 for name, value in zip(names, raw, strict=True)}
