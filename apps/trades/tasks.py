"""Celery tasks of the trades app (queue "orders"): ids in, one service call each.

Every task is late-acknowledged and may run twice (a redelivery after a worker died, a
duplicate from the beat's safety net): the services claim their work with conditional updates
and ask the venue instead of resending, so a second run does nothing harmful. Messages carry
ids only, never credentials (the worker decrypts them: apps.accounts.broker_factory).

Retries: ``order_send`` comes back (``self.retry`` with a countdown) only when the service says
the order was certainly not sent (rate limit, 429 Retry-After, connection refused) or deferred;
an ambiguous outcome is never retried here, it becomes UNKNOWN and ``order_resolve`` asks the
venue. Countdowns are capped by ORDER_RETRY_MAX_COUNTDOWN (60 s), well under the broker's
visibility timeout, and ``order_send``'s time limit stays under ORDER_INFLIGHT_SECONDS so an
order still in SENDING after that long belongs to a dead worker.
"""

import logging
from typing import Any

from celery import shared_task
from django.db import DatabaseError

from apps.trades.services import orders, reconcile

logger = logging.getLogger(__name__)

# A send makes one venue call (ccxt's timeout is 10 s) plus a short rate-limit wait.
SEND_SOFT_TIME_LIMIT = 20
SEND_TIME_LIMIT = 25
_ORDER: dict[str, Any] = {
    "acks_late": True,
    "ignore_result": True,
    "soft_time_limit": SEND_SOFT_TIME_LIMIT,
    "time_limit": SEND_TIME_LIMIT,
}
_SLOW: dict[str, Any] = {"acks_late": True, "ignore_result": True, "soft_time_limit": 240, "time_limit": 270}


@shared_task(bind=True, max_retries=None, **_ORDER)
def order_send(self, order_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        delay = orders.order_send(order_id=order_id)
    except DatabaseError:
        # The database went away mid-send (after the venue may have answered): the order is left
        # in SENDING or NEW; ask about it once the in-flight window has passed.
        logger.exception("order_send %s: database error; resolving later", order_id)
        order_resolve.apply_async((order_id,), countdown=orders.inflight_seconds())
        raise
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task(bind=True, max_retries=None, **_ORDER)
def order_resolve(self, order_id: int) -> None:  # type: ignore[no-untyped-def]
    delay = orders.order_resolve(order_id=order_id)
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task(**_ORDER)
def order_sync(order_id: int) -> None:
    orders.order_sync(order_id=order_id)


@shared_task(**_ORDER)
def order_cancel(order_id: int) -> None:
    orders.order_cancel_send(order_id=order_id)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def orders_resolve_unknown() -> None:
    orders.orders_resolve_stuck()


@shared_task(**_SLOW)
def orders_sync_for_account(account_id: int) -> None:
    orders.orders_sync_for_account(account_id=account_id)


@shared_task(**_SLOW)
def account_reconcile(account_id: int) -> None:
    reconcile.account_reconcile(account_id=account_id)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def accounts_reconcile() -> None:
    for account_id in reconcile.accounts_to_reconcile():
        account_reconcile.delay(account_id)


@shared_task(**_ORDER)
def algo_step(parent_id: int, n: int) -> None:
    from apps.trades.services import algos

    algos.algo_step(parent_id=parent_id, n=n)  # schedules its own next step


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280, ignore_result=True)
def fills_notify(fill_ids: list[int]) -> None:
    """The "order filled" notifications of a bulk write's fills (queued on the default queue:
    not trading). Safe twice: each notification's dedupe key is its fill."""
    from apps.trades.receivers import fills_notify_bulk

    fills_notify_bulk(fill_ids)
