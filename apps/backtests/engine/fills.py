"""The fill simulator: one numba-compiled pass over the bars (rules in the package docstring).

:func:`simulate` takes plain arrays and scalars (no pandas) and returns the equity curve, the
closed trades as a float matrix (columns ``TRADE_COLUMNS``) and the count of skipped orders.
The cost and sizing formulas are the compiled functions of :mod:`.costs` and :mod:`.sizing`.

Why one long function: measured on 1,000,000 one-minute bars (SMA cross, ~20,000 trades), the
same rules split into helpers that take the arrays ran 3-4x slower (every call with array
arguments adds reference-count calls) and a bar that reads every array on each signal pays a
cache miss per array. So the loop keeps its state in locals, takes two fast paths for the common
bars (flat without an entry signal; holding with no exit armed), and reads stop/target/ATR,
volume and range arrays only when a setting uses them. Helpers take scalars only.
"""

import numpy as np
from numba import njit

from apps.backtests.engine.costs import (
    SLIPPAGE_SQRT_IMPACT,
    SLIPPAGE_VOLUME_SHARE,
    fee_raw,
    slipped_price_raw,
    tick_adverse_raw,
    tick_nearest_raw,
)
from apps.backtests.engine.sizing import SIZE_RISK_PER_TRADE, entry_size_raw, kelly_fraction_raw

TRADE_COLUMNS = (
    "entry_idx",
    "exit_idx",
    "side",
    "entry_price",
    "exit_price",
    "size",
    "fees",
    "pnl",
    "return_pct",
    "reason",
)
EXIT_REASONS = ("signal", "stop", "target", "trailing", "breakeven", "time", "end")
R_SIGNAL, R_STOP, R_TARGET, R_TRAILING, R_BREAKEVEN, R_TIME, R_END = range(7)
_INITIAL_TRADES = 256
_N_COLUMNS = len(TRADE_COLUMNS)


@njit(cache=True)
def _grow(rec: np.ndarray) -> np.ndarray:
    bigger = np.empty((rec.shape[0] * 2, rec.shape[1]))
    bigger[: rec.shape[0]] = rec
    return bigger


@njit(cache=True)
def _market_exit_price(
    side: int,
    ref: float,
    size: float,
    volume: float,
    bar_range: float,
    model: int,
    bps: float,
    impact: float,
    tick: float,
) -> float:
    # Closing a long sells (-1), closing a short buys (+1).
    return tick_adverse_raw(slipped_price_raw(-side, ref, size, volume, bar_range, model, bps, impact), -side, tick)


@njit(cache=True)
def _decide(pos: int, el: bool, xl: bool, es: bool, xs: bool, allow_short: bool) -> tuple[bool, int]:
    """(close the position?, side to enter) from one bar's signals. An entry with its own exit on
    the same bar, or long and short entries together, are conflicts and count as no entry."""
    go_long = el and not xl
    go_short = es and not xs
    if go_long and go_short:
        go_long = False
        go_short = False
    if pos == 1:
        return (xl or go_short), (-1 if go_short and allow_short else 0)
    if pos == -1:
        return (xs or go_long), (1 if go_long else 0)
    if go_long:
        return False, 1
    if go_short and allow_short:
        return False, -1
    return False, 0


@njit(cache=True)
def _stop_distance(
    side: int, ref: float, stop_abs: float, stop_loss: float, atr_sig: float, atr_multiple: float
) -> float:
    """Price distance to the stop for risk sizing: the strategy's stop, else stop_loss, else ATR."""
    if stop_abs == stop_abs:
        return side * (ref - stop_abs)
    if stop_loss > 0.0:
        return stop_loss * ref
    return atr_sig * atr_multiple


@njit(cache=True)
def _levels(
    side: int, price: float, stop_abs: float, target_sig: float, atr_sig: float, stop_loss: float,
    take_profit: float, atr_stop: bool, atr_multiple: float, tick: float,
) -> tuple[float, float]:  # fmt: skip
    """(stop, target) of a new position; the strategy's levels override the percentages."""
    if stop_abs == stop_abs:
        stop = stop_abs
    elif stop_loss > 0.0:
        stop = tick_nearest_raw(price * (1.0 - side * stop_loss), tick)
    elif atr_stop and atr_sig == atr_sig:
        stop = tick_nearest_raw(price - side * atr_sig * atr_multiple, tick)
    else:
        stop = np.nan
    if target_sig == target_sig:
        target = tick_nearest_raw(target_sig, tick)
    elif take_profit > 0.0:
        target = tick_nearest_raw(price * (1.0 + side * take_profit), tick)
    else:
        target = np.nan
    return stop, target


@njit(cache=True)
def _any_number(values: np.ndarray) -> bool:
    # A plain loop (not any(...)): numba compiles it to an early-exit scan.
    for x in values:  # noqa: SIM110
        if x == x:
            return True
    return False


@njit(cache=True)
def simulate(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    el: np.ndarray,
    xl: np.ndarray,
    es: np.ndarray,
    xs: np.ndarray,
    sp: np.ndarray,
    tp: np.ndarray,
    atr: np.ndarray,
    cash0: float,
    fill_close: bool,
    entry_limit: bool,
    limit_offset: float,
    allow_short: bool,
    taker: float,
    maker: float,
    fixed: float,
    slip_model: int,
    slip_bps: float,
    impact: float,
    size_mode: int,
    fraction: float,
    amount: float,
    risk: float,
    atr_multiple: float,
    kelly_cap: float,
    stop_loss: float,
    take_profit: float,
    trailing: float,
    breakeven: float,
    time_bars: int,
    lot: float,
    min_notional: float,
    tick: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the fills over arrays of one length n >= 1 (``atr`` may be empty: not used).
    Exit settings that are off are passed as 0. Returns (equity at each close, trades matrix,
    skipped orders)."""
    n = c.shape[0]
    equity = np.empty(n)
    rec = np.empty((_INITIAL_TRADES, _N_COLUMNS))
    k = 0
    skipped = 0
    cash = cash0
    # Arrays a bar reads only when a feature needs them: an event bar touching every array
    # costs cache misses that dominate the loop on long series.
    has_sp = _any_number(sp)
    has_tp = _any_number(tp)
    has_atr = atr.shape[0] == n
    needs_volume = slip_model in (SLIPPAGE_VOLUME_SHARE, SLIPPAGE_SQRT_IMPACT)
    needs_range = slip_model == SLIPPAGE_SQRT_IMPACT
    atr_stop = size_mode == SIZE_RISK_PER_TRADE
    plain_holding = trailing == 0.0 and breakeven == 0.0 and time_bars == 0
    # The position (pos 0 = flat, 1 = long, -1 = short).
    pos = 0
    size = 0.0
    entry_price = 0.0
    entry_fee = 0.0
    entry_idx = 0
    entry_is_limit = False
    stop_fixed = np.nan
    target = np.nan
    extreme = 0.0
    be_on = False
    # Kelly statistics of the closed trades (returns net of fees).
    wins = 0
    losses = 0
    sum_win = 0.0
    sum_loss = 0.0
    # Orders from the previous bar's close.
    pend_exit = False
    pend_entry = 0
    pend_sig = 0
    pend_limit = np.nan

    for i in range(n):
        # Fast paths with the outcome the phases below would have: flat, nothing pending, no
        # entry signal; or holding with no exit armed and no signal that closes.
        if pend_entry == 0:
            if pos == 0:
                if not el[i] and not es[i]:
                    equity[i] = cash
                    continue
            elif (
                plain_holding
                and not pend_exit
                and stop_fixed != stop_fixed
                and target != target
                and i < n - 1
                and ((pos == 1 and not xl[i] and not es[i]) or (pos == -1 and not xs[i] and not el[i]))
            ):
                equity[i] = cash + pos * size * c[i]
                continue
        last = i == n - 1
        volume = v[i] if needs_volume else 0.0
        bar_range = h[i] - lo[i] if needs_range else 0.0
        # Phase 0: the open (pending orders); 1: inside the bar (stops, targets); 2: the close
        # (this bar's signals). A phase may close the position, then open one.
        for phase in range(3):
            exit_reason = -1
            exit_px = 0.0
            exit_fee = 0.0
            entry_side = 0
            entry_ref = np.nan
            entry_maker = False
            sig = i
            if phase == 0:
                if pos != 0 and not fill_close:
                    if pend_exit:
                        exit_reason = R_SIGNAL
                    elif time_bars > 0 and i - entry_idx >= time_bars:
                        exit_reason = R_TIME
                    if exit_reason >= 0:
                        exit_px = _market_exit_price(
                            pos, o[i], size, volume, bar_range, slip_model, slip_bps, impact, tick
                        )
                        exit_fee = fee_raw(size * exit_px, taker, fixed)
                if pend_entry != 0:
                    sig = pend_sig
                    entry_side = pend_entry
                    entry_maker = entry_limit
                    if not entry_limit:
                        entry_ref = o[i]
                    elif entry_side == 1 and lo[i] <= pend_limit:
                        entry_ref = min(o[i], pend_limit)
                    elif entry_side == -1 and h[i] >= pend_limit:
                        entry_ref = max(o[i], pend_limit)
                pend_exit = False
                pend_entry = 0
            elif phase == 1:
                if pos == 0 or (plain_holding and stop_fixed != stop_fixed and target != target):
                    continue
                limit_bar = entry_is_limit and entry_idx == i
                # A position opened by a limit inside this bar did not exist at the open.
                ref_open = entry_price if limit_bar else o[i]
                stop_lvl = stop_fixed
                stop_reason = R_STOP
                if trailing > 0.0:
                    trail = tick_nearest_raw(extreme * (1.0 - pos * trailing), tick)
                    if stop_lvl != stop_lvl or pos * (trail - stop_lvl) > 0.0:
                        stop_lvl = trail
                        stop_reason = R_TRAILING
                if be_on and (stop_lvl != stop_lvl or pos * (entry_price - stop_lvl) > 0.0):
                    stop_lvl = entry_price
                    stop_reason = R_BREAKEVEN
                has_stop = stop_lvl == stop_lvl
                has_target = target == target and not limit_bar
                exit_ref = 0.0
                if has_stop and pos * (ref_open - stop_lvl) <= 0.0:
                    exit_reason, exit_ref = stop_reason, ref_open
                elif has_target and pos * (ref_open - target) >= 0.0:
                    exit_reason, exit_ref = R_TARGET, ref_open
                elif has_stop and ((pos == 1 and lo[i] <= stop_lvl) or (pos == -1 and h[i] >= stop_lvl)):
                    exit_reason, exit_ref = stop_reason, stop_lvl
                elif has_target and ((pos == 1 and h[i] >= target) or (pos == -1 and lo[i] <= target)):
                    exit_reason, exit_ref = R_TARGET, target
                if exit_reason == R_TARGET:  # a resting limit order: its own price, the maker fee
                    exit_px = exit_ref
                    exit_fee = fee_raw(size * exit_px, maker, fixed)
                elif exit_reason >= 0:  # a triggered stop is a market order
                    exit_px = _market_exit_price(
                        pos, exit_ref, size, volume, bar_range, slip_model, slip_bps, impact, tick
                    )
                    exit_fee = fee_raw(size * exit_px, taker, fixed)
                else:
                    if not limit_bar:
                        # After the check: a bar cannot both raise its own trail and hit it.
                        extreme = max(extreme, h[i]) if pos == 1 else min(extreme, lo[i])
                    if breakeven > 0.0 and pos * (extreme - entry_price) >= breakeven * entry_price:
                        be_on = True
            else:
                do_exit, wanted = _decide(pos, el[i], xl[i], es[i], xs[i], allow_short)
                if not fill_close:
                    if not last:
                        pend_exit = do_exit and pos != 0
                        pend_entry = wanted
                        pend_sig = i
                        if wanted != 0 and entry_limit:
                            pend_limit = tick_nearest_raw(c[i] * (1.0 - wanted * limit_offset), tick)
                    elif pos != 0:
                        exit_reason = R_END
                else:
                    if pos != 0:
                        if do_exit:
                            exit_reason = R_SIGNAL
                        elif time_bars > 0 and i - entry_idx >= time_bars:
                            exit_reason = R_TIME
                        elif last:
                            exit_reason = R_END
                    if wanted != 0 and not last:
                        if entry_limit:
                            pend_entry = wanted
                            pend_sig = i
                            pend_limit = tick_nearest_raw(c[i] * (1.0 - wanted * limit_offset), tick)
                        else:
                            entry_side = wanted
                            entry_ref = c[i]
                if exit_reason >= 0:
                    exit_px = _market_exit_price(pos, c[i], size, volume, bar_range, slip_model, slip_bps, impact, tick)
                    exit_fee = fee_raw(size * exit_px, taker, fixed)

            if exit_reason >= 0:
                cash += size * exit_px - exit_fee if pos == 1 else -(size * exit_px) - exit_fee
                if k == rec.shape[0]:
                    rec = _grow(rec)
                pnl = pos * size * (exit_px - entry_price) - entry_fee - exit_fee
                ret = pnl / (size * entry_price)
                rec[k, 0] = entry_idx
                rec[k, 1] = i
                rec[k, 2] = pos
                rec[k, 3] = entry_price
                rec[k, 4] = exit_px
                rec[k, 5] = size
                rec[k, 6] = entry_fee + exit_fee
                rec[k, 7] = pnl
                rec[k, 8] = ret
                rec[k, 9] = exit_reason
                k += 1
                if pnl > 0.0:
                    wins += 1
                    sum_win += ret
                elif pnl < 0.0:
                    losses += 1
                    sum_loss += ret
                pos = 0
            if entry_side != 0 and pos == 0 and entry_ref == entry_ref:
                rate = maker if entry_maker else taker
                sig_stop = tick_nearest_raw(sp[sig], tick) if has_sp and sp[sig] == sp[sig] else np.nan
                sig_target = tp[sig] if has_tp else np.nan
                sig_atr = atr[sig] if has_atr else np.nan
                dist = _stop_distance(entry_side, entry_ref, sig_stop, stop_loss, sig_atr, atr_multiple)
                kelly = kelly_fraction_raw(k, wins, sum_win, losses, sum_loss, kelly_cap, fraction)
                new_size, price = entry_size_raw(
                    entry_side, entry_ref, cash, entry_maker, volume, bar_range, size_mode, rate, fixed, fraction,
                    amount, risk, dist, kelly, slip_model, slip_bps, impact, lot, min_notional, tick,
                )  # fmt: skip
                if new_size > 0.0:
                    size = new_size
                    entry_fee = fee_raw(size * price, rate, fixed)
                    cash += -(size * price) - entry_fee if entry_side == 1 else size * price - entry_fee
                    pos = entry_side
                    entry_idx = i
                    entry_price = price
                    entry_is_limit = entry_maker
                    extreme = price
                    be_on = False
                    stop_fixed, target = _levels(
                        entry_side, price, sig_stop, sig_target, sig_atr, stop_loss, take_profit, atr_stop,
                        atr_multiple, tick,
                    )  # fmt: skip
                else:
                    skipped += 1
        # Mark to market at the close.
        equity[i] = cash + pos * size * c[i]
    return equity, rec[:k].copy(), skipped


def exit_reason_names(codes: np.ndarray) -> np.ndarray:
    """Reason codes of the trades matrix as their names (object array)."""
    names = np.asarray(EXIT_REASONS, dtype=object)
    return names[codes.astype(np.int64)] if len(codes) else np.empty(0, dtype=object)


def no_atr() -> np.ndarray:
    """The ``atr`` argument when sizing does not use it (an empty array)."""
    return np.empty(0)
