"""Objective, constraints, the grid and TPE searches in memory, best trial and heat map."""

import math

import numpy as np
import pytest

from apps.backtests.engine import run_backtest
from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.optimise import (
    TrialResult,
    best_trial,
    heatmap,
    objective_value,
    optimise,
    trials_evaluate,
)
from apps.common.errors import ApplicationError
from apps.strategies.registry import get_strategy
from tests.backtests.research.strategies import trend_candles
from tests.marketdata.ohlcv import load_candles

SETTINGS = {"cash": 10_000, "costs": {"fee": 0.001}}
GRID = {"fast": {"low": 5, "high": 30, "step": 5}, "slow": {"low": 40, "high": 120, "step": 20}}


@pytest.fixture(scope="module")
def btc():
    return load_candles("BTC-USDT_1h")


@pytest.mark.parametrize("objective", ["sharpe", "total_return", "calmar", "profit_factor"])
def test_objective_value_reads_the_metric(objective):
    assert objective_value({objective: 1.25, "trades": 3}, objective) == 1.25


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -float("inf"), True, "1.0"])
def test_objective_value_is_none_when_undefined(value):
    assert objective_value({"sharpe": value}, "sharpe") is None
    assert objective_value({}, "sharpe") is None


def test_objective_value_refuses_an_unknown_objective():
    with pytest.raises(ResearchInputError) as caught:
        objective_value({"sortino": 1.0}, "sortino")
    assert caught.value.field == "objective"


def test_trials_evaluate_applies_the_minimum_trades(btc):
    params_list = [{"fast": 10, "slow": 30}, {"fast": 50, "slow": 400}]
    counts = [run_backtest(get_strategy("sma_cross", p), btc, settings=SETTINGS).metrics["trades"] for p in params_list]
    threshold = min(counts) + 1  # the busier set passes, the quieter one does not
    assert max(counts) >= threshold
    results = trials_evaluate(
        strategy_key="sma_cross",
        params_list=params_list,
        candles=btc,
        settings=SETTINGS,
        objective="sharpe",
        min_trades=threshold,
        first_number=40,
    )
    assert [r.number for r in results] == [40, 41]
    for result, count in zip(results, counts, strict=True):
        assert result.metrics["trades"] == count
        assert result.is_feasible == (count >= threshold)
        assert result.value == (result.metrics["sharpe"] if result.is_feasible else None)
    assert results[0].params == {"fast": 10, "slow": 30, "short": False}


def test_trials_evaluate_marks_refused_and_failing_sets_infeasible(btc):
    refused = trials_evaluate(
        strategy_key="sma_cross",
        params_list=[{"fast": 50, "slow": 20}],
        candles=btc,
        settings=SETTINGS,
        objective="sharpe",
        min_trades=0,
    )
    assert refused[0].is_feasible is False and refused[0].value is None
    assert "fast period" in refused[0].error
    failing = trials_evaluate(
        strategy_key="test_research_raiser",
        params_list=[{"fail": True}, {"fail": False}],
        candles=btc,
        settings=SETTINGS,
        objective="total_return",
        min_trades=1,
    )
    assert failing[0].is_feasible is False and "ZeroDivisionError" in failing[0].error
    assert failing[1].is_feasible is True and failing[1].error == ""


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"objective": "alpha"}, "objective"),
        ({"min_trades": -1}, "min_trades"),
        ({"settings": {"cash": -5}}, "settings.cash"),
    ],
)
def test_trials_evaluate_refusals_name_the_field(btc, kwargs, field):
    arguments = {"objective": "sharpe", "min_trades": 1, "settings": SETTINGS, **kwargs}
    with pytest.raises(ApplicationError) as caught:
        trials_evaluate(strategy_key="sma_cross", params_list=[{}], candles=btc, **arguments)
    assert field in caught.value.extra["fields"]


def test_grid_best_equals_a_brute_force_loop_over_run_backtest(btc):
    # given: an independent loop over every valid combination with the engine's full path
    brute: dict[tuple[int, int], float] = {}
    for fast in range(5, 31, 5):
        for slow in range(40, 121, 20):
            metrics = run_backtest(get_strategy("sma_cross", fast=fast, slow=slow), btc, settings=SETTINGS).metrics
            if metrics["trades"] >= 5 and metrics["sharpe"] is not None:
                brute[(fast, slow)] = metrics["sharpe"]
    best_params = max(brute, key=lambda key: brute[key])
    # when
    result = optimise(strategy_key="sma_cross", candles=btc, settings=SETTINGS, space=GRID, min_trades=5)
    # then
    assert len(result.trials) == 6 * 5
    assert result.best is not None
    assert (result.best.params["fast"], result.best.params["slow"]) == best_params
    assert result.best.value == pytest.approx(brute[best_params], rel=1e-12)
    feasible = {(t.params["fast"], t.params["slow"]): t.value for t in result.trials if t.is_feasible}
    assert feasible.keys() == brute.keys()
    assert all(feasible[key] == pytest.approx(value, rel=1e-12) for key, value in brute.items())


def test_grid_uses_base_params_for_what_is_not_searched(btc):
    result = optimise(
        strategy_key="sma_cross",
        candles=btc,
        settings=SETTINGS,
        space={"fast": {"low": 10, "high": 30, "step": 10}},
        base_params={"slow": 25, "short": True},
        min_trades=0,
    )
    assert [t.params for t in result.trials] == [
        {"fast": 10, "slow": 25, "short": True},
        {"fast": 20, "slow": 25, "short": True},
    ]


def test_tpe_is_reproducible_with_a_seed_and_stays_within_the_grid(btc):
    space = {"fast": {"low": 5, "high": 30, "step": 5}, "slow": {"low": 40, "high": 120, "step": 20}}
    grid = optimise(strategy_key="sma_cross", candles=btc, settings=SETTINGS, space=space, min_trades=5)
    grid_values = sorted(t.value for t in grid.trials if t.value is not None)
    runs = [
        optimise(
            strategy_key="sma_cross",
            candles=btc,
            settings=SETTINGS,
            space=space,
            min_trades=5,
            method="tpe",
            n_trials=25,
            seed=7,
        )
        for _ in range(2)
    ]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]
    assert [t.value for t in runs[0].trials] == [t.value for t in runs[1].trials]
    other = optimise(
        strategy_key="sma_cross",
        candles=btc,
        settings=SETTINGS,
        space=space,
        min_trades=5,
        method="tpe",
        n_trials=25,
        seed=8,
    )
    assert [t.params for t in other.trials] != [t.params for t in runs[0].trials]
    best = runs[0].best
    assert best is not None and best.value is not None
    assert grid_values[0] <= best.value <= grid_values[-1]
    assert any(best.value == pytest.approx(v, rel=1e-12) for v in grid_values)
    for trial in runs[0].trials:
        assert trial.params["fast"] in range(5, 31, 5) and trial.params["slow"] in range(40, 121, 20)


def test_tpe_tells_refused_sets_as_infeasible_and_continues(btc):
    # fast may exceed slow here: those trials are infeasible, never the best
    result = optimise(
        strategy_key="sma_cross",
        candles=btc,
        settings=SETTINGS,
        space={"fast": {"low": 20, "high": 60}, "slow": {"low": 30, "high": 70}},
        method="tpe",
        n_trials=30,
        seed=3,
    )
    refused = [t for t in result.trials if t.params["fast"] >= t.params["slow"]]
    assert refused and all(not t.is_feasible and t.value is None for t in refused)
    assert result.best is not None and result.best.params["fast"] < result.best.params["slow"]


def test_optimise_refuses_bad_requests(btc):
    with pytest.raises(ResearchInputError) as caught:
        optimise(strategy_key="sma_cross", candles=btc, method="random")
    assert caught.value.field == "method"
    with pytest.raises(ResearchInputError) as caught:
        optimise(strategy_key="sma_cross", candles=btc, method="tpe", n_trials=0)
    assert caught.value.field == "n_trials"
    with pytest.raises(ResearchInputError) as caught:
        optimise(strategy_key="sma_cross", candles=btc, space={"fast": {}, "slow": {}}, grid_limit=1000)
    assert caught.value.field == "space"


def test_optimise_reports_progress_to_completion():
    candles = trend_candles([(300, 1.001)])
    seen: list[float] = []
    optimise(strategy_key="sma_cross", candles=candles, space={"fast": {"low": 2, "high": 9}}, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def trial(number, value, feasible=True, **params):
    return TrialResult(number, params, value if feasible else None, {}, feasible)


def test_best_trial_takes_the_highest_feasible_value_and_the_earliest_among_equals():
    trials = [trial(0, 1.0), trial(1, 3.0, feasible=False), trial(2, 2.0), trial(3, 2.0)]
    best = best_trial(trials)
    assert best is not None and best.number == 2
    assert best_trial([trial(0, 1.0, feasible=False)]) is None
    assert best_trial([]) is None


def test_heatmap_takes_the_maximum_over_other_params_and_none_where_missing():
    trials = [
        trial(0, 1.0, fast=5, slow=20, kind="a"),
        trial(1, 4.0, fast=5, slow=20, kind="b"),
        trial(2, 2.0, fast=10, slow=20, kind="a"),
        trial(3, 9.0, fast=10, slow=40, kind="a", feasible=False),
        trial(4, -1.0, fast=5, slow=40, kind="a"),
    ]
    grid = heatmap(trials, "fast", "slow")
    assert grid == {"x": [5, 10], "y": [20, 40], "z": [[4.0, 2.0], [-1.0, None]]}


def test_heatmap_bins_continuous_axes():
    rng = np.random.default_rng(0)
    trials = [trial(i, float(i), x=float(v), y=int(i % 3)) for i, v in enumerate(rng.uniform(0, 1, 500))]
    grid = heatmap(trials, "x", "y", max_cells=10)
    assert len(grid["x"]) == 10 and grid["y"] == [0, 1, 2]
    assert grid["x"] == sorted(grid["x"])
    width = (max(t.params["x"] for t in trials) - min(t.params["x"] for t in trials)) / 10
    assert all(math.isclose(b - a, width, rel_tol=1e-9) for a, b in zip(grid["x"], grid["x"][1:], strict=False))
    # every trial lands in one cell: the overall maximum is in the map
    assert max(v for row in grid["z"] for v in row if v is not None) == 499.0
    with pytest.raises(ResearchInputError):
        heatmap(trials, "x", "x")
