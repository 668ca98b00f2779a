"""Strategies for the research tests (registered, not public), and candle builders.

Importing this module registers them; spawned worker processes never need them.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register


@dataclass(frozen=True)
class AlwaysInParams(StrategyParams):
    side: str = param("long", choices=("long", "short"))
    lag: int = param(0, low=0, high=5)


@register
class AlwaysIn(Strategy):
    """Enters ``side`` on the first bar it may and holds to the end; ``lag`` only changes the
    warm-up. Records the last bar of every frame it computes (``seen``), so a test can prove
    which bars each evaluation could see."""

    key = "test_research_always_in"
    Params = AlwaysInParams
    is_public = False
    seen: ClassVar[list[pd.Timestamp]] = []
    params: AlwaysInParams

    def warmup(self) -> int:
        return self.params.lag

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        AlwaysIn.seen.append(candles.index[-1])
        on = np.ones(len(candles), dtype=bool)
        off = np.zeros(len(candles), dtype=bool)
        is_long = self.params.side == "long"
        return candles.assign(
            enter_long=on if is_long else off, exit_long=off, enter_short=off if is_long else on, exit_short=off
        )


@dataclass(frozen=True)
class RaiserParams(StrategyParams):
    fail: bool = param(False)


@register
class Raiser(Strategy):
    """Raises inside compute when ``fail`` is set (a strategy bug for one parameter set)."""

    key = "test_research_raiser"
    Params = RaiserParams
    is_public = False
    params: RaiserParams

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        if self.params.fail:
            raise ZeroDivisionError("boom")
        flags = np.zeros(len(candles), dtype=bool)
        flags[::10] = True
        return candles.assign(enter_long=flags, exit_long=np.roll(flags, 5))


def trend_candles(steps: list[tuple[int, float]], start: float = 100.0, freq: str = "1h") -> pd.DataFrame:
    """Candles whose close moves by a constant factor per bar in each (bars, factor) regime."""
    factors = np.concatenate([np.full(bars, factor) for bars, factor in steps])
    close = start * np.cumprod(factors)
    open_ = np.concatenate([[start], close[:-1]])
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.full(len(close), 1_000.0),
        },
        index=pd.date_range("2024-01-01", periods=len(close), freq=freq, tz="UTC"),
    )
    return frame
