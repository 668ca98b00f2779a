"""Monte Carlo of trade sequences: the statistical properties each method must have."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.montecarlo import PERCENTILES, monte_carlo, trade_equity_returns

CASH = 10_000.0


def mixed_returns(n: int = 60, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.004, 0.03, n)


def test_reshuffle_keeps_final_equity_and_changes_drawdowns():
    returns = mixed_returns()
    # given: the final equity of any order is the same product
    expected_final = CASH * math.prod(1.0 + r for r in returns)
    # when
    result = monte_carlo(trade_returns=returns, cash=CASH, method="reshuffle", simulations=2_000, seed=1)
    # then
    final = result["final_equity"]
    assert final["min"] == pytest.approx(expected_final, rel=1e-9)
    assert final["max"] == pytest.approx(expected_final, rel=1e-9)
    assert result["original"]["final_equity"] == pytest.approx(expected_final, rel=1e-12)
    drawdown = result["max_drawdown"]
    assert drawdown["std"] > 0.01
    assert drawdown["min"] < result["original"]["max_drawdown"] < drawdown["max"]


def test_resample_mean_matches_the_analytic_mean():
    returns = np.array([0.05, -0.03, 0.02, -0.01, 0.04, -0.02])
    n, sims = 30, 40_000
    draws = np.resize(returns, n)  # 30 trades: the six above, five times each
    growth = 1.0 + returns
    # Draws are independent and uniform over the trades: E[prod(1 + r_i)] = E[1 + r]^n.
    mean = CASH * growth.mean() ** n
    second = CASH**2 * (growth**2).mean() ** n
    standard_error = math.sqrt((second - mean**2) / sims)
    result = monte_carlo(trade_returns=draws, cash=CASH, method="resample", simulations=sims, seed=11)
    assert abs(result["final_equity"]["mean"] - mean) < 4 * standard_error
    assert result["final_equity"]["std"] > 0


def test_resample_probability_of_loss_matches_the_binomial():
    # Two equally likely trades, +10 % and -8 %: after n draws with k winners the account holds
    # cash * 1.1**k * 0.92**(n-k), a loss exactly when k is below n*log(1/0.92)/log(1.1/0.92).
    n, sims = 24, 40_000
    k_star = n * math.log(1 / 0.92) / math.log(1.1 / 0.92)
    p_loss = sum(math.comb(n, k) for k in range(n + 1) if k < k_star) / 2**n
    threshold = 0.3
    p_threshold = sum(math.comb(n, k) for k in range(n + 1) if 1.1**k * 0.92 ** (n - k) <= 1 - threshold) / 2**n
    returns = [0.1, -0.08] * 5
    result = monte_carlo(
        trade_returns=np.resize(returns, n),
        cash=CASH,
        method="resample",
        simulations=sims,
        seed=5,
        loss_threshold=threshold,
    )
    for observed, expected in (
        (result["probability_of_loss"], p_loss),
        (result["probability_of_loss_threshold"], p_threshold),
    ):
        assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / sims)


def test_seed_reproduces_and_another_seed_differs():
    returns = mixed_returns()
    first = monte_carlo(trade_returns=returns, cash=CASH, method="resample", simulations=500, seed=42, noise=0.01)
    again = monte_carlo(trade_returns=returns, cash=CASH, method="resample", simulations=500, seed=42, noise=0.01)
    other = monte_carlo(trade_returns=returns, cash=CASH, method="resample", simulations=500, seed=43, noise=0.01)
    assert first == again
    assert first["final_equity"] != other["final_equity"]


def test_seed_none_reports_the_seed_drawn_so_the_run_repeats():
    returns = mixed_returns()
    first = monte_carlo(trade_returns=returns, cash=CASH, method="resample", simulations=300, seed=None)
    again = monte_carlo(trade_returns=returns, cash=CASH, method="resample", simulations=300, seed=first["seed"])
    assert first == again


def test_noise_makes_reshuffled_final_equity_vary():
    returns = mixed_returns()
    result = monte_carlo(trade_returns=returns, cash=CASH, method="reshuffle", simulations=1_000, seed=3, noise=0.01)
    assert result["final_equity"]["std"] > 0


def test_original_sequence_values_and_loss_threshold():
    # equity 10,000 -> 11,000 -> 5,500 -> 6,600: a 50 % drawdown, a 34 % loss
    result = monte_carlo(
        trade_returns=[0.1, -0.5, 0.2], cash=CASH, method="reshuffle", simulations=200, seed=1, loss_threshold=0.3
    )
    original = result["original"]
    assert original["final_equity"] == pytest.approx(6_600.0)
    assert original["total_return"] == pytest.approx(-0.34)
    assert original["max_drawdown"] == pytest.approx(0.5)
    assert result["probability_of_loss"] == 1.0
    assert result["probability_of_loss_threshold"] == 1.0
    # Every order loses half from some peak: -50 % after +10 % / +20 % or from the start.
    assert result["max_drawdown"]["min"] >= 0.5 - 1e-12


def test_losing_less_than_the_threshold_is_not_counted():
    result = monte_carlo(
        trade_returns=[-0.1, -0.1, -0.1], cash=CASH, method="reshuffle", simulations=100, seed=1, loss_threshold=0.3
    )
    assert result["original"]["total_return"] == pytest.approx(0.729 - 1)
    assert result["probability_of_loss"] == 1.0
    assert result["probability_of_loss_threshold"] == 0.0
    assert result["probability_of_drawdown_threshold"] == 0.0


def test_output_shape_is_json_safe():
    result = monte_carlo(trade_returns=mixed_returns(250), cash=CASH, method="resample", simulations=1_000, seed=2)
    json.dumps(result, allow_nan=False)
    percentiles = result["final_equity"]["percentiles"]
    assert list(percentiles) == [str(p) for p in PERCENTILES]
    values = list(percentiles.values())
    assert values == sorted(values)
    histogram = result["max_drawdown"]["histogram"]
    assert sum(histogram["counts"]) == 1_000
    assert len(histogram["bins"]) == len(histogram["counts"]) + 1
    fan = result["fan"]
    assert fan["trade"][0] == 0 and fan["trade"][-1] == 250
    assert all(len(fan[key]) == len(fan["trade"]) for key in ("p5", "p25", "p50", "p75", "p95"))
    assert all(lo <= hi for lo, hi in zip(fan["p5"], fan["p95"], strict=True))
    assert fan["p50"][0] == CASH
    assert len(result["paths"]["equity"]) == 20


def test_a_total_loss_floors_at_zero():
    result = monte_carlo(trade_returns=[0.2, -1.5], cash=CASH, method="reshuffle", simulations=50, seed=1)
    assert result["final_equity"]["max"] == 0.0
    assert result["max_drawdown"]["min"] == 1.0


def test_trade_equity_returns_compound_to_the_pnl_sum():
    trades = pd.DataFrame(
        {
            "pnl": [500.0, -1_200.0, 300.0, 800.0],
            "exit_at": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03", "2024-01-04"], utc=True),
        }
    )
    returns = trade_equity_returns(trades, CASH)
    # in exit order: -1,200 on 10,000; +500 on 8,800; +300 on 9,300; +800 on 9,600
    assert returns.tolist() == pytest.approx([-0.12, 500 / 8_800, 300 / 9_300, 800 / 9_600])
    assert CASH * np.prod(1 + returns) == pytest.approx(CASH + trades["pnl"].sum())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "bootstrap"}, "method"),
        ({"simulations": 0}, "simulations"),
        ({"simulations": 10**6}, "simulations"),
        ({"noise": -0.1}, "noise"),
        ({"loss_threshold": 0}, "loss_threshold"),
        ({"loss_threshold": 1.5}, "loss_threshold"),
        ({"cash": 0}, "cash"),
        ({"trade_returns": []}, "backtest"),
        ({"trade_returns": [0.1, float("nan")]}, "trade_returns"),
    ],
)
def test_refusals_name_the_field(kwargs, field):
    arguments = {"trade_returns": [0.1, -0.05], "cash": CASH, "method": "resample", "simulations": 10, **kwargs}
    with pytest.raises(ResearchInputError) as caught:
        monte_carlo(**arguments)
    assert caught.value.field == field
