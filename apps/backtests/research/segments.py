"""Running a strategy on one segment of a longer history (a walk-forward train or test window).

The engine trades every bar it is given. To trade only inside a segment while letting the
strategy's indicators see the bars before it, the engine is handed the segment's candles and a
:class:`SegmentStrategy` that computes the wrapped strategy over ``history`` (the lead-in bars
followed by the segment) and returns the rows of the segment. No bar after the segment's end is
ever part of ``history``: that is what keeps a test window out of its train window's optimisation.
"""

import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.errors import StrategyComputeError


class SegmentStrategy(Strategy):
    """``inner`` computed over ``history``, answering for the trailing rows the engine asks about.

    Precondition: ``history`` ends with exactly the candles the engine will pass to
    :meth:`compute` (same index). ``warmup()`` is 0 because the lead-in is already in ``history``.
    """

    key = "segment"
    is_public = False

    def __init__(self, inner: Strategy, history: pd.DataFrame) -> None:
        # Deliberately not calling Strategy.__init__: the params are the inner strategy's, already
        # validated, and this wrapper must not re-validate them against another Params class.
        self.inner = inner
        self.history = history
        self.params = inner.params

    @property
    def timeframe(self) -> str | None:
        return self.inner.timeframe

    @timeframe.setter
    def timeframe(self, value: str | None) -> None:
        # The engine sets the bar size from its settings: the wrapped strategy is the one that uses it.
        self.inner.timeframe = value

    def warmup(self) -> int:
        return 0

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        tail = len(candles)
        if tail > len(self.history) or not self.history.index[len(self.history) - tail :].equals(candles.index):
            raise StrategyComputeError("The segment's candles are not the end of the history given to the strategy.")
        result = self.inner.compute(self.history)
        if not isinstance(result, pd.DataFrame) or not result.index.equals(self.history.index):
            raise StrategyComputeError(f"{self.inner.describe()} did not return a frame on the candles' index.")
        return result.iloc[len(result) - tail :]

    def describe(self) -> str:
        return self.inner.describe()


def segment_strategy(strategy: Strategy, candles: pd.DataFrame, start: int, end: int, lead: int) -> Strategy:
    """``strategy`` ready to run on ``candles.iloc[start:end]`` with up to ``lead`` earlier bars as
    indicator history (the strategy itself when there is no earlier bar to give)."""
    first = max(0, start - max(0, lead))
    if first == start:
        return strategy
    return SegmentStrategy(strategy, candles.iloc[first:end])
