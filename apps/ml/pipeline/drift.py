"""Has the live data moved away from what the model was trained on? PSI per feature.

The reference (from the training features) keeps, per feature, the inner decile edges (the
outer bins are open-ended, so live values beyond the training range still count) and the
proportion of training values in each bin. The population stability index of live values is

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` the reference proportion and ``a`` the live one, both floored at ``EPSILON`` so an
empty bin costs a large but finite amount. NaN values are ignored on both sides. Rules of thumb:
below 0.1 nothing moved, 0.1-0.25 some shift, above 0.25 a different population.
"""

import numpy as np
import pandas as pd

EPSILON = 1e-4


def reference_distribution(X: pd.DataFrame, *, bins: int = 10) -> dict[str, dict[str, list[float]]]:
    """``{feature: {"edges": inner edges (ascending, unique), "p": proportions}}``; a value x
    falls in bin ``searchsorted(edges, x, side="right")`` (bin i holds edges[i-1] <= x < edges[i]).
    A feature with no values gets empty lists (it is skipped by :func:`psi`)."""
    out: dict[str, dict[str, list[float]]] = {}
    quantiles = np.arange(1, bins) / bins
    for name in X.columns:
        values = _values(X[name])
        if values.size == 0:
            out[name] = {"edges": [], "p": []}
            continue
        edges = np.unique(np.quantile(values, quantiles))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
        out[name] = {"edges": [float(e) for e in edges], "p": [float(c) for c in counts / values.size]}
    return out


def psi(reference: dict[str, dict[str, list[float]]], X_live: pd.DataFrame) -> dict[str, float]:
    """PSI per feature of ``reference`` present in ``X_live``; features without reference values
    or without live values are left out (there is nothing to compare)."""
    out: dict[str, float] = {}
    for name, ref in reference.items():
        if name not in X_live.columns or not ref.get("p"):
            continue
        values = _values(X_live[name])
        if values.size == 0:
            continue
        edges = np.asarray(ref["edges"], dtype=np.float64)
        expected = np.asarray(ref["p"], dtype=np.float64)
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=expected.size)
        actual = np.maximum(counts / values.size, EPSILON)
        expected = np.maximum(expected, EPSILON)
        out[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return out


def _values(column: pd.Series) -> np.ndarray:
    values = column.to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]
