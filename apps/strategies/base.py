"""The Strategy contract: one class, the same code in backtests, on paper and live.

A strategy is pure pandas (no Django, no I/O). ``compute(candles)`` receives a frame indexed by
the bars' open times (aware UTC) with columns ``open high low close volume`` and returns it with
boolean columns ``enter_long, exit_long, enter_short, exit_short`` added (absent columns count as
all-False; in a column of another dtype a missing value (NaN, None, NA) counts as False, any other
value by its truth) and optionally float columns ``stop_price`` / ``target_price`` (NaN = none).
Row t may use candles up to and including t, never later: the look-ahead check
(:mod:`apps.strategies.lookahead`) enforces it.

Exits common to every strategy (stop loss, take profit, trailing stop, break-even, time exit) are
settings of the backtest / deployment, handled by the engine, not by strategies.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from apps.strategies.errors import StrategyComputeError
from apps.strategies.params import StrategyParams, params_build

SIGNAL_COLUMNS = ("enter_long", "exit_long", "enter_short", "exit_short")
PRICE_COLUMNS = ("stop_price", "target_price")
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")


class Strategy(ABC):
    """Base class. Subclasses set ``key``, ``name``, ``Params`` and implement ``compute``.

    The class docstring is the strategy's documentation: the catalogue page shows it.
    ``timeframe`` is the bar size the strategy is run on when known (``"1h"``), so strategies that
    look at a higher timeframe can resample; it is None in pure unit use, where they infer it.
    """

    key: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    # Plugins installed by operators may hide themselves from users (e.g. test-only peeking ones).
    is_public: ClassVar[bool] = True
    # True when ``warmup()`` is exact: on a window of that many bars the last row's signals equal
    # the full history's (no indicator still settling). A tick then reads exactly that window.
    exact_warmup: ClassVar[bool] = False

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(params, StrategyParams):
            if kwargs:
                params = params_build(type(params), {**params.as_dict(), **kwargs})
            self.params = params
        else:
            self.params = params_build(self.Params, {**(params or {}), **kwargs})
        self.timeframe: str | None = None

    def warmup(self) -> int:
        """Bars needed before the first meaningful signal."""
        return 0

    @abstractmethod
    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Return ``candles`` with the signal columns added (see the module docstring)."""

    def assert_usable(self, *, user: Any, timeframe: str | None) -> None:
        """Refuse (a ValidationFailed naming the field) when ``user`` may not run this strategy
        configuration on ``timeframe``. Library strategies are anyone's; a strategy built on a
        user's own object (an ML strategy's model) checks its owner. Called by the deployment
        and backtest services before they store anything."""
        return None

    def describe(self) -> str:
        """One line naming the strategy and its parameters, for lists and reports."""
        args = ", ".join(f"{name}={value}" for name, value in self.params.as_dict().items())
        return f"{self.name or self.key}({args})"

    @classmethod
    def documentation(cls) -> str:
        import inspect

        return inspect.cleandoc(cls.__doc__ or "")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def signals(strategy: Strategy, candles: pd.DataFrame) -> pd.DataFrame:
    """Run ``strategy.compute`` and normalise its output to the contract.

    Returns a frame on ``candles.index`` with the four boolean signal columns and the two float
    price columns (NaN where absent). A strategy that raises, changes the index or returns
    non-boolean signals is reported as StrategyComputeError with what went wrong; the caller
    (a backtest, a tick) marks itself failed with that message and carries on.
    """
    try:
        result = strategy.compute(candles)
    except StrategyComputeError:
        raise
    except Exception as exc:
        raise StrategyComputeError(f"{strategy.describe()} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, pd.DataFrame):
        raise StrategyComputeError(f"{strategy.describe()} returned {type(result).__name__}, not a DataFrame.")
    if len(result.index) != len(candles.index) or not result.index.equals(candles.index):
        raise StrategyComputeError(f"{strategy.describe()} changed the candles' index.")
    # One frame built from a dict of arrays: setting columns one by one costs more than the
    # compute of a fast strategy on a million bars.
    size = len(candles)
    columns: dict[str, np.ndarray] = {}
    for column in SIGNAL_COLUMNS:
        if column not in result:
            columns[column] = np.zeros(size, dtype=bool)
            continue
        values = result[column]
        try:
            # Missing means no signal, whatever the dtype: a shifted 0/1 float column is NaN in
            # its warm-up, and a plain astype(bool) would make every NaN an entry.
            columns[column] = values.to_numpy() if values.dtype == bool else values.to_numpy(dtype=bool, na_value=False)
        except (TypeError, ValueError) as exc:
            raise StrategyComputeError(f"{strategy.describe()}: column {column} is not boolean.") from exc
    for column in PRICE_COLUMNS:
        columns[column] = (
            pd.to_numeric(result[column], errors="coerce").to_numpy(dtype=np.float64)
            if column in result
            else np.full(size, np.nan)
        )
    return pd.DataFrame(columns, index=candles.index, copy=False)
