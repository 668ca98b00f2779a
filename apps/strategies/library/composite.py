"""composite: a weighted vote over other pre-built strategies."""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy, signals
from apps.strategies.errors import InvalidParamsError
from apps.strategies.library._signals import holding, no_signals, rising_edge
from apps.strategies.library.bands import BollingerBounce, DonchianBreakout
from apps.strategies.library.moving_average import SHORT_HELP, EmaCross, SmaCross
from apps.strategies.library.oscillators import DualMomentum, MacdMomentum, RsiMeanReversion
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register

# The strategies that can vote, each with its default parameters. A Params dataclass cannot hold
# a typed, bounded list of member keys, so every possible member gets a weight field
# ("weight_<key>", 0 = not a member): typed, bounded, optimisable, and shown as one slider each.
MEMBERS: tuple[type[Strategy], ...] = (
    SmaCross,
    EmaCross,
    RsiMeanReversion,
    MacdMomentum,
    BollingerBounce,
    DonchianBreakout,
    DualMomentum,
)


def _weight(default: float, label: str) -> float:
    result: float = param(default, low=0.0, high=5.0, step=0.5, help=f"Vote weight of {label} (0 = not a member)")
    return result


@dataclass(frozen=True)
class CompositeParams(StrategyParams):
    weight_sma_cross: float = _weight(1.0, "SMA cross")
    weight_ema_cross: float = _weight(0.0, "EMA cross")
    weight_rsi_mean_reversion: float = _weight(1.0, "RSI mean reversion")
    weight_macd_momentum: float = _weight(1.0, "MACD momentum")
    weight_bollinger_bounce: float = _weight(0.0, "Bollinger band bounce")
    weight_donchian_breakout: float = _weight(1.0, "Donchian breakout")
    weight_dual_momentum: float = _weight(0.0, "Dual momentum")
    threshold: float = param(
        0.5, low=0.05, high=1.0, step=0.05, help="Buy when the weighted vote reaches this share of all weights"
    )
    exit_threshold: float = param(
        0.0, low=-1.0, high=0.95, step=0.05, help="Sell when the weighted vote falls to this share or below"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def weights(self) -> dict[str, float]:
        """Member key -> weight, members with a weight above zero only."""
        return {cls.key: getattr(self, f"weight_{cls.key}") for cls in MEMBERS if getattr(self, f"weight_{cls.key}")}

    def check(self) -> None:
        if not self.weights():
            raise InvalidParamsError("Give at least one member a weight above zero.", field="params.weight_sma_cross")
        if self.exit_threshold >= self.threshold:
            raise InvalidParamsError(
                f"The exit threshold ({self.exit_threshold:g}) must be below the entry threshold ({self.threshold:g}).",
                field="params.exit_threshold",
            )


@register
class Composite(Strategy):
    """A committee of strategies: each member votes, the weighted majority trades.

    Members are the pre-built SMA cross, EMA cross, RSI mean reversion, MACD momentum, Bollinger
    bounce, Donchian breakout and dual momentum, each with its default parameters and both sides
    enabled. After every bar a member votes +1 while its own signals would hold a long, -1 while
    they would hold a short, and 0 when flat (its stops are not simulated). The vote is the
    weighted sum divided by the sum of the weights, between -1 (all short) and +1 (all long).

    **Entry:** buy on the bar where the vote reaches *threshold*. **Exit:** sell on the bar where
    it falls to *exit_threshold* or below. With *short* on: sell short when the vote reaches
    -*threshold*, cover when it rises to -*exit_threshold* or above.

    **Parameters:** one weight per member (0 to 5; 0 leaves it out; at least one above 0),
    *threshold*, *exit_threshold* (below the threshold, so a small wobble does not flip it).

    **When it works:** combining strategies that fail in different regimes (a trend follower and
    a mean reverter) smooths the equity curve, and the optimiser can tune the weights. **When it
    does not:** members that all say the same thing add nothing but lag; and a member that is
    flat most of the time (mean reversion) dilutes the vote of the others.
    """

    key = "composite"
    name = "Composite vote"
    Params = CompositeParams
    params: CompositeParams

    def members(self) -> list[tuple[Strategy, float]]:
        """The voting members, built with their defaults (shorts on) and this strategy's timeframe."""
        out: list[tuple[Strategy, float]] = []
        by_key = {cls.key: cls for cls in MEMBERS}
        for key, weight in self.params.weights().items():
            cls = by_key[key]
            names = {field.name for field in dataclasses.fields(cls.Params)}
            member = cls({"short": True} if "short" in names else {})
            member.timeframe = self.timeframe
            out.append((member, weight))
        return out

    def warmup(self) -> int:
        return max(member.warmup() for member, _ in self.members())

    def vote(self, candles: pd.DataFrame) -> np.ndarray:
        """The weighted vote after each bar, in [-1, 1]."""
        total = np.zeros(len(candles))
        weights = 0.0
        for member, weight in self.members():
            out = signals(member, candles)
            long_held = holding(out["enter_long"].to_numpy(), out["exit_long"].to_numpy())
            short_held = holding(out["enter_short"].to_numpy(), out["exit_short"].to_numpy())
            total += weight * (long_held.astype(np.float64) - short_held.astype(np.float64))
            weights += weight
        return total / weights

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        score = self.vote(candles)
        long_on = score >= p.threshold
        long_off = score <= p.exit_threshold
        short_on = score <= -p.threshold
        short_off = score >= -p.exit_threshold
        none = no_signals(len(candles))
        return candles.assign(
            enter_long=rising_edge(long_on),
            exit_long=rising_edge(long_off),
            enter_short=rising_edge(short_on) if p.short else none,
            exit_short=rising_edge(short_off) if p.short else none,
        )
