"""Position sizing for live and paper orders: the backtest engine's formulas, one order at a time.

Two ways an entry gets its size:

- Paper accounts size **at the fill**, exactly as the engine does (so a paper deployment and a
  backtest on the same candles trade the same units): the tick puts :func:`entry_sizing`'s dict
  in ``OrderIntent.sizing`` and the paper venue calls
  ``apps.backtests.engine.sizing.entry_size_raw`` with it at the fill bar's open.
- Real venues need a quantity when the order is sent: :func:`entry_quantity` runs the same
  ``entry_size_raw`` at the decision price (the signal bar's close) and rounds down to the
  venue's step.

The sizing dict (JSON-ready; ``SIZING_KEYS``):

    mode          sizing mode name: all_equity | fixed_fraction | fixed_amount | risk_per_trade | kelly
    equity        the deployment's equity (float, quote currency) at the decision
    fraction      fixed_fraction's fraction (and Kelly's fallback before enough trades)
    amount        fixed_amount's quote amount
    risk          risk_per_trade's fraction of equity lost if the stop is hit
    stop_distance price units to the stop (risk_per_trade; 0 = unknown -> no entry)
    kelly         the Kelly fraction already computed (kelly mode)
    lot           units step (0 = fractional)
    min_notional  smallest order value (0 = none)
    tick          price tick (0 = none)
    fee           taker rate;  maker_fee: maker rate (resolved, never null);  fee_fixed: per fill
    slippage      slippage model name (none | fixed_bps | volume_share | sqrt_impact)
    slippage_bps  fixed_bps's basis points;  impact: volume_share / sqrt_impact coefficient
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apps.backtests.engine.costs import slippage_code
from apps.backtests.engine.settings import SIZING_MODES, SLIPPAGE_MODELS, EngineSettings
from apps.backtests.engine.sizing import entry_size_raw, sizing_code, target_notional_raw

if TYPE_CHECKING:
    from apps.accounts.brokers.base import MarketRules

SIZING_KEYS = (
    "mode",
    "equity",
    "fraction",
    "amount",
    "risk",
    "stop_distance",
    "kelly",
    "lot",
    "min_notional",
    "tick",
    "fee",
    "maker_fee",
    "fee_fixed",
    "slippage",
    "slippage_bps",
    "impact",
)


def _rule(value: Decimal | None, fallback: float | None) -> float:
    if value is not None and value > 0:
        return float(value)
    return float(fallback) if fallback else 0.0


def entry_sizing(
    *,
    deployment_settings: EngineSettings,
    equity: Decimal,
    price: Decimal,
    stop_distance: float | None,
    kelly: float,
    rules: MarketRules,
) -> dict[str, Any]:
    """The engine sizing inputs an entry carries to the paper venue (``OrderIntent.sizing``).

    ``price`` is the decision price; it is not part of the dict (the venue sizes at its fill
    price) but a ``stop_distance`` of None for risk_per_trade becomes ``stop_loss * price``
    when the settings have a stop loss, as the engine does. ``rules`` (the venue's step, tick
    and minimum) win over the settings' instrument section."""
    s = deployment_settings
    distance = stop_distance
    if (distance is None or not distance > 0) and s.exits.stop_loss:
        distance = float(s.exits.stop_loss) * float(price)
    return {
        "mode": s.sizing.mode,
        "equity": float(equity),
        "fraction": float(s.sizing.fraction),
        "amount": float(s.sizing.amount),
        "risk": float(s.sizing.risk),
        "stop_distance": float(distance) if distance and math.isfinite(distance) else 0.0,
        "kelly": float(kelly),
        "lot": _rule(rules.step_size, s.instrument.lot_size),
        "min_notional": _rule(rules.min_notional, s.instrument.min_notional),
        "tick": _rule(rules.tick_size, s.instrument.tick_size),
        "fee": float(s.costs.taker_rate),
        "maker_fee": float(s.costs.maker_rate),
        "fee_fixed": float(s.costs.fee_fixed),
        "slippage": s.costs.slippage,
        "slippage_bps": float(s.costs.slippage_bps),
        "impact": float(s.costs.impact),
    }


def _mode_code(mode: object) -> int:
    if isinstance(mode, str) and mode in SIZING_MODES:
        return sizing_code(mode)
    if isinstance(mode, int | float) and 0 <= int(mode) < len(SIZING_MODES):
        return int(mode)
    return sizing_code("all_equity")


def _f(sizing: Mapping[str, Any], name: str) -> float:
    value = sizing.get(name)
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def sizing_size_raw(*, sizing: Mapping[str, Any], side: str, price: float, is_maker: bool) -> tuple[float, float]:
    """(units, fill price) from a sizing dict at reference ``price``: ``entry_size_raw`` with
    the dict's inputs (no bar volume: volume-based slippage counts the worst case)."""
    model = sizing.get("slippage", "none")
    return entry_size_raw(
        1 if side == "buy" else -1,
        float(price),
        _f(sizing, "equity"),
        is_maker,
        0.0,
        0.0,
        _mode_code(sizing.get("mode")),
        _f(sizing, "maker_fee") if is_maker else _f(sizing, "fee"),
        _f(sizing, "fee_fixed"),
        _f(sizing, "fraction"),
        _f(sizing, "amount"),
        _f(sizing, "risk"),
        _f(sizing, "stop_distance"),
        _f(sizing, "kelly"),
        slippage_code(model) if model in SLIPPAGE_MODELS else 0,
        _f(sizing, "slippage_bps"),
        _f(sizing, "impact"),
        _f(sizing, "lot"),
        _f(sizing, "min_notional"),
        _f(sizing, "tick"),
    )


def sizing_estimate_quantity(*, sizing: Mapping[str, Any], price: Decimal) -> Decimal:
    """An upper estimate of the units a sized-at-fill order buys at ``price``: the engine's
    target notional (capped at the equity) / price, without slippage (which only lowers it).
    The risk checks count a paper entry by it."""
    if not price > 0:
        return Decimal(0)
    notional = target_notional_raw(
        _mode_code(sizing.get("mode")),
        _f(sizing, "equity"),
        float(price),
        min(_f(sizing, "fee"), _f(sizing, "maker_fee")),
        _f(sizing, "fee_fixed"),
        _f(sizing, "fraction"),
        _f(sizing, "amount"),
        _f(sizing, "risk"),
        _f(sizing, "stop_distance"),
        _f(sizing, "kelly"),
    )
    if not notional > 0 or not math.isfinite(notional):
        return Decimal(0)
    return Decimal(repr(notional)) / Decimal(price)


def entry_quantity(
    *,
    deployment_settings: EngineSettings,
    equity: Decimal,
    price: Decimal,
    stop_distance: float | None,
    kelly: float,
    rules: MarketRules,
    side: str = "buy",
    is_maker: bool = False,
) -> Decimal:
    """The units of an entry on a real venue: the engine's ``entry_size_raw`` at the decision
    ``price`` (equity capped, lots, minimum notional), rounded down to the venue's step.
    Decimal(0) = skip the entry (as the engine skips it)."""
    sizing = entry_sizing(
        deployment_settings=deployment_settings,
        equity=equity,
        price=price,
        stop_distance=stop_distance,
        kelly=kelly,
        rules=rules,
    )
    units, _ = sizing_size_raw(sizing=sizing, side=side, price=float(price), is_maker=is_maker)
    if not units > 0 or not math.isfinite(units):
        return Decimal(0)
    return rules.round_quantity(Decimal(repr(units)))
