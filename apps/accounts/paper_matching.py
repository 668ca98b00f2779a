"""The paper venue's matching: resting PaperOrders against one closed bar, by the backtest
engine's fill rules (see the docstring of :mod:`apps.backtests.engine`), so a paper deployment
and a backtest over the same candles give the same trades.

:func:`paper_bar_closed` is called once per closed bar of a series (instrument + timeframe) by
the tick fan-out. It matches every resting order of that series accepted before the bar
(``accepted_bar_ts`` < the bar's open time, or no bar at all yet) in one transaction, with a
handful of bulk queries whatever the number of orders. Per account the bar is played in the
engine's phases:

1. The open: market orders, reduce-only ones first (the engine exits before it enters), fill
   at the open, slipped (:func:`apps.backtests.engine.costs.fill_price` with this bar's volume
   and high-low range), taker fee.
2. Limits (and triggered stop-limits), outside OCO groups: an open at or better than the
   limit fills at the open, else a bar touching it fills at the limit; maker fee, no slippage.
3. Stops and stop-limits, outside OCO groups: an open beyond the stop fills at the open (a
   gap), else a high/low through it fills at the stop, slipped, taker fee. A stop-limit
   triggers there; it fills at the trigger price (maker fee) when its limit is at or better
   than that price, else it rests as a limit from the next bar (time priority is lost, as at
   a real venue, and the bar's remaining path is unknown).
4. OCO groups (bracket children and any orders sharing ``oco_group``): per group the first of
   stop gap at the open, target (limit) gap at the open, stop touched, target touched fills
   (the engine's order: when both are touched inside one bar the stop counts first); the other
   legs are cancelled.

Bracket children (``attached``) are created when their entry fills and, like the engine's
position, checked in the same bar: from the bar's open when the entry filled at the open (a
market order, a stop that gapped), for the stop only and from the fill price when it filled
inside the bar (a limit, a touched stop). Levels are fractions of the fill price or absolute
prices, rounded to the nearest tick (the engine's ``_levels``). A fill that leaves the account
flat in the instrument's base asset cancels the account's resting bracket children of that
series ("position closed"), as the engine forgets its stop and target with the position.

Sizing at the fill (``sizing``): :func:`apps.backtests.engine.sizing.entry_size_raw` with the
order's inputs and the account's costs, exactly as the engine calls it; units 0 -> the order
expires with reason "could not be sized". ``quote_quantity`` market buys are sized the same way
(``all_equity`` of that amount: fees included).

Numbers: the engine computes in float64; the venue stores Decimal with 10 decimal places.
Prices, fees and sized quantities are the engine's float results rounded half-even to 10 dp.
Balances then move by Decimal arithmetic on those stored values: quote -= quantity * price
(rounded half-even to 10 dp) + fee for a buy, += ... - fee for a sell; base +/- quantity. Fees
are paid in the quote asset.
"""

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import PaperBalance, PaperFill, PaperOrder, TradingAccount
from apps.accounts.signals import paper_orders_changed
from apps.backtests.engine.costs import fee_for, fill_price, slippage_code, tick_nearest_raw
from apps.backtests.engine.settings import (
    SIZING_MODES,
    CostSettings,
    EngineSettings,
    InvalidSettingsError,
    SizingSettings,
)
from apps.backtests.engine.sizing import entry_size_raw
from apps.common.bulk import bulk_insert, bulk_update
from apps.marketdata.models import Instrument

logger = logging.getLogger(__name__)

TEN_DP = Decimal("1e-10")
ACTIVE = (PaperOrder.Status.OPEN, PaperOrder.Status.PARTIALLY_FILLED)
STOP_TYPES = ("stop", "stop_limit")
# A buy's cost may exceed the money available by this much (quote units) from rounding the
# engine's float sizes to 10 dp; beyond it the fill is refused.
ROUNDING_ALLOWANCE = Decimal("1e-6")
_UPDATED_FIELDS = [
    "status",
    "quantity",
    "filled_quantity",
    "average_price",
    "reason",
    "is_triggered",
    "accepted_bar_ts",
    "locked_amount",
    "updated_at",
    # Set on orders a batch inserted just before matching them (apps.trades.services.batch).
    "exchange_order_id",
]


# --- Numbers, costs, sides ----------------------------------------------------------------------


def price_decimal(value: float) -> Decimal:
    """A float price or fee as stored: rounded half-even to 10 decimal places."""
    return Decimal(float(value)).quantize(TEN_DP, rounding=ROUND_HALF_EVEN)


def quantity_decimal(value: float) -> Decimal:
    """A float size as stored: rounded half-even to 10 decimal places (so that a whole number
    of lots a hair below in float, 0.12344999999999999, is the whole number again)."""
    return Decimal(float(value)).quantize(TEN_DP, rounding=ROUND_HALF_EVEN)


def decimal_or_none(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def paper_costs(connection: Mapping[str, Any] | None) -> CostSettings:
    """The paper account's fees and slippage: ``connection["costs"]``, the EngineSettings costs
    dict (``fee``, ``maker_fee``, ``fee_fixed``, ``slippage``, ``slippage_bps``, ``impact``);
    default a 0.1 % fee and no slippage. Raises InvalidSettingsError naming the bad key."""
    raw = connection.get("costs") if isinstance(connection, Mapping) else None
    return EngineSettings.from_dict({"costs": raw if raw is not None else {}}).costs


def allows_short(connection: Mapping[str, Any] | None) -> bool:
    return bool(connection.get("allow_short", True)) if isinstance(connection, Mapping) else True


def side_sign(side: str) -> int:
    return 1 if side == "buy" else -1


def base_quote(instrument: Instrument) -> tuple[str, str]:
    """The instrument's base and quote assets (from its fields, else its symbol)."""
    base, quote = instrument.base, instrument.quote
    if not (base and quote) and "/" in instrument.symbol:
        left, right = instrument.symbol.split("/", 1)
        base, quote = base or left, quote or right.split(":")[0]
    return base or instrument.symbol, quote or "USD"


def instrument_floats(instrument: Instrument) -> tuple[float, float, float]:
    """(tick, lot, min_notional) as the engine takes them: 0 = no such rule."""
    return (
        float(instrument.tick_size or 0),
        float(instrument.lot_size or 0),
        float(instrument.min_notional or 0),
    )


# --- Sizing inputs ------------------------------------------------------------------------------

SIZING_NUMBERS = (
    "equity",
    "fraction",
    "amount",
    "risk",
    "stop_distance",
    "kelly",
    "lot",
    "min_notional",
    "tick",
    "stop_loss",
    "stop_price",
    "mark_price",
)
SIZING_TEXT = ("mode", "exit_client_order_id")
# The engine's cost inputs: accepted (a caller may send the whole sizing dict it computed) but
# the venue always charges, and sizes with, the account's own costs.
SIZING_IGNORED = (
    "costs",
    "rate",
    "fixed",
    "fee",
    "maker_fee",
    "fee_fixed",
    "slippage",
    "slippage_model",
    "slippage_bps",
    "bps",
    "impact",
)
ATTACHED_NUMBERS = ("stop_loss", "take_profit", "stop_price", "target_price", "stop_distance")
ATTACHED_TEXT = ("stop_client_order_id", "target_client_order_id")


def sizing_mode(value: object) -> int:
    """A sizing mode given as its engine code (0-4) or name; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("mode")
    if isinstance(value, int | float) and float(value).is_integer() and 0 <= int(value) < len(SIZING_MODES):
        return int(value)
    if isinstance(value, str) and value in SIZING_MODES:
        return SIZING_MODES.index(value)
    raise ValueError(f"sizing.mode must be one of {', '.join(SIZING_MODES)} (or 0-{len(SIZING_MODES) - 1}).")


def _num(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    return float(value)


@dataclass(frozen=True)
class Fill:
    """One execution decided by the matcher (floats as the engine computed them)."""

    quantity: Decimal
    price: Decimal
    fee: Decimal
    is_maker: bool


# --- One account's book during a bar -----------------------------------------------------------


@dataclass
class Book:
    """A paper account's balances and orders of one series while a bar is matched (in memory;
    written back in bulk)."""

    account_id: int
    costs: CostSettings | None
    costs_error: str
    allow_short: bool
    base: str
    quote: str
    balances: dict[str, PaperBalance]
    dirty: set[str] = field(default_factory=set)
    changed: list[str] = field(default_factory=list)
    exits: dict[str, tuple[int, Decimal, Decimal, Decimal]] = field(default_factory=dict)

    def balance(self, asset: str) -> PaperBalance:
        bal = self.balances.get(asset)
        if bal is None:
            bal = PaperBalance(account_id=self.account_id, asset=asset, free=Decimal(0), locked=Decimal(0))
            self.balances[asset] = bal
        self.dirty.add(asset)
        return bal

    def free(self, asset: str) -> Decimal:
        bal = self.balances.get(asset)
        return bal.free if bal is not None else Decimal(0)

    def position(self) -> Decimal:
        bal = self.balances.get(self.base)
        return (bal.free + bal.locked) if bal is not None else Decimal(0)

    def release(self, order: PaperOrder) -> None:
        if order.locked_amount and order.locked_asset:
            bal = self.balance(order.locked_asset)
            bal.locked -= order.locked_amount
            bal.free += order.locked_amount
        order.locked_amount = Decimal(0)

    def apply(self, side: int, fill: Fill) -> None:
        notional = (fill.quantity * fill.price).quantize(TEN_DP, rounding=ROUND_HALF_EVEN)
        base, quote = self.balance(self.base), self.balance(self.quote)
        if side > 0:
            quote.free -= notional + fill.fee
            base.free += fill.quantity
        else:
            quote.free += notional - fill.fee
            base.free -= fill.quantity

    def touch(self, order: PaperOrder) -> None:
        if order.client_order_id not in self.changed:
            self.changed.append(order.client_order_id)


@dataclass(frozen=True)
class Bar:
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def range(self) -> float:
        return self.high - self.low


# --- The matcher --------------------------------------------------------------------------------


@dataclass
class Matcher:
    """Plays one bar over the books of one series. Mutates the PaperOrder instances; collects
    the fills, the new (child) orders and the changed ones for the bulk write."""

    instrument: Instrument
    timeframe: str
    bar: Bar
    now: datetime
    tick: float
    lot: float
    min_notional: float
    fills: list[tuple[PaperOrder, Fill]] = field(default_factory=list)
    new_orders: list[PaperOrder] = field(default_factory=list)
    updated: dict[int, PaperOrder] = field(default_factory=dict)
    # OCO groups born in this bar: group -> (the open they are checked from, stop leg only).
    fresh_groups: dict[str, tuple[float, bool]] = field(default_factory=dict)
    # The account being played: its orders of this series and the children born in this bar.
    orders: list[PaperOrder] = field(default_factory=list)
    born: list[PaperOrder] = field(default_factory=list)

    # --- state changes

    def _changed(self, book: Book, order: PaperOrder) -> None:
        order.updated_at = self.now
        if order.pk is not None:
            self.updated[order.pk] = order
        book.touch(order)

    def close(self, book: Book, order: PaperOrder, status: str, reason: str) -> None:
        """Cancel or expire an active order, releasing what it reserved."""
        book.release(order)
        order.status = status
        order.reason = reason[:300]
        self._changed(book, order)

    def _reduce_cap(self, book: Book, side: int) -> Decimal:
        position = book.position()
        return max(position, Decimal(0)) if side < 0 else max(-position, Decimal(0))

    # --- sizing

    def _sized(self, book: Book, order: PaperOrder, side: int, ref: float, is_maker: bool) -> tuple[float, float]:
        assert book.costs is not None
        costs = book.costs
        data: Mapping[str, Any] = order.sizing or {}
        attached: Mapping[str, Any] = order.attached or {}
        if order.sizing is None:  # a quote_quantity market buy: spend that much, fees included
            mode, equity = SIZING_MODES.index("all_equity"), float(order.quote_quantity or 0)
        else:
            mode, equity = sizing_mode(data.get("mode", "all_equity")), _num(data, "equity") or 0.0
            equity += self._equity_after_exit(book, data)
        defaults = SizingSettings()
        fraction = _num(data, "fraction") or defaults.fraction
        kelly = _num(data, "kelly")
        rate = costs.maker_rate if is_maker else costs.taker_rate
        lot = _num(data, "lot")
        min_notional = _num(data, "min_notional")
        tick = _num(data, "tick")
        units, price = entry_size_raw(
            side, ref, equity, is_maker, self.bar.volume, self.bar.range, mode, rate, costs.fee_fixed,
            fraction, _num(data, "amount") or defaults.amount, _num(data, "risk") or defaults.risk,
            self._stop_distance(side, ref, data, attached), fraction if kelly is None else kelly,
            slippage_code(costs.slippage), costs.slippage_bps, costs.impact,
            self.lot if lot is None else lot, self.min_notional if min_notional is None else min_notional,
            self.tick if tick is None else tick,
        )  # fmt: skip
        return float(units), float(price)

    def _stop_distance(self, side: int, ref: float, data: Mapping[str, Any], attached: Mapping[str, Any]) -> float:
        """The engine's ``_stop_distance`` at the fill's reference price: the absolute stop
        (rounded to the tick), else stop_loss * ref, else the given (ATR) distance."""
        stop_abs = _num(attached, "stop_price")
        if stop_abs is None:
            stop_abs = _num(data, "stop_price")
        if stop_abs is not None:
            return side * (ref - float(tick_nearest_raw(stop_abs, self.tick)))
        stop_loss = _num(attached, "stop_loss") or _num(data, "stop_loss")
        if stop_loss:
            return stop_loss * ref
        distance = _num(data, "stop_distance")
        if distance is None:
            distance = _num(attached, "stop_distance")
        return math.nan if distance is None else distance

    def _equity_after_exit(self, book: Book, data: Mapping[str, Any]) -> float:
        """A reversal: the caller's equity marked the position it exits at ``mark_price``; the
        engine sizes from the cash after that exit filled (in this bar, just before)."""
        exit_id, mark = data.get("exit_client_order_id"), _num(data, "mark_price")
        done = book.exits.get(str(exit_id)) if exit_id else None
        if done is None or mark is None:
            return 0.0
        side, quantity, price, fee = done
        return -side * float(quantity) * (float(price) - mark) - float(fee)

    # --- fills

    def execute(self, book: Book, order: PaperOrder, ref: float, *, is_maker: bool, at_open: bool) -> bool:
        """Fill ``order`` from reference price ``ref`` (the open, a stop level, a limit): slipped
        with the taker fee, or at ``ref`` with the maker fee. False when it expired instead."""
        if book.costs is None:
            self.close(book, order, PaperOrder.Status.EXPIRED, f"invalid paper cost settings: {book.costs_error}")
            return False
        costs = book.costs
        side = side_sign(order.side)
        sized = order.sizing is not None or (order.quote_quantity is not None and order.type == "market")
        cap = Decimal(0)
        units = 0.0
        if order.reduce_only:
            cap = self._reduce_cap(book, side)
            if cap <= 0:
                self.close(book, order, PaperOrder.Status.EXPIRED, "reduce only: no position to reduce")
                return False
        if sized:
            units, price = self._sized(book, order, side, ref, is_maker)
            if not units > 0.0:
                self.close(book, order, PaperOrder.Status.EXPIRED, "could not be sized")
                return False
            quantity = quantity_decimal(units)
        else:
            quantity = order.quantity
            if order.reduce_only:
                quantity = min(quantity, cap)
            price = (
                ref
                if is_maker
                else fill_price(side, ref, float(quantity), self.bar.volume, self.bar.range, costs, self.tick)
            )
        if quantity <= 0:
            self.close(book, order, PaperOrder.Status.EXPIRED, "could not be sized")
            return False
        fee = fee_for(float(quantity) * price if not sized else units * price, is_maker, costs)
        fill = Fill(quantity=quantity, price=price_decimal(price), fee=price_decimal(fee), is_maker=is_maker)
        book.release(order)
        refusal = self._unaffordable(book, order, side, fill)
        if refusal:
            self.close(book, order, PaperOrder.Status.EXPIRED, refusal)
            return False
        book.apply(side, fill)
        order.status = PaperOrder.Status.FILLED
        order.quantity = quantity
        order.filled_quantity = quantity
        order.average_price = fill.price
        order.reason = ""
        self._changed(book, order)
        self.fills.append((order, fill))
        if order.reduce_only:
            book.exits[order.client_order_id] = (side, quantity, fill.price, fill.fee)
        if book.position() == 0:
            self._cancel_children(book)
        if order.attached:
            self._bracket(book, order, side, float(price), from_open=at_open)
        return True

    def _unaffordable(self, book: Book, order: PaperOrder, side: int, fill: Fill) -> str:
        if order.reduce_only:
            return ""
        if side > 0:
            cost = (fill.quantity * fill.price).quantize(TEN_DP) + fill.fee
            free = book.free(book.quote)
            if cost > free + ROUNDING_ALLOWANCE:
                return f"insufficient {book.quote} at the fill: needs {cost}, free {free}"
        elif not book.allow_short:
            free = book.free(book.base)
            if fill.quantity > free:
                return f"insufficient {book.base} at the fill (shorting is off): needs {fill.quantity}, free {free}"
        return ""

    def _cancel_children(self, book: Book) -> None:
        for order in self.orders:
            if order.status in ACTIVE and order.parent_id is not None and order.reduce_only:
                self.close(book, order, PaperOrder.Status.CANCELLED, "position closed")
        for order in self.born:
            if order.status in ACTIVE:
                self.close(book, order, PaperOrder.Status.CANCELLED, "position closed")

    # --- brackets

    def _bracket(self, book: Book, entry: PaperOrder, side: int, price: float, *, from_open: bool) -> None:
        """The OCO pair of a filled entry at the engine's levels (``_levels``)."""
        attached: Mapping[str, Any] = entry.attached or {}
        sizing: Mapping[str, Any] = entry.sizing or {}
        stop = _num(attached, "stop_price")
        if stop is not None:
            stop = float(tick_nearest_raw(stop, self.tick))
        elif _num(attached, "stop_loss"):
            stop = float(tick_nearest_raw(price * (1.0 - side * float(attached["stop_loss"])), self.tick))
        else:
            distance = _num(attached, "stop_distance")
            if (
                distance is None
                and sizing
                and sizing_mode(sizing.get("mode", 0)) == SIZING_MODES.index("risk_per_trade")
            ):
                distance = _num(sizing, "stop_distance")
            if distance is not None and distance == distance:
                stop = float(tick_nearest_raw(price - side * distance, self.tick))
        target = _num(attached, "target_price")
        if target is not None:
            target = float(tick_nearest_raw(target, self.tick))
        elif _num(attached, "take_profit"):
            target = float(tick_nearest_raw(price * (1.0 + side * float(attached["take_profit"])), self.tick))
        group = entry.client_order_id
        exit_side = "sell" if side > 0 else "buy"
        legs = (
            ("stop", stop, attached.get("stop_client_order_id"), ".s"),
            ("limit", target, attached.get("target_client_order_id"), ".t"),
        )
        for kind, level, child_id, suffix in legs:
            if level is None or not level > 0.0:
                continue
            child = PaperOrder(
                account_id=entry.account_id,
                client_order_id=str(child_id or child_client_order_id(entry.client_order_id, suffix)),
                exchange_order_id=f"{entry.exchange_order_id}{suffix}"[:40],
                instrument_id=entry.instrument_id,
                symbol=entry.symbol,
                side=exit_side,
                type=kind,
                quantity=entry.filled_quantity,
                price=price_decimal(level) if kind == "limit" else None,
                stop_price=price_decimal(level) if kind == "stop" else None,
                reduce_only=True,
                parent=entry,
                oco_group=group[:40],
                timeframe=entry.timeframe,
                accepted_bar_ts=self.bar.ts,
                time_in_force="GTC",
                created_at=self.now,
                updated_at=self.now,
            )
            self.new_orders.append(child)
            self.born.append(child)
            book.touch(child)
        self.fresh_groups[group[:40]] = (self.bar.open, False) if from_open else (price, True)

    # --- the rules

    def hit(self, order: PaperOrder, ref_open: float, *, stop_only: bool = False) -> tuple[int, float] | None:
        """(priority, reference price) if this bar fills or triggers ``order``, else None.
        Priorities are the engine's: 0 stop gap at the open, 1 limit at or better than the
        open, 2 stop touched, 3 limit touched."""
        side = side_sign(order.side)
        if order.type in STOP_TYPES and not order.is_triggered:
            stop = float(order.stop_price or 0)
            if side * (ref_open - stop) >= 0.0:
                return 0, ref_open
            if (side > 0 and self.bar.high >= stop) or (side < 0 and self.bar.low <= stop):
                return 2, stop
            return None
        if stop_only:
            return None
        limit = float(order.price or 0)
        if side * (ref_open - limit) <= 0.0:
            return 1, ref_open
        if (side > 0 and self.bar.low <= limit) or (side < 0 and self.bar.high >= limit):
            return 3, limit
        return None

    def take(self, book: Book, order: PaperOrder, priority: int, ref: float) -> bool:
        """Act on a hit: a stop fills slipped; a limit at ``ref``; a stop-limit triggers and
        fills at the trigger price when its limit allows, else rests as a limit."""
        if order.type == "stop":
            return self.execute(book, order, ref, is_maker=False, at_open=priority == 0)
        if order.type == "stop_limit" and not order.is_triggered:
            limit = float(order.price or 0)
            if side_sign(order.side) * (ref - limit) <= 0.0:
                return self.execute(book, order, ref, is_maker=True, at_open=False)
            order.is_triggered = True
            order.accepted_bar_ts = self.bar.ts  # a limit from the next bar on
            self._changed(book, order)
            return False
        return self.execute(book, order, ref, is_maker=True, at_open=False)

    def play(self, book: Book, orders: list[PaperOrder]) -> None:
        """The bar for one account (its orders of this series, by pk)."""
        self.orders, self.born = orders, []
        o = self.bar.open
        markets = [x for x in orders if x.type == "market"]
        for order in sorted(markets, key=lambda x: (not x.reduce_only, x.pk)):
            if order.status in ACTIVE:
                self.execute(book, order, o, is_maker=False, at_open=True)
        plain = [x for x in orders if x.type != "market" and not x.oco_group]
        for phase_limits in (True, False):
            for order in plain:
                is_limit = order.type == "limit" or order.is_triggered
                if order.status not in ACTIVE or is_limit != phase_limits:
                    continue
                found = self.hit(order, o)
                if found is not None:
                    self.take(book, order, *found)
        self._play_groups(book, [x for x in orders if x.oco_group])
        for order in orders + self.born:
            if order.status in ACTIVE and order.time_in_force == "GTB" and not self._rests_on(order):
                self.close(book, order, PaperOrder.Status.EXPIRED, "unfilled in its bar (good for one bar)")

    def _rests_on(self, order: PaperOrder) -> bool:
        # A stop-limit triggered in this bar rests as a limit for its next bar.
        return order.is_triggered and order.accepted_bar_ts == self.bar.ts

    def _play_groups(self, book: Book, legs: list[PaperOrder]) -> None:
        groups: dict[str, list[PaperOrder]] = {}
        for order in legs:
            groups.setdefault(order.oco_group, []).append(order)
        for order in list(self.born):
            groups.setdefault(order.oco_group, []).append(order)
        for group, members in groups.items():
            ref_open, stop_only = self.fresh_groups.get(group, (self.bar.open, False))
            active = [x for x in members if x.status in ACTIVE]
            hits = [(found, x) for x in active if (found := self.hit(x, ref_open, stop_only=stop_only)) is not None]
            if not hits:
                continue
            (priority, ref), winner = min(hits, key=lambda h: (h[0][0], h[1].pk or 0))
            # The others go first, as a venue cancels the rest of an OCO list when one leg
            # triggers (and before the fill's own housekeeping names another reason).
            for other in active:
                if other is not winner:
                    self.close(book, other, PaperOrder.Status.CANCELLED, "OCO: the other order of its group went first")
            self.take(book, winner, priority, ref)


def child_client_order_id(parent: str, suffix: str) -> str:
    """A bracket child's id when the caller gave none: the parent's id + ``.s`` / ``.t``."""
    candidate = f"{parent}{suffix}"
    if len(candidate) <= 40:
        return candidate
    import hashlib

    return f"pb{hashlib.blake2b(candidate.encode(), digest_size=16).hexdigest()}"[:40]


# --- The service --------------------------------------------------------------------------------


def _bar(ts: datetime, bar: Mapping[str, float]) -> Bar:
    return Bar(
        ts=ts,
        open=float(bar["open"]),
        high=float(bar["high"]),
        low=float(bar["low"]),
        close=float(bar["close"]),
        volume=float(bar.get("volume", 0.0) or 0.0),
    )


def _book(
    account: TradingAccount, base: str, quote: str, balances: dict[str, PaperBalance], seen: dict[str, Any]
) -> Book:
    raw = account.connection.get("costs") if isinstance(account.connection, Mapping) else None
    cache_key = json.dumps(raw, sort_keys=True, default=str)
    if cache_key not in seen:  # most accounts share a few cost settings: validate each once
        try:
            seen[cache_key] = (paper_costs(account.connection), "")
        except InvalidSettingsError as exc:  # one account's bad settings must not stop the others
            seen[cache_key] = (None, str(exc))
    costs, error = seen[cache_key]
    return Book(
        account_id=int(account.pk),
        costs=costs,
        costs_error=error,
        allow_short=allows_short(account.connection),
        base=base,
        quote=quote,
        balances=balances,
    )


@transaction.atomic
def paper_bar_closed(
    *, instrument_id: int, timeframe: str, ts: datetime, bar: Mapping[str, float]
) -> dict[int, list[str]]:
    """Match every resting paper order of this series accepted before the bar ``ts`` (its open
    time) against ``bar`` (open, high, low, close, volume), by the engine's rules (module
    docstring). Returns {account id: [client order ids filled, triggered, created, cancelled or
    expired]} and sends ``paper_orders_changed`` per account after commit.

    Locks the accounts' rows (in pk order) before reading their orders, as submit and cancel
    do, so a bar and an order placed or cancelled at the same moment see each other whole. A
    bar matched twice changes nothing the second time: what filled is no longer resting, and
    what this bar created or triggered rests from the next bar.
    """
    resting = PaperOrder.objects.filter(instrument_id=instrument_id, timeframe=timeframe, status__in=ACTIVE).filter(
        Q(accepted_bar_ts__lt=ts) | Q(accepted_bar_ts__isnull=True)
    )
    account_ids = sorted(set(resting.values_list("account_id", flat=True)))
    if not account_ids:
        return {}
    locked = TradingAccount.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
    accounts = list(locked.only("id", "connection"))
    orders = list(resting.filter(account_id__in=account_ids).order_by("pk"))
    instrument = Instrument.objects.get(pk=instrument_id)
    base, quote = base_quote(instrument)
    tick, lot, min_notional = instrument_floats(instrument)
    balances: dict[int, dict[str, PaperBalance]] = {pk: {} for pk in account_ids}
    for row in PaperBalance.objects.filter(account_id__in=account_ids, asset__in=[base, quote]):
        balances[row.account_id][row.asset] = row
    by_account: dict[int, list[PaperOrder]] = {}
    for order in orders:
        by_account.setdefault(order.account_id, []).append(order)
    matcher = Matcher(instrument, timeframe, _bar(ts, bar), timezone.now(), tick, lot, min_notional)
    books: list[Book] = []
    seen: dict[str, Any] = {}
    for account in accounts:
        book = _book(account, base, quote, balances[int(account.pk)], seen)
        matcher.play(book, by_account.get(int(account.pk), []))
        books.append(book)
    _write(matcher, books)
    changes = {book.account_id: book.changed for book in books if book.changed}
    transaction.on_commit(lambda: paper_orders_announce(changes))
    return changes


def _write(matcher: Matcher, books: list[Book]) -> None:
    """The bar's outcome in bulk: new children, changed orders, fills, balances."""
    bulk_insert(PaperOrder, matcher.new_orders, key=("account", "client_order_id"))
    bulk_update(PaperOrder, list(matcher.updated.values()), _UPDATED_FIELDS)
    quote = base_quote(matcher.instrument)[1]
    fills = [
        PaperFill(
            order=order,
            trade_id=f"P{order.pk}",
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
            fee_currency=quote,
            is_maker=fill.is_maker,
            filled_at=matcher.bar.ts,
        )
        for order, fill in matcher.fills
    ]
    bulk_insert(PaperFill, fills)
    existing: list[PaperBalance] = []
    created: list[PaperBalance] = []
    for book in books:
        for asset in book.dirty:
            bal = book.balances[asset]
            (existing if bal.pk is not None else created).append(bal)
    bulk_update(PaperBalance, existing, ["free", "locked"])
    bulk_insert(PaperBalance, created)


def paper_orders_announce(changes: Mapping[int, list[str]]) -> None:
    """Send ``paper_orders_changed`` once per account (after commit); a failing receiver is
    logged and does not keep the others from running."""
    for account_id, client_order_ids in changes.items():
        for receiver, result in paper_orders_changed.send_robust(
            sender=PaperOrder, account_id=account_id, client_order_ids=list(client_order_ids)
        ):
            if isinstance(result, Exception):
                logger.error(
                    "paper_orders_changed receiver %r failed",
                    receiver,
                    exc_info=(type(result), result, result.__traceback__),
                )
