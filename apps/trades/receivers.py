"""Receivers of other apps' signals, connected in TradesConfig.ready().

- ``accounts.signals.paper_orders_changed``: the paper venue matched a closed bar and filled,
  triggered or cancelled these orders. They are synced here, inline: for a paper account the
  "venue" is a database read, and syncing before the bar's ticks are queued means each tick
  already sees the fills (and the bracket legs) of the bar that just closed.
- celery ``worker_ready``: queue a reconciliation of every account (never inline: a worker's
  start must not wait on venues).
"""

import logging
from typing import Any

logger = logging.getLogger(__name__)


def on_paper_orders_changed(sender: Any, account_id: int, client_order_ids: list[str], **kwargs: Any) -> None:
    from apps.trades.services.orders import orders_sync_for_account

    try:
        orders_sync_for_account(account_id=account_id, client_order_ids=client_order_ids)
    except Exception:
        # The bar's processing goes on; the next sync (tick, beat reconcile) catches up.
        logger.exception("syncing paper orders of account %s failed", account_id)


def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    from apps.trades import tasks

    try:
        tasks.accounts_reconcile.delay()
    except Exception:
        logger.exception("could not queue the start-up reconciliation")


# --- notifications (apps.notifications is below trades: called directly) -------------------------


def _fill_notification(fill: Any, deployment_id: int | None) -> Any:
    """The "order filled" notification of a fill (with its order and account loaded)."""
    from apps.notifications.models import Event
    from apps.notifications.services import NotificationItem

    order, account = fill.order, fill.account
    quantity, price = fill.quantity.normalize(), fill.price.normalize()
    done = "filled" if order.status == order.Status.FILLED else "partly filled"
    return NotificationItem(
        user_id=account.owner_id,
        event=Event.ORDER_FILLED,
        title=f"{fill.side.upper()} {quantity:f} {order.symbol} @ {price:f} {done}",
        body=f"Account {account.name}; fee {fill.fee.normalize():f} {fill.fee_currency}; "
        f"realized P&L {fill.realized_pnl.normalize():f}.",
        data={
            "fill_id": fill.pk,
            "order_id": order.pk,
            "account_id": account.pk,
            "deployment_id": deployment_id,
            "symbol": order.symbol,
            "side": fill.side,
            "quantity": str(fill.quantity),
            "price": str(fill.price),
            "source": order.source,
        },
        dedupe_key=f"fill:{fill.pk}",
    )


def _daily_loss_check(fill: Any) -> None:
    """A daily-loss alert when the account's realized P&L today reached a threshold of its owner."""
    from apps.notifications.models import Event
    from apps.notifications.services import notify_threshold
    from apps.notifications.services.notify import has_threshold_rules

    account = fill.account
    if fill.realized_pnl >= 0 or not has_threshold_rules(user_id=account.owner_id, event=Event.DAILY_LOSS):
        return
    loss = -_realized_today(account.pk)
    if loss > 0:
        notify_threshold(
            user_id=account.owner_id,
            event=Event.DAILY_LOSS,
            value=loss,
            scope=f"account:{account.pk}",
            title=f"Daily loss alert: {account.name} is down {loss.normalize():f} {account.base_currency} today",
            body="Realized P&L minus fees since 00:00 UTC reached your alert threshold.",
            data={"account_id": account.pk},
        )


def on_fill_recorded_notify(
    sender: Any, fill_id: int, order_id: int, account_id: int, deployment_id: int | None, **kwargs: Any
) -> None:
    """Queue the "order filled" notification of a fill (and its daily-loss check) as a task on
    the default queue: fills are recorded on the trading path (a closed bar syncs a thousand
    paper fills before its ticks are queued), and a notification is not trading. Fills of a bulk
    write (``bulk=True``) are queued together by events.announce_fills_bulk instead."""
    from apps.trades import tasks

    if kwargs.get("bulk"):
        return
    try:
        tasks.fills_notify.apply_async(([fill_id],), queue="default")
    except Exception:
        # A notification must never disturb trading: log and carry on.
        logger.exception("queueing the notification of fill %s failed", fill_id)


def fills_notify_bulk(fill_ids: list[int]) -> None:
    """The "order filled" notifications of a bulk write's fills (a copy fan-out chunk), in one
    batch (apps.notifications.services.notify_many), and the daily-loss check for the losing
    fills of owners with such a rule. Run by the task ``fills_notify`` (default queue), which
    events.announce_fills_bulk queues after commit."""
    from apps.notifications.models import Event
    from apps.notifications.services import notify_many
    from apps.notifications.services.notify import users_with_threshold_rules
    from apps.trades.models import Fill

    fills = list(Fill.objects.select_related("order", "account").filter(pk__in=fill_ids).order_by("pk"))
    notify_many([_fill_notification(fill, fill.deployment_id) for fill in fills])
    losing = [fill for fill in fills if fill.realized_pnl < 0]
    if losing:
        watched = users_with_threshold_rules(
            user_ids=[fill.account.owner_id for fill in losing], event=Event.DAILY_LOSS
        )
        for fill in losing:
            if fill.account.owner_id in watched:
                _daily_loss_check(fill)


def _realized_today(account_id: int) -> Any:
    from decimal import Decimal

    from django.db.models import Sum
    from django.utils import timezone

    from apps.trades.models import Fill

    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    totals = Fill.objects.filter(account_id=account_id, filled_at__gte=start).aggregate(
        pnl=Sum("realized_pnl"), fees=Sum("fee")
    )
    return (totals["pnl"] or Decimal(0)) - (totals["fees"] or Decimal(0))


def on_order_changed_notify(
    sender: Any, order_id: int, account_id: int, deployment_id: int | None, status: str, **kwargs: Any
) -> None:
    """A rejected order (by the venue, or refused by risk) notifies its owner with the reason."""
    from apps.notifications.models import Event
    from apps.notifications.services import notify
    from apps.trades.models import Order

    if status != Order.Status.REJECTED:
        return
    try:
        order = Order.objects.select_related("account").get(pk=order_id)
        reason = order.status_reason or "no reason given"
        notify(
            user_id=order.account.owner_id,
            event=Event.ORDER_REJECTED,
            title=f"{order.side.upper()} {order.quantity.normalize():f} {order.symbol} rejected",
            body=f"Account {order.account.name}: {reason}",
            data={
                "order_id": order.pk,
                "account_id": order.account_id,
                "deployment_id": deployment_id,
                "symbol": order.symbol,
                "reason": reason,
            },
            dedupe_key=f"order-rejected:{order.pk}",
        )
    except Exception:
        logger.exception("notifying rejected order %s failed", order_id)


def daily_summary_lines(user_id: int, since: Any, until: Any) -> list[str]:
    """The trading part of a user's daily summary (apps.notifications.services.summaries):
    realized P&L, fees and fills per account over the period."""
    from decimal import Decimal

    from django.db.models import Count, Sum

    from apps.trades.models import Fill

    rows = (
        Fill.objects.filter(account__owner_id=user_id, filled_at__gte=since, filled_at__lt=until)
        .values("account__name", "account__base_currency")
        .annotate(pnl=Sum("realized_pnl"), fees=Sum("fee"), fills=Count("id"))
        .order_by("account__name")
    )
    lines = []
    for row in rows:
        pnl, fees = row["pnl"] or Decimal(0), row["fees"] or Decimal(0)
        net = pnl - fees
        lines.append(
            f"{row['account__name']}: net realized P&L {net.normalize():f} {row['account__base_currency']} "
            f"({row['fills']} fills, fees {fees.normalize():f})"
        )
    return lines
