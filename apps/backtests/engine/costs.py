"""Per-fill costs: slippage, tick rounding and fees, for one order at a time.

The paper venue calls :func:`fill_price` and :func:`fee_for` for a single order; the backtest
loop (:mod:`apps.backtests.engine.fills`) compiles the very same scalar formulas below
(``*_raw``, numba-compiled scalar functions that these wrappers call too), so a backtest and
the paper venue charge identical costs.

Slippage always worsens the fill (``side`` +1 buys pay more, -1 sells receive less):

- ``none``: the reference price.
- ``fixed_bps``: ``ref * (1 + side * slippage_bps / 10_000)``.
- ``volume_share``: ``ref * (1 + side * impact * share)`` where ``share = size / bar_volume``,
  the order's participation in the bar's volume, capped at 1 (a bar without volume counts as 1:
  the worst case, never free).
- ``sqrt_impact``: ``ref + side * impact * sqrt(share) * min(bar_range, ref)``, the square-root
  market-impact law with the bar's high-low range standing in for volatility (the range is
  capped at the price so that a sell can never fill at or below zero; ``impact`` <= 0.5).

Limit orders (limit entries and take-profit exits) fill at their own price: no slippage.
With a tick size, order levels (limits, stops, targets) are rounded to the nearest tick and
slipped market prices are rounded against the trader (buys up, sells down).

Fees: ``notional * rate + fee_fixed``, ``rate`` = the maker rate for limit fills and the taker
rate (``fee``) for market and stop fills.
"""

import math

from numba import njit

from apps.backtests.engine.settings import SLIPPAGE_MODELS, CostSettings

SLIPPAGE_NONE = 0
SLIPPAGE_FIXED_BPS = 1
SLIPPAGE_VOLUME_SHARE = 2
SLIPPAGE_SQRT_IMPACT = 3
_TICK_EPSILON = 1e-9


def slippage_code(model: str) -> int:
    """The integer the compiled loop uses for a slippage model name."""
    return SLIPPAGE_MODELS.index(model)


@njit(cache=True)
def slipped_price_raw(
    side: int,
    reference_price: float,
    size: float,
    bar_volume: float,
    bar_range: float,
    model: int,
    bps: float,
    impact: float,
) -> float:
    """The slipped price of a market order (see the module docstring)."""
    if model == SLIPPAGE_FIXED_BPS:
        return reference_price * (1.0 + side * bps / 10_000.0)
    if model == SLIPPAGE_VOLUME_SHARE or model == SLIPPAGE_SQRT_IMPACT:  # noqa: SIM109 - numba-compiled
        share = 1.0
        if bar_volume > 0.0:
            share = min(size / bar_volume, 1.0)
        if model == SLIPPAGE_VOLUME_SHARE:
            return reference_price * (1.0 + side * impact * share)
        return reference_price + side * impact * math.sqrt(share) * min(bar_range, reference_price)
    return reference_price


@njit(cache=True)
def tick_adverse_raw(price: float, side: int, tick: float) -> float:
    """Round a market price to the tick grid against the trader (buys up, sells down); tick 0 =
    no grid. The epsilon keeps prices already on the grid where they are despite float error."""
    if tick <= 0.0:
        return price
    if side > 0:
        return math.ceil(price / tick - _TICK_EPSILON) * tick
    return math.floor(price / tick + _TICK_EPSILON) * tick


@njit(cache=True)
def tick_nearest_raw(price: float, tick: float) -> float:
    """Round an order level (limit, stop, target) to the nearest tick; tick 0 = no grid."""
    if tick <= 0.0:
        return price
    return math.floor(price / tick + 0.5) * tick


@njit(cache=True)
def fee_raw(notional: float, rate: float, fixed: float) -> float:
    """The fee of one fill: ``notional * rate + fixed``."""
    return notional * rate + fixed


def fill_price(
    side: int,
    reference_price: float,
    size: float,
    bar_volume: float,
    bar_range: float,
    costs: CostSettings,
    tick_size: float | None = None,
) -> float:
    """The price a market order of ``size`` units fills at, given the price it was sent at
    (``reference_price``: the bar's open, its close, or a triggered stop level) and the bar it
    fills in (its volume and high - low range).

    ``side`` is +1 to buy, -1 to sell. Preconditions: ``reference_price > 0``, ``size >= 0``.
    """
    if side not in (1, -1):
        raise ValueError("side must be +1 (buy) or -1 (sell)")
    price = slipped_price_raw(
        int(side),
        float(reference_price),
        float(size),
        float(bar_volume),
        float(bar_range),
        slippage_code(costs.slippage),
        float(costs.slippage_bps),
        float(costs.impact),
    )
    return float(tick_adverse_raw(price, int(side), float(tick_size or 0.0)))


def fee_for(notional: float, is_maker: bool, costs: CostSettings) -> float:
    """The fee of one fill of ``notional`` (quote currency, > 0): maker rate for limit fills,
    taker rate otherwise, plus the fixed fee."""
    return float(
        fee_raw(float(notional), float(costs.maker_rate if is_maker else costs.taker_rate), float(costs.fee_fixed))
    )
