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


# --- notifications (called after commit by the marketplace services) -----------------------------


def notify_listing_status(*, listing_id: int) -> None:
    """Tell a listing's owner it was approved or rejected (with the reviewer's reason)."""
    from apps.marketplace.models import Listing
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    try:
        listing = Listing.objects.filter(pk=listing_id).first()
        if listing is None or listing.status not in (Listing.Status.APPROVED, Listing.Status.REJECTED):
            return
        approved = listing.status == Listing.Status.APPROVED
        notify(
            user_id=listing.owner_id,
            event=Event.LISTING_APPROVED if approved else Event.LISTING_REJECTED,
            title=f"Listing “{listing.title}” {'approved' if approved else 'rejected'}",
            body=(
                "It is now public on the marketplace."
                if approved
                else f"Reason: {listing.status_reason or 'none given'}. Edit it and submit it again."
            ),
            data={"listing_id": listing.pk, "status": listing.status, "reason": listing.status_reason},
        )
    except Exception:
        logger.exception("notifying listing %s status failed", listing_id)


def notify_new_follower(*, subscription_id: int) -> None:
    """Tell a listing's owner someone started copying it (named only if the follower allows)."""
    from apps.marketplace.models import Subscription
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    try:
        sub = Subscription.objects.select_related("listing", "follower").filter(pk=subscription_id).first()
        if sub is None:
            return
        who = sub.follower.email if sub.show_identity else "A new follower"
        notify(
            user_id=sub.listing.owner_id,
            event=Event.NEW_FOLLOWER,
            title=f"New follower on “{sub.listing.title}”",
            body=f"{who} copies it with an allocation of {sub.allocation.normalize():f} {sub.listing.currency}.",
            data={"listing_id": sub.listing_id, "subscription_id": sub.pk if sub.show_identity else None},
            dedupe_key=f"new-follower:{sub.pk}",
        )
    except Exception:
        logger.exception("notifying the new follower of subscription %s failed", subscription_id)


def notify_copies_failed(*, items: list[tuple[int, int, int, str, str]]) -> None:
    """Tell followers a copy of a leader's trade failed or was refused: (follower id,
    subscription id, leader fill id, status, reason) each; once per copy (dedupe key)."""
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    for follower_id, subscription_id, fill_id, status, reason in items:
        try:
            notify(
                user_id=follower_id,
                event=Event.COPY_FAILED,
                title=f"A copied trade was {'refused' if status == 'refused' else 'not made'}",
                body=reason or "No reason given.",
                data={"subscription_id": subscription_id, "leader_fill_id": fill_id, "status": status},
                dedupe_key=f"copy-failed:{fill_id}:{subscription_id}",
            )
        except Exception:
            logger.exception("notifying the failed copy of fill %s (subscription %s) failed", fill_id, subscription_id)
