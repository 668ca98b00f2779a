"""What the execution services announce after commit: the trades domain signals and the owner's
live events (`trade.order`, `trade.fill`, `trade.position`). Every function here registers its
sends with `transaction.on_commit`, so a rolled-back change is never announced."""

import logging
from typing import Any

from django.db import transaction

from apps.common.broadcast import broadcast, send_now
from apps.common.metrics import FILLS, order_status_reached
from apps.common.presence import users_online
from apps.trades import signals
from apps.trades.models import Fill, Order, Position

logger = logging.getLogger(__name__)


def order_payload(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "account_id": order.account_id,
        "deployment_id": order.deployment_id,
        "instrument_id": order.instrument_id,
        "symbol": order.symbol,
        "source": order.source,
        "leg": order.leg,
        "side": order.side,
        "type": order.type,
        "quantity": order.quantity,
        "price": order.price,
        "stop_price": order.stop_price,
        "reduce_only": order.reduce_only,
        "status": order.status,
        "status_reason": order.status_reason,
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "fees": order.fees,
        "parent_id": order.parent_id,
        "oco_group": order.oco_group,
        "bar_ts": order.bar_ts,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def fill_payload(fill: Fill) -> dict[str, Any]:
    return {
        "id": fill.pk,
        "order_id": fill.order_id,
        "account_id": fill.account_id,
        "deployment_id": fill.deployment_id,
        "instrument_id": fill.instrument_id,
        "trade_id": fill.trade_id,
        "side": fill.side,
        "quantity": fill.quantity,
        "price": fill.price,
        "fee": fill.fee,
        "fee_currency": fill.fee_currency,
        "expected_price": fill.expected_price,
        "slippage_bps": fill.slippage_bps,
        "realized_pnl": fill.realized_pnl,
        "filled_at": fill.filled_at,
    }


def position_payload(position: Position) -> dict[str, Any]:
    return {
        "id": position.pk,
        "account_id": position.account_id,
        "deployment_id": position.deployment_id,
        "instrument_id": position.instrument_id,
        "symbol": position.symbol,
        "quantity": position.quantity,
        "average_price": position.average_price,
        "realized_pnl": position.realized_pnl,
        "fees": position.fees,
        "stop_price": position.stop_price,
        "target_price": position.target_price,
        "opened_at": position.opened_at,
    }


def announce_order(order: Order, owner_id: int) -> None:
    """After commit: `order_changed` and `trade.order` to the owner (and the order counted in
    ``tp_orders_total``)."""
    payload = order_payload(order)
    broadcast(owner_id, "trade.order", payload)
    order_id, status, source = order.pk, order.status, order.source
    transaction.on_commit(lambda: order_status_reached(order_id, status, source))
    transaction.on_commit(
        lambda: signals.order_changed.send(
            sender=Order,
            order_id=payload["id"],
            account_id=payload["account_id"],
            deployment_id=payload["deployment_id"],
            status=payload["status"],
        )
    )


def announce_fill(fill: Fill, order: Order, position: Position, owner_id: int) -> None:
    """After commit: `fill_recorded`, and `trade.fill` / `trade.order` / `trade.position`."""
    broadcast(owner_id, "trade.fill", fill_payload(fill))
    broadcast(owner_id, "trade.position", position_payload(position))
    announce_order(order, owner_id)
    transaction.on_commit(FILLS.labels(source=order.source).inc)
    fill_id, order_id, account_id, deployment_id = fill.pk, fill.order_id, fill.account_id, fill.deployment_id
    transaction.on_commit(
        lambda: signals.fill_recorded.send(
            sender=Fill, fill_id=fill_id, order_id=order_id, account_id=account_id, deployment_id=deployment_id
        )
    )


def announce_halt(*, account_id: int, deployment_id: int | None, reason: str) -> None:
    transaction.on_commit(
        lambda: signals.trading_halted.send(
            sender=Order, account_id=account_id, deployment_id=deployment_id, reason=reason
        )
    )


def announce_fills_bulk(items: list[tuple[Fill, Order, Position, Any]]) -> None:
    """After commit, what ``announce_fill`` does for each (fill, order, position, account) of a
    bulk write, in one callback: the domain signals for every fill, the live events only to
    owners with a connection open (apps.common.presence: one lookup for the whole batch), and
    the "order filled" notifications in one batch."""
    if not items:
        return
    batch = [
        (
            fill.pk,
            order.pk,
            order.account_id,
            order.deployment_id,
            order.status,
            account.owner_id,
            fill,
            order,
            position,
        )
        for fill, order, position, account in items
    ]

    def send() -> None:
        online = users_online(owner_id for *_, owner_id, _, _, _ in batch)
        for fill_id, order_id, account_id, deployment_id, status, owner_id, fill, order, position in batch:
            order_status_reached(order_id, status, order.source)
            FILLS.labels(source=order.source).inc()
            if owner_id in online:
                send_now(owner_id, "trade.fill", fill_payload(fill))
                send_now(owner_id, "trade.position", position_payload(position))
                send_now(owner_id, "trade.order", order_payload(order))
            # bulk=True: receivers that work per fill in bulk elsewhere (the "order filled"
            # notifications, below) skip these.
            signals.order_changed.send(
                sender=Order,
                order_id=order_id,
                account_id=account_id,
                deployment_id=deployment_id,
                status=status,
                bulk=True,
            )
            signals.fill_recorded.send(
                sender=Fill,
                fill_id=fill_id,
                order_id=order_id,
                account_id=account_id,
                deployment_id=deployment_id,
                bulk=True,
            )
        # The "order filled" notifications are not trading: a task on the default queue writes
        # them (in one batch), so the orders queue goes on with the next chunk at once.
        from apps.trades import tasks

        try:
            tasks.fills_notify.apply_async(([fill_id for fill_id, *_ in batch],), queue="default")
        except Exception:
            logger.exception("queueing the notifications of %d fills failed", len(batch))

    transaction.on_commit(send)
