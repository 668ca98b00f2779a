"""Test helpers: hand-built candle frames and a strategy that replays given signals."""

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.params import StrategyParams


def frame(rows: Sequence[Sequence[float]], *, start: str = "2024-01-01", freq: str = "1h") -> pd.DataFrame:
    """Candles from rows of (open, high, low, close[, volume]); volume defaults to 1000."""
    data = [list(r) + ([1000.0] if len(r) == 4 else []) for r in rows]
    out = pd.DataFrame(data, columns=["open", "high", "low", "close", "volume"], dtype="float64")
    out.index = pd.date_range(start, periods=len(rows), freq=freq, tz="UTC", name="timestamp")
    return out


def flat(n: int, price: float = 100.0) -> pd.DataFrame:
    """n bars that never move (open = high = low = close = price)."""
    return frame([(price, price, price, price)] * n)


class Scripted(Strategy):
    """Emits the signal columns it was given (by bar position), whatever the candles say."""

    key = "test_scripted"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, **columns: Any) -> None:
        super().__init__()
        self.columns = columns

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        n = len(candles)
        out = candles.copy()
        for name, spec in self.columns.items():
            if isinstance(spec, dict):  # {bar: value}
                default = np.nan if name in ("stop_price", "target_price") else False
                values = np.full(n, default, dtype=float if name in ("stop_price", "target_price") else bool)
                for bar, value in spec.items():
                    values[bar] = value
            elif isinstance(spec, list | tuple | set) and name not in ("stop_price", "target_price"):
                values = np.zeros(n, dtype=bool)
                values[list(spec)] = True
            else:
                values = np.asarray(spec)
            out[name] = values
        return out


class Raises(Strategy):
    key = "test_raises"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        raise ZeroDivisionError("boom")


def random_signals(n: int, seed: int, *, rate: float = 0.03, shorts: bool = True) -> dict[str, np.ndarray]:
    """Independent random signal columns (seeded), for comparing engines on real candles."""
    rng = np.random.default_rng(seed)
    columns = {
        "enter_long": rng.random(n) < rate,
        "exit_long": rng.random(n) < rate,
    }
    if shorts:
        columns["enter_short"] = rng.random(n) < rate
        columns["exit_short"] = rng.random(n) < rate
    return columns
