"""Celery tasks of the marketplace: ids in, one service call. Every message may arrive twice."""

from celery import shared_task

# --- listings (helper A): the verified track record ---------------------------------------------


@shared_task(acks_late=True, time_limit=120, soft_time_limit=110, ignore_result=True)
def listing_stats_refresh(listing_id: int) -> None:
    """Recompute one listing's ``stats_*`` columns (after a leader fill, a subscription change)."""
    from apps.marketplace.services import track_record

    track_record.listing_stats_refresh(listing_id=listing_id)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1780, ignore_result=True)
def listings_stats_refresh_all() -> None:
    """The beat's sweep: every listing's ``stats_*`` (prices move without fills)."""
    from apps.marketplace.services import track_record

    track_record.listings_stats_refresh_all()


# --- fees (helper B) --------------------------------------------------------------------------------


@shared_task(acks_late=True, time_limit=3000, soft_time_limit=2980, ignore_result=True)
def fees_accrue() -> None:
    """The daily beat task: accrue the fees due (each period once: the ledger's UNIQUE constraint
    and the per-subscription lock make a second delivery add nothing)."""
    from apps.marketplace.services import fees

    fees.fees_accrue()


# --- the copy fan-out (routed to the orders queue: CELERY_TASK_ROUTES) ------------------------------


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280, ignore_result=True)
def copy_fanout_chunk(leader_fill_id: int, subscription_ids: list[int], deferrals: int = 0) -> None:
    """Copy one leader fill for a chunk of subscriptions (safe twice: client order ids and
    UNIQUE(leader fill, subscription) make a second run add nothing). ``deferrals``: how often
    the chunk was put back to wait for the copies of the leader's earlier fills."""
    from apps.marketplace.services import fanout

    fanout.copy_fanout_chunk(leader_fill_id=leader_fill_id, subscription_ids=subscription_ids, deferrals=deferrals)


@shared_task(acks_late=True, time_limit=120, soft_time_limit=110, ignore_result=True)
def copy_open_existing(subscription_id: int) -> None:
    """Open the leader's current positions for a new subscription that asked for it."""
    from apps.marketplace.services import fanout

    fanout.copy_open_existing(subscription_id=subscription_id)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280, ignore_result=True)
def copy_fanout_sweep() -> None:
    """Beat (and worker start): re-queue copies recent leader fills have not made yet."""
    from apps.marketplace.services import fanout

    fanout.copy_fanout_sweep()
