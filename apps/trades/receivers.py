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
