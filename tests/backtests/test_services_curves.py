"""Chart curves downsampled for the result page: bounded size, the shape kept."""

import numpy as np
import pandas as pd
import pytest

from apps.backtests.services.curves import MAX_POINTS, curves_downsample


def _curves(n: int, seed: int = 1) -> tuple[pd.Series, pd.Series, pd.Series]:
    index = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(seed)
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    peak = np.maximum.accumulate(equity)
    drawdown = equity / peak - 1.0
    benchmark = np.linspace(10_000, 12_000, n)
    return (
        pd.Series(equity, index=index),
        pd.Series(drawdown, index=index),
        pd.Series(benchmark, index=index),
    )


def test_short_curves_are_kept_whole():
    equity, drawdown, benchmark = _curves(1200)
    curves = curves_downsample(equity=equity, drawdown=drawdown, benchmark=benchmark)
    assert curves["points"] == curves["bars"] == 1200
    assert curves["equity"] == pytest.approx(equity.tolist())
    assert curves["t"] == (equity.index.as_unit("ms").asi8).tolist()


@pytest.mark.parametrize("n", [5001, 5482, 123_457, 1_000_000])
def test_long_curves_fit_the_chart_and_keep_the_worst_drawdown_and_the_highs(n):
    equity, drawdown, benchmark = _curves(n, seed=n)
    curves = curves_downsample(equity=equity, drawdown=drawdown, benchmark=benchmark)
    # bounded, ordered, aligned
    assert curves["bars"] == n and curves["points"] <= MAX_POINTS
    assert len(curves["t"]) == len(curves["equity"]) == len(curves["drawdown"]) == len(curves["benchmark"])
    assert curves["t"] == sorted(set(curves["t"]))
    # the first and last bar, the deepest drawdown (where it happened) and the highest equity
    millis = equity.index.as_unit("ms").asi8
    assert curves["t"][0] == millis[0] and curves["t"][-1] == millis[-1]
    deepest = int(np.argmin(drawdown.to_numpy()))
    assert min(curves["drawdown"]) == drawdown.iloc[deepest]
    assert millis[deepest] in set(curves["t"])
    assert max(curves["equity"]) == equity.max()
    # each point is the series' own value at that time
    position = {t: i for i, t in enumerate(millis)}
    for t, value in list(zip(curves["t"], curves["equity"], strict=True))[:: max(1, curves["points"] // 50)]:
        assert value == equity.iloc[position[t]]


def test_non_finite_values_become_null():
    equity, drawdown, _ = _curves(10)
    equity.iloc[3] = np.nan
    drawdown.iloc[4] = np.inf
    curves = curves_downsample(equity=equity, drawdown=drawdown)
    assert curves["equity"][3] is None and curves["drawdown"][4] is None
    assert "benchmark" not in curves
