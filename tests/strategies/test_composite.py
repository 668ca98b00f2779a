"""composite: the weighted vote, checked against members' own signals on real candles. No database."""

import numpy as np
import pandas as pd
import pytest

from apps.strategies.errors import InvalidParamsError
from apps.strategies.library.composite import MEMBERS
from apps.strategies.registry import get_strategy
from tests.strategies.support import run, year_of

ZERO = {f"weight_{cls.key}": 0.0 for cls in MEMBERS}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USD_4h", 2021)


def held(enter: np.ndarray, exit_: np.ndarray) -> np.ndarray:
    """Position after each bar, written as a plain loop (the reference for the vectorised one)."""
    state, out = False, np.zeros(enter.size, dtype=bool)
    for i in range(enter.size):
        if exit_[i]:
            state = False
        elif enter[i]:
            state = True
        out[i] = state
    return out


def test_a_single_member_composite_trades_that_members_crosses(candles):
    # given: only the SMA cross votes; it is long after an upward cross and short after a downward one
    composite = get_strategy("composite", {**ZERO, "weight_sma_cross": 1.0, "threshold": 0.5})
    member = run(get_strategy("sma_cross", short=True), candles)

    # when
    out = run(composite, candles)

    # then: the vote reaches +1 exactly on the member's long entries and drops to -1 on its exits
    # (once it has been long: before that the vote is already at or below the exit threshold)
    np.testing.assert_array_equal(out["enter_long"].to_numpy(), member["enter_long"].to_numpy())
    first = int(np.flatnonzero(member["enter_long"])[0])
    np.testing.assert_array_equal(out["exit_long"].to_numpy()[first:], member["exit_long"].to_numpy()[first:])
    assert member["exit_long"].to_numpy()[first:].any()


def test_the_vote_is_the_weighted_mean_of_member_positions(candles):
    # given
    weights = {"sma_cross": 2.0, "rsi_mean_reversion": 1.0, "donchian_breakout": 1.5}
    composite = get_strategy("composite", {**ZERO, **{f"weight_{k}": w for k, w in weights.items()}})
    expected = np.zeros(len(candles))
    for key, weight in weights.items():
        member = run(get_strategy(key, short=True), candles)
        long_ = held(member["enter_long"].to_numpy(), member["exit_long"].to_numpy())
        short = held(member["enter_short"].to_numpy(), member["exit_short"].to_numpy())
        expected += weight * (long_.astype(float) - short.astype(float))
    expected /= sum(weights.values())

    # when
    vote = composite.vote(candles)  # type: ignore[attr-defined]

    # then
    np.testing.assert_allclose(vote, expected)
    on = expected >= 0.5
    np.testing.assert_array_equal(run(composite, candles)["enter_long"].to_numpy(), on & ~np.r_[False, on[:-1]])


def test_composite_short_side_uses_the_negative_threshold(candles):
    composite = get_strategy("composite", short=True, threshold=0.6)
    vote = composite.vote(candles)  # type: ignore[attr-defined]
    out = run(composite, candles)
    entered = out["enter_short"].to_numpy()
    assert entered.any()
    assert (vote[entered] <= -0.6).all()
    assert (vote[np.flatnonzero(entered) - 1] > -0.6).all()


def test_composite_needs_a_member_and_ordered_thresholds():
    with pytest.raises(InvalidParamsError, match="at least one member"):
        get_strategy("composite", ZERO)
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("composite", threshold=0.3, exit_threshold=0.3)
    assert caught.value.field == "params.exit_threshold"


def test_composite_warmup_is_its_slowest_member():
    composite = get_strategy("composite", {**ZERO, "weight_sma_cross": 1.0, "weight_dual_momentum": 1.0})
    assert composite.warmup() == max(get_strategy("sma_cross").warmup(), get_strategy("dual_momentum").warmup())
