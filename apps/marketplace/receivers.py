"""Receivers of lower apps' signals, connected in MarketplaceConfig.ready().

- ``trades.signals.fill_recorded``: a fill of a listed deployment (a leader's fill) queues the
  copy fan-out. The receiver only checks, with one indexed query, whether the fill's
  deployment is listed with followers, and enqueues; the fan-out itself runs in tasks.
"""

import logging
from typing import Any

logger = logging.getLogger(__name__)


def on_fill_recorded(
    sender: Any, fill_id: int, order_id: int, account_id: int, deployment_id: int | None, **kwargs: Any
) -> None:
    if deployment_id is None:
        return
    from apps.marketplace.services.fanout import copy_fanout_start

    try:
        copy_fanout_start(leader_fill_id=fill_id, deployment_id=deployment_id)
    except Exception:
        # The fill is recorded; the beat sweep (copy_fanout_sweep) finds fills not fanned out.
        logger.exception("queueing the copy fan-out of fill %s failed", fill_id)


def on_account_status_changed(sender: Any, account_id: int, status: str, reason: str = "", **kwargs: Any) -> None:
    """An account that needs reconnecting (a revoked key) stops copying: its active
    subscriptions are paused with the reason, which the follower sees live on the subscription
    page (they resume them after reconnecting)."""
    from apps.accounts.models import TradingAccount
    from apps.marketplace.models import Subscription
    from apps.marketplace.services.subscriptions import subscription_pause

    if status == TradingAccount.Status.ACTIVE:
        return
    for subscription in Subscription.objects.filter(account_id=account_id, status=Subscription.Status.ACTIVE):
        try:
            subscription_pause(
                subscription=subscription,
                actor=None,
                reason=f"Copying paused: the account needs attention ({reason or status}).",
            )
        except Exception:
            logger.exception("stopping subscription %s of account %s failed", subscription.pk, account_id)


def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """A worker (re)started: re-queue copies a killed worker left unmade (never inline)."""
    from apps.marketplace import tasks

    try:
        tasks.copy_fanout_sweep.delay()
    except Exception:
        logger.exception("could not queue the copy fan-out sweep")
