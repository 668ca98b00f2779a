"""The marketplace's live events (sent with ``apps.common.broadcast.broadcast``, after commit):

- ``copy.trade`` to the follower, one per CopyTrade the fan-out writes or updates:
  ``copy_trade_payload``. The follower's order then announces itself with the trades app's own
  ``trade.order`` / ``trade.fill`` events (its ``deployment_id`` is the subscription's copy book).
- ``copy.subscription`` to the follower when a subscription changes: ``subscription_payload``.

The payload builders read only the rows' own columns and the relations the caller loaded:
the fan-out builds thousands of them per leader fill, so it passes CopyTrades whose
``leader_fill`` (one object shared by all of them) and ``order`` are already attached; an
unloaded relation costs one query.
"""

from decimal import Decimal
from typing import Any

from apps.marketplace.models import CopyTrade, Subscription

BPS = Decimal(10000)
SLIPPAGE_PLACES = Decimal("0.01")


def copy_slippage_bps(*, side: str, leader_price: Decimal | None, follower_price: Decimal | None) -> Decimal | None:
    """Slippage of the follower's average fill price against the leader's fill price, in basis
    points, signed against the follower: positive = worse (paid more on a buy, got less on a
    sell), negative = better. None when either price is missing."""
    if not leader_price or follower_price is None:
        return None
    diff = follower_price - leader_price if side == "buy" else leader_price - follower_price
    return (diff / leader_price * BPS).quantize(SLIPPAGE_PLACES)


def copy_trade_payload(copy_trade: CopyTrade) -> dict[str, Any]:
    """The ``copy.trade`` event: the leader's fill beside the follower's order (or the reason
    there is none) and the slippage between them once the order has filled."""
    fill = copy_trade.leader_fill
    order = copy_trade.order if copy_trade.order_id is not None else None
    average_price = order.average_price if order is not None else None
    return {
        "id": copy_trade.pk,
        "subscription_id": copy_trade.subscription_id,
        "leader_fill_id": copy_trade.leader_fill_id,
        "status": copy_trade.status,
        "status_display": copy_trade.get_status_display(),
        "code": copy_trade.code,
        "reason": copy_trade.reason,
        "side": copy_trade.side,
        "instrument_id": fill.instrument_id,
        "symbol": order.symbol if order is not None else "",
        "leader_quantity": copy_trade.leader_quantity,
        "leader_price": copy_trade.leader_price,
        "leader_filled_at": fill.filled_at,
        "quantity": copy_trade.quantity,
        "reference_price": copy_trade.reference_price,
        "order_id": copy_trade.order_id,
        "order_status": order.status if order is not None else None,
        "filled_quantity": order.filled_quantity if order is not None else None,
        "average_price": average_price,
        "slippage_bps": copy_slippage_bps(
            side=copy_trade.side, leader_price=copy_trade.leader_price, follower_price=average_price
        ),
        "created_at": copy_trade.created_at,
    }


def subscription_payload(subscription: Subscription) -> dict[str, Any]:
    """The ``copy.subscription`` event and the API's subscription body share these fields."""
    return {
        "id": subscription.pk,
        "listing_id": subscription.listing_id,
        "account_id": subscription.account_id,
        "deployment_id": subscription.deployment_id,
        "status": subscription.status,
        "status_display": subscription.get_status_display(),
        "status_reason": subscription.status_reason,
        "sizing_mode": subscription.sizing_mode,
        "multiplier": subscription.multiplier,
        "fixed_notional": subscription.fixed_notional,
        "allocation": subscription.allocation,
        "max_loss": subscription.max_loss,
        "max_position_notional": subscription.max_position_notional,
        "max_price_deviation_pct": subscription.max_price_deviation_pct,
        "open_existing": subscription.open_existing,
        "show_identity": subscription.show_identity,
        "high_water_mark": subscription.high_water_mark,
        "started_at": subscription.started_at,
        "ended_at": subscription.ended_at,
        "updated_at": subscription.updated_at,
    }
