"""Position sizing: how many units an entry buys or sells.

Numba-compiled scalar functions (like :mod:`.costs`): the backtest loop calls them, and so can
the paper venue and the risk manager for one order.
Sizing happens when the order fills, with the account flat, so equity = cash then:

- ``cap = (equity - fee_fixed) / (1 + rate)``: the most the cash can pay for, fees included
  (``rate`` = the maker rate for limit entries, the taker rate for market ones).
- The notional wanted, by mode: ``all_equity`` = cap; ``fixed_fraction`` = fraction * equity;
  ``fixed_amount`` = amount (quote currency); ``risk_per_trade`` = risk * equity * ref / d,
  i.e. losing ``risk`` of equity if the stop, ``d`` price units away, is hit (``d`` = the
  distance to the strategy's stop_price at the signal bar when it set one, else stop_loss * ref
  when a stop_loss is set, else ATR(atr_period) * atr_multiple at the signal bar); ``kelly`` =
  k * equity with k from :func:`kelly_fraction_raw`. The notional is then capped at ``cap``: never more than the cash.
- Units = notional / fill price. For market orders with size-dependent slippage the fill price
  is first taken at ``notional / ref`` units, the units derived from it, and the final price
  taken at those units (fewer units never slip more, so the cash still suffices).
- Units are rounded down to whole ``lot_size`` lots when set. An order whose units come out
  zero, or whose notional is under ``min_notional``, is skipped (the loop counts it).

Units are fractional (0.0137 BTC) unless a lot size says otherwise.
"""

import math

from numba import njit

from apps.backtests.engine.costs import slipped_price_raw, tick_adverse_raw
from apps.backtests.engine.settings import SIZING_MODES

SIZE_ALL_EQUITY = 0
SIZE_FIXED_FRACTION = 1
SIZE_FIXED_AMOUNT = 2
SIZE_RISK_PER_TRADE = 3
SIZE_KELLY = 4
# Closed trades needed before Kelly sizing trusts its own statistics (before: `fraction`).
KELLY_MIN_TRADES = 10
_LOT_EPSILON = 1e-9


def sizing_code(mode: str) -> int:
    """The integer the compiled loop uses for a sizing mode name."""
    return SIZING_MODES.index(mode)


@njit(cache=True)
def kelly_fraction_raw(
    closed: int, wins: int, sum_win_returns: float, losses: int, sum_loss_returns: float, cap: float, fallback: float
) -> float:
    """The Kelly fraction k = W - (1 - W) / R from the trades closed so far, clamped to
    [0, cap]: W = winners / closed trades, R = mean winning return / mean losing return (in
    absolute value; returns are net of fees). Before KELLY_MIN_TRADES closed trades: ``fallback``.
    No loser yet: ``cap``; no winner: 0 (the entry is skipped)."""
    if closed < KELLY_MIN_TRADES:
        return fallback
    if losses == 0:
        return cap
    if wins == 0:
        return 0.0
    win_rate = wins / closed
    payoff = (sum_win_returns / wins) / (abs(sum_loss_returns) / losses)
    if payoff <= 0.0:
        return 0.0
    k = win_rate - (1.0 - win_rate) / payoff
    return min(max(k, 0.0), cap)


@njit(cache=True)
def lot_floor_raw(size: float, lot: float) -> float:
    """Round units down to whole lots (lot 0 = fractional units). The epsilon keeps an exact
    number of lots from losing one to float error; callers re-check affordability."""
    if lot <= 0.0:
        return size
    return math.floor(size / lot + _LOT_EPSILON) * lot


@njit(cache=True)
def target_notional_raw(
    mode: int,
    equity: float,
    ref: float,
    rate: float,
    fixed: float,
    fraction: float,
    amount: float,
    risk: float,
    stop_distance: float,
    kelly: float,
) -> float:
    """The notional (quote currency) an entry wants, capped at what the equity can pay for."""
    cap = (equity - fixed) / (1.0 + rate)
    if mode == SIZE_FIXED_FRACTION:
        wanted = fraction * equity
    elif mode == SIZE_FIXED_AMOUNT:
        wanted = amount
    elif mode == SIZE_RISK_PER_TRADE:
        if not stop_distance > 0.0:  # NaN too: no ATR yet
            return 0.0
        wanted = risk * equity * ref / stop_distance
    elif mode == SIZE_KELLY:
        wanted = kelly * equity
    else:
        wanted = cap
    return min(wanted, cap)


@njit(cache=True)
def entry_size_raw(
    side: int,
    ref: float,
    equity: float,
    is_maker: bool,
    bar_volume: float,
    bar_range: float,
    mode: int,
    rate: float,
    fixed: float,
    fraction: float,
    amount: float,
    risk: float,
    stop_distance: float,
    kelly: float,
    slippage_model: int,
    bps: float,
    impact: float,
    lot: float,
    min_notional: float,
    tick: float,
) -> tuple[float, float]:
    """(units, fill price) of an entry at reference price ``ref``; units 0 = skip the order.

    Limit fills (``is_maker``) fill at ``ref`` itself; market fills slip (see :mod:`.costs`).
    """
    if not equity > 0.0 or not ref > 0.0:
        return 0.0, ref
    notional = target_notional_raw(mode, equity, ref, rate, fixed, fraction, amount, risk, stop_distance, kelly)
    if not notional > 0.0:
        return 0.0, ref
    if is_maker:
        price = ref
        size = lot_floor_raw(notional / price, lot)
    else:
        first = tick_adverse_raw(
            slipped_price_raw(side, ref, notional / ref, bar_volume, bar_range, slippage_model, bps, impact), side, tick
        )
        if not first > 0.0:
            return 0.0, ref
        size = lot_floor_raw(notional / first, lot)
        price = tick_adverse_raw(
            slipped_price_raw(side, ref, size, bar_volume, bar_range, slippage_model, bps, impact), side, tick
        )
    # Rounding to lots can land one lot above what the cash pays for (float error): step down.
    while lot > 0.0 and size > 0.0 and size * price * (1.0 + rate) + fixed > equity:
        size = lot_floor_raw(size - lot, lot)
        if not is_maker:
            price = tick_adverse_raw(
                slipped_price_raw(side, ref, size, bar_volume, bar_range, slippage_model, bps, impact), side, tick
            )
    if not size > 0.0 or not price > 0.0:
        return 0.0, price
    if size * price < min_notional:
        return 0.0, price
    return size, price
