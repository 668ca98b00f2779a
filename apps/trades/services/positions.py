"""Positions: signed quantity, average entry and realised P&L per (account, deployment, symbol);
closing one; a deployment's equity and P&L.

Position arithmetic (`position_math`): adding to a position moves the average entry to the
quantity-weighted mean; reducing it realises (exit - entry) x closed quantity (sign-adjusted for
shorts) and keeps the average; crossing zero (a reversal) realises the whole old position and
opens the remainder at the fill price.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from apps.marketdata.models import Candle
from apps.trades.client_ids import manual_order_id, strategy_order_id
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill, Order, Position
from apps.trades.services.ledger import _require_atomic, ledger_balance, of_deployment

ZERO = Decimal(0)


@dataclass(frozen=True)
class PositionChange:
    quantity: Decimal
    average_price: Decimal | None
    realized: Decimal
    opened: bool  # a position was opened from flat or reversed through zero
    closed: bool  # the position is flat after the fill


def position_math(
    *, quantity: Decimal, average_price: Decimal | None, side: str, fill_quantity: Decimal, price: Decimal
) -> PositionChange:
    """The position after one fill. Pure: Decimal in, Decimal out."""
    delta = fill_quantity if side == Order.Side.BUY else -fill_quantity
    new_quantity = quantity + delta
    if quantity == 0 or (quantity > 0) == (delta > 0):
        held = abs(quantity)
        average = price if quantity == 0 or average_price is None else average_price
        new_average = (held * average + abs(delta) * price) / (held + abs(delta))
        return PositionChange(new_quantity, new_average, ZERO, quantity == 0, False)
    closed_quantity = min(abs(quantity), abs(delta))
    entry = average_price if average_price is not None else price
    direction = 1 if quantity > 0 else -1
    realized = closed_quantity * (price - entry) * direction
    if new_quantity == 0:
        return PositionChange(ZERO, None, realized, False, True)
    if (new_quantity > 0) == (quantity > 0):
        return PositionChange(new_quantity, average_price, realized, False, False)
    return PositionChange(new_quantity, price, realized, True, False)


def position_lock(*, account_id: int, deployment_id: int | None, instrument_id: int, symbol: str) -> Position:
    """The position row, locked (created flat if missing). Call inside a transaction holding
    the account lock: the account lock is what makes the get-or-create race-free."""
    _require_atomic()
    position = (
        Position.objects.select_for_update()
        .filter(account_id=account_id, instrument_id=instrument_id, **of_deployment(deployment_id))
        .first()
    )
    if position is None:
        position = Position.objects.create(
            account_id=account_id, deployment_id=deployment_id, instrument_id=instrument_id, symbol=symbol
        )
    return position


def position_apply_fill(
    *, position: Position, order: Order, fill: Fill, fee_base: Decimal, fee_value: Decimal, at: datetime
) -> Decimal:
    """Apply a recorded fill to its locked position; returns the P&L it realised. ``fee_base``:
    a fee the venue took in the base asset (a buy then adds that much less, a sell removes that
    much more); ``fee_value``: the fee valued in quote (added to the position's fees)."""
    _require_atomic()
    quantity = fill.quantity - fee_base if fill.side == Order.Side.BUY else fill.quantity + fee_base
    change = position_math(
        quantity=position.quantity,
        average_price=position.average_price,
        side=fill.side,
        fill_quantity=quantity,
        price=fill.price,
    )
    position.quantity = change.quantity
    position.average_price = change.average_price
    position.realized_pnl += change.realized
    position.fees += fee_value
    if change.closed:
        position.opened_at = None
        position.entry_bar_ts = None
        position.extreme_price = None
        position.stop_price = None
        position.target_price = None
    elif change.opened:
        position.opened_at = at
        position.entry_bar_ts = order.bar_ts
        position.extreme_price = fill.price
        position.stop_price, position.target_price = _bracket_levels(order, fill.price, change.quantity > 0)
    position.save()
    return change.realized


def _bracket_levels(order: Order, price: Decimal, is_long: bool) -> tuple[Decimal | None, Decimal | None]:
    """Stop and target of an entry's bracket, as prices (fractions are taken from the fill)."""
    bracket = order.bracket or {}
    stop = bracket.get("stop_price")
    target = bracket.get("target_price")
    sign = 1 if is_long else -1
    if stop is None and bracket.get("stop_loss"):
        stop = price * (1 - sign * Decimal(str(bracket["stop_loss"])))
    if target is None and bracket.get("take_profit"):
        target = price * (1 + sign * Decimal(str(bracket["take_profit"])))
    return (
        Decimal(str(stop)) if stop is not None else None,
        Decimal(str(target)) if target is not None else None,
    )


def last_price(*, instrument_id: int) -> Decimal | None:
    """The newest stored candle's close of any timeframe (a mark for P&L and a reference price
    for orders that carry none)."""
    close = Candle.objects.filter(instrument_id=instrument_id).order_by("-ts").values_list("close", flat=True).first()
    # Stored candles are float64: keep the 10 decimal places an Order's money fields hold.
    return Decimal(str(close)).quantize(Decimal("1e-10")) if close is not None else None


@transaction.atomic
def position_close(
    *, account_id: int, deployment_id: int | None, instrument_id: int, reason: str, source: str = "exit"
) -> Order | None:
    """Submit a reduce-only market order for the whole position (None when flat). An open close
    order for the same position is returned instead of a second one, so a double click or a
    repeated stop does not oversell. The order goes through order_submit's risk checks (reduce-only
    orders pass a REDUCE_ONLY switch; HALTED refuses them: the order comes back REJECTED)."""
    from apps.trades.services.orders import order_submit

    position = Position.objects.filter(
        account_id=account_id, instrument_id=instrument_id, **of_deployment(deployment_id)
    ).first()
    if position is None or position.quantity == 0:
        return None
    pending = (
        Order.objects.filter(
            account_id=account_id,
            **of_deployment(deployment_id),
            instrument_id=instrument_id,
            reduce_only=True,
            leg="close",
            status__in=Order.OPEN_STATUSES,
        )
        .order_by("-pk")
        .first()
    )
    if pending is not None:
        return pending
    now = timezone.now().replace(microsecond=0)
    if deployment_id is not None:
        client_order_id = strategy_order_id(
            deployment_id=deployment_id, bar_ts=now, instrument_id=instrument_id, leg="close"
        )
    else:
        client_order_id = manual_order_id()
    intent = OrderIntent(
        account_id=account_id,
        instrument_id=instrument_id,
        deployment_id=deployment_id,
        side=Order.Side.SELL if position.quantity > 0 else Order.Side.BUY,
        type=Order.Type.MARKET,
        quantity=abs(position.quantity),
        reduce_only=True,
        source=source,
        leg="close",
        client_order_id=client_order_id,
        expected_price=last_price(instrument_id=instrument_id) or position.average_price,
    )
    order = order_submit(intent=intent, raise_refusal=False)
    if reason and not order.status_reason:
        Order.objects.filter(pk=order.pk, status_reason="").update(status_reason=reason[:500])
        order.status_reason = reason[:500]
    return order


def deployment_equity(*, deployment: Any, prices: Mapping[int, Decimal]) -> Decimal:
    """Capital + ledger (trade cash flows and fees) + open positions marked at ``prices``
    (instrument id -> price; a missing price marks at the average entry)."""
    equity: Decimal = deployment.capital + ledger_balance(account_id=deployment.account_id, deployment_id=deployment.pk)
    for position in Position.objects.filter(deployment_id=deployment.pk).exclude(quantity=0):
        mark = prices.get(position.instrument_id, position.average_price or ZERO)
        equity += position.quantity * mark
    return equity


def deployment_pnl_summary(*, deployment: Any, prices: Mapping[int, Decimal] | None = None) -> dict[str, Any]:
    """Realised and unrealised P&L, fees, equity, fill counts and slippage of one deployment.
    Prices default to each instrument's newest candle close."""
    positions = list(Position.objects.filter(deployment_id=deployment.pk))
    marks: dict[int, Decimal] = dict(prices or {})
    unrealized = ZERO
    for position in positions:
        if position.quantity == 0:
            continue
        if position.instrument_id not in marks:
            mark = last_price(instrument_id=position.instrument_id)
            marks[position.instrument_id] = mark if mark is not None else position.average_price or ZERO
        unrealized += position.quantity * (marks[position.instrument_id] - (position.average_price or ZERO))
    fills = Fill.objects.filter(deployment_id=deployment.pk).aggregate(
        count=Count("id"),
        volume=Sum("quantity"),
        slippage_avg=Avg("slippage_bps"),
        slippage_worse=Count("id", filter=Q(slippage_bps__gt=0)),
    )
    realized = sum((p.realized_pnl for p in positions), ZERO)
    fees = sum((p.fees for p in positions), ZERO)
    return {
        "deployment_id": deployment.pk,
        "capital": deployment.capital,
        "equity": deployment_equity(deployment=deployment, prices=marks),
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "net_pnl": realized + unrealized - fees,
        "fills": fills["count"],
        "slippage_bps_avg": fills["slippage_avg"],
        "fills_with_adverse_slippage": fills["slippage_worse"],
        "open_positions": [
            {
                "instrument_id": p.instrument_id,
                "symbol": p.symbol,
                "quantity": p.quantity,
                "average_price": p.average_price,
                "mark": marks.get(p.instrument_id),
            }
            for p in positions
            if p.quantity != 0
        ],
    }


def account_positions(*, account_id: int, open_only: bool = True) -> list[Position]:
    """Every position row of an account (each deployment's and the manual one)."""
    queryset = Position.objects.filter(account_id=account_id).select_related("instrument")
    if open_only:
        queryset = queryset.exclude(quantity=0)
    return list(queryset.order_by("symbol", "pk"))


def account_net_positions(*, account_id: int) -> dict[str, Decimal]:
    """The account's net signed quantity per venue symbol, over all its deployments."""
    rows = (
        Position.objects.filter(account_id=account_id)
        .values("symbol")
        .annotate(total=Sum("quantity"))
        .order_by("symbol")
    )
    return {row["symbol"]: row["total"] for row in rows if row["total"]}
