"""Technical analysis as pure functions over pandas Series (no Django).

Use as ``from apps.marketdata import indicators as ta``. Every function takes Series that share one
index (periods as further positional arguments) and returns a float64 Series or DataFrame on that
index, NaN during warm-up. Row t only ever depends on rows 0..t. Where TA-Lib has the indicator,
the values equal TA-Lib's (each docstring names the call and any deliberate difference); TA-Lib
itself is used only as the reference in tests and bench/indicators.py.

The loops are numba-compiled with ``cache=True``: the first call in a fresh process compiles or
loads them (seconds), so warm up at worker start.
"""

from apps.marketdata.indicators.momentum import cci, rsi, stoch, willr

# Imported last: the structure modules build on the indicators above.
from apps.marketdata.indicators.structure import (
    confluence,
    fibonacci,
    pivots,
    supply_demand_zones,
    support_resistance,
    trendlines,
)
from apps.marketdata.indicators.trend import adx, ema, ichimoku, macd, sma, supertrend, wma
from apps.marketdata.indicators.volatility import atr, bbands, donchian, keltner
from apps.marketdata.indicators.volume import mfi, obv, vwap

__all__ = [
    "adx",
    "atr",
    "bbands",
    "cci",
    "confluence",
    "donchian",
    "ema",
    "fibonacci",
    "ichimoku",
    "keltner",
    "macd",
    "mfi",
    "obv",
    "pivots",
    "rsi",
    "sma",
    "stoch",
    "supertrend",
    "supply_demand_zones",
    "support_resistance",
    "trendlines",
    "vwap",
    "willr",
    "wma",
]
