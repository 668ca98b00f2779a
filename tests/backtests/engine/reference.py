"""A plain-Python backtester written from the rules documented in apps/backtests/engine/
(package, costs and sizing docstrings), bar by bar with objects and no numba, to check the
compiled engine against. Slow on purpose: clarity over speed."""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from apps.backtests.engine import EngineSettings


@dataclass
class Position:
    side: int  # +1 long, -1 short
    size: float
    price: float
    fee: float
    bar: int
    by_limit: bool
    stop: float | None
    target: float | None
    extreme: float
    breakeven: bool = False


@dataclass
class Outcome:
    equity: list[float] = field(default_factory=list)
    trades: list[dict[str, float | int | str]] = field(default_factory=list)
    skipped: int = 0


def _nearest(price: float, tick: float | None) -> float:
    return math.floor(price / tick + 0.5) * tick if tick else price


def _against(price: float, side: int, tick: float | None) -> float:
    # Documented: buys rounded up, sells down, with a 1e-9 tolerance for prices on the grid.
    if not tick:
        return price
    return math.ceil(price / tick - 1e-9) * tick if side > 0 else math.floor(price / tick + 1e-9) * tick


class Reference:
    def __init__(self, candles: pd.DataFrame, sig: pd.DataFrame, settings: EngineSettings, atr: np.ndarray | None):
        self.c = candles
        self.s = settings
        self.o = candles["open"].tolist()
        self.h = candles["high"].tolist()
        self.lo = candles["low"].tolist()
        self.cl = candles["close"].tolist()
        self.v = candles["volume"].tolist()
        self.el = sig["enter_long"].tolist()
        self.xl = sig["exit_long"].tolist()
        self.es = sig["enter_short"].tolist()
        self.xs = sig["exit_short"].tolist()
        self.sp = sig["stop_price"].tolist() if "stop_price" in sig else [math.nan] * len(candles)
        self.tp = sig["target_price"].tolist() if "target_price" in sig else [math.nan] * len(candles)
        self.atr = atr.tolist() if atr is not None else [math.nan] * len(candles)
        self.cash = settings.cash
        self.pos: Position | None = None
        self.out = Outcome()
        self.closed_returns: list[float] = []

    # -- costs -------------------------------------------------------------------------------
    def slip(self, side: int, ref: float, size: float, bar: int) -> float:
        costs = self.s.costs
        if costs.slippage == "fixed_bps":
            price = ref * (1 + side * costs.slippage_bps / 10_000)
        elif costs.slippage in ("volume_share", "sqrt_impact"):
            share = min(size / self.v[bar], 1.0) if self.v[bar] > 0 else 1.0
            if costs.slippage == "volume_share":
                price = ref * (1 + side * costs.impact * share)
            else:
                price = ref + side * costs.impact * math.sqrt(share) * min(self.h[bar] - self.lo[bar], ref)
        else:
            price = ref
        return _against(price, side, self.s.instrument.tick_size)

    def fee(self, notional: float, maker: bool) -> float:
        rate = self.s.costs.maker_rate if maker else self.s.costs.fee
        return notional * rate + self.s.costs.fee_fixed

    # -- orders ------------------------------------------------------------------------------
    def close(self, bar: int, price: float, fee: float, reason: str) -> None:
        p = self.pos
        assert p is not None
        if p.side > 0:
            self.cash += p.size * price - fee
        else:
            self.cash -= p.size * price + fee
        pnl = p.side * p.size * (price - p.price) - p.fee - fee
        self.out.trades.append(
            {
                "side": "long" if p.side > 0 else "short",
                "entry_bar": p.bar,
                "exit_bar": bar,
                "entry_price": p.price,
                "exit_price": price,
                "size": p.size,
                "fees": p.fee + fee,
                "pnl": pnl,
                "return_pct": pnl / (p.size * p.price),
                "exit_reason": reason,
            }
        )
        self.closed_returns.append(pnl / (p.size * p.price))
        self.pos = None

    def close_market(self, bar: int, ref: float, reason: str) -> None:
        assert self.pos is not None
        price = self.slip(-self.pos.side, ref, self.pos.size, bar)
        self.close(bar, price, self.fee(self.pos.size * price, maker=False), reason)

    def kelly(self) -> float:
        sz = self.s.sizing
        rets = self.closed_returns
        if len(rets) < 10:
            return sz.fraction
        won = [r for r in rets if r > 0]
        lost = [r for r in rets if r < 0]
        if not lost:
            return sz.kelly_cap
        if not won:
            return 0.0
        w = len(won) / len(rets)
        payoff = (sum(won) / len(won)) / (abs(sum(lost)) / len(lost))
        return min(max(w - (1 - w) / payoff, 0.0), sz.kelly_cap)

    def open(self, bar: int, side: int, ref: float, maker: bool, signal_bar: int) -> None:
        s, sz, tick = self.s, self.s.sizing, self.s.instrument.tick_size
        equity = self.cash
        rate = s.costs.maker_rate if maker else s.costs.fee
        fixed = s.costs.fee_fixed
        strategy_stop = _nearest(self.sp[signal_bar], tick) if not math.isnan(self.sp[signal_bar]) else None
        if strategy_stop is not None:
            distance = side * (ref - strategy_stop)
        elif s.exits.stop_loss:
            distance = s.exits.stop_loss * ref
        else:
            distance = self.atr[signal_bar] * sz.atr_multiple
        cap = (equity - fixed) / (1 + rate)
        wanted = {
            "all_equity": cap,
            "fixed_fraction": sz.fraction * equity,
            "fixed_amount": sz.amount,
            "risk_per_trade": sz.risk * equity * ref / distance if distance > 0 else 0.0,
            "kelly": self.kelly() * equity,
        }[sz.mode]
        notional = min(wanted, cap)
        lot = s.instrument.lot_size
        if equity <= 0 or not notional > 0:
            self.out.skipped += 1
            return
        if maker:
            price = ref
            units = notional / price
        else:
            units = notional / self.slip(side, ref, notional / ref, bar)
        if lot:
            units = math.floor(units / lot + 1e-9) * lot
        if not maker:
            price = self.slip(side, ref, units, bar)
        while lot and units > 0 and units * price * (1 + rate) + fixed > equity:
            units = math.floor((units - lot) / lot + 1e-9) * lot
            if not maker:
                price = self.slip(side, ref, units, bar)
        if units <= 0 or units * price < (s.instrument.min_notional or 0.0):
            self.out.skipped += 1
            return
        fee = self.fee(units * price, maker)
        self.cash += -(units * price) - fee if side > 0 else units * price - fee
        if strategy_stop is not None:
            stop = strategy_stop
        elif s.exits.stop_loss:
            stop = _nearest(price * (1 - side * s.exits.stop_loss), tick)
        elif sz.mode == "risk_per_trade" and not math.isnan(self.atr[signal_bar]):
            stop = _nearest(price - side * self.atr[signal_bar] * sz.atr_multiple, tick)
        else:
            stop = None
        if not math.isnan(self.tp[signal_bar]):
            target = _nearest(self.tp[signal_bar], tick)
        elif s.exits.take_profit:
            target = _nearest(price * (1 + side * s.exits.take_profit), tick)
        else:
            target = None
        self.pos = Position(side, units, price, fee, bar, maker, stop, target, price)

    # -- the bar -----------------------------------------------------------------------------
    def intrabar(self, i: int) -> None:
        p = self.pos
        assert p is not None
        ex = self.s.exits
        on_fill_bar = p.by_limit and p.bar == i
        first = p.price if on_fill_bar else self.o[i]
        candidates: list[tuple[float, str]] = []
        if p.stop is not None:
            candidates.append((p.stop, "stop"))
        if ex.trailing_stop:
            candidates.append(
                (_nearest(p.extreme * (1 - p.side * ex.trailing_stop), self.s.instrument.tick_size), "trailing")
            )
        if p.breakeven:
            candidates.append((p.price, "breakeven"))
        stop, stop_reason = None, ""
        for level, name in candidates:  # the tightest; ties keep the earlier name
            if stop is None or p.side * (level - stop) > 0:
                stop, stop_reason = level, name
        target = None if on_fill_bar else p.target
        lo, hi = self.lo[i], self.h[i]
        if stop is not None and (first <= stop if p.side > 0 else first >= stop):
            self.close_market(i, first, stop_reason)
        elif target is not None and (first >= target if p.side > 0 else first <= target):
            self.close(i, first, self.fee(p.size * first, maker=True), "target")
        elif stop is not None and (lo <= stop if p.side > 0 else hi >= stop):
            self.close_market(i, stop, stop_reason)
        elif target is not None and (hi >= target if p.side > 0 else lo <= target):
            self.close(i, target, self.fee(p.size * target, maker=True), "target")
        else:
            if not on_fill_bar:
                p.extreme = max(p.extreme, hi) if p.side > 0 else min(p.extreme, lo)
            if ex.breakeven_after and p.side * (p.extreme - p.price) >= ex.breakeven_after * p.price:
                p.breakeven = True

    def decide(self, i: int) -> tuple[bool, int]:
        long_in = self.el[i] and not self.xl[i]
        short_in = self.es[i] and not self.xs[i]
        if long_in and short_in:
            long_in = short_in = False
        side = self.pos.side if self.pos else 0
        if side > 0:
            return bool(self.xl[i] or short_in), (-1 if short_in and self.s.allow_short else 0)
        if side < 0:
            return bool(self.xs[i] or long_in), (1 if long_in else 0)
        return False, (1 if long_in else -1 if short_in and self.s.allow_short else 0)

    def run(self) -> Outcome:
        s = self.s
        n = len(self.cl)
        at_close = s.fill == "close"
        limit_orders = s.entry == "limit"
        time_limit = s.exits.time_exit_bars
        pending: tuple[bool, int, int, float] | None = None  # (close?, side, signal bar, limit)
        for i in range(n):
            last = i == n - 1
            if pending is not None:
                want_close, side, sb, limit = pending
                pending = None
                if self.pos and not at_close:
                    if want_close:
                        self.close_market(i, self.o[i], "signal")
                    elif time_limit and i - self.pos.bar >= time_limit:
                        self.close_market(i, self.o[i], "time")
                if side and self.pos is None:
                    if not limit_orders:
                        self.open(i, side, self.o[i], False, sb)
                    elif side > 0 and self.lo[i] <= limit:
                        self.open(i, side, min(self.o[i], limit), True, sb)
                    elif side < 0 and self.h[i] >= limit:
                        self.open(i, side, max(self.o[i], limit), True, sb)
            elif self.pos and not at_close and time_limit and i - self.pos.bar >= time_limit:
                self.close_market(i, self.o[i], "time")
            if self.pos:
                self.intrabar(i)
            want_close, side = self.decide(i)
            limit = _nearest(self.cl[i] * (1 - side * s.limit_offset), s.instrument.tick_size)
            if not at_close:
                if not last:
                    pending = (want_close and self.pos is not None, side, i, limit)
                elif self.pos:
                    self.close_market(i, self.cl[i], "end")
            else:
                if self.pos:
                    if want_close:
                        self.close_market(i, self.cl[i], "signal")
                    elif time_limit and i - self.pos.bar >= time_limit:
                        self.close_market(i, self.cl[i], "time")
                    elif last:
                        self.close_market(i, self.cl[i], "end")
                if side and not last:
                    if limit_orders:
                        pending = (False, side, i, limit)
                    else:
                        self.open(i, side, self.cl[i], False, i)
            held = self.pos.side * self.pos.size * self.cl[i] if self.pos else 0.0
            self.out.equity.append(self.cash + held)
        return self.out


def reference_backtest(
    candles: pd.DataFrame, sig: pd.DataFrame, settings: EngineSettings, atr: np.ndarray | None = None
) -> Outcome:
    return Reference(candles, sig, settings, atr).run()
