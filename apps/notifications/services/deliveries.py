"""Sending deliveries: one external message per batch of queued deliveries of the same
(user, channel, event) that are due, with retries.

``delivery_send`` claims the batch (QUEUED -> SENDING, attempts + 1) in a short transaction,
sends outside it (no row lock is held during the network call), then records the outcome:
SENT; on a temporary error QUEUED again with an exponential backoff
(``NOTIFICATIONS_RETRY_BASE_SECONDS`` * 2^(attempt-1), capped) until
``NOTIFICATIONS_MAX_ATTEMPTS``, then FAILED with the reason; on a permanent error FAILED at
once. Channels are independent: each has its own deliveries, so a failing webhook never holds
back the e-mail.

Delivery is at least once: a worker killed between the send and recording it leaves the batch
SENDING; the sweep puts batches claimed longer than ``NOTIFICATIONS_CLAIM_STALE_SECONDS`` ago
back in the queue (a message may then arrive twice; it is never lost).
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.common.broadcast import broadcast
from apps.notifications.channels import (
    DeliveryError,
    Message,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    email,
    telegram,
    webhook,
)
from apps.notifications.models import Channel, Delivery, Event, NotificationSettings

logger = logging.getLogger(__name__)

BATCH_MAX = 200
BATCH_LINES = 20
PLURAL_TITLES: dict[str, str] = {
    Event.ORDER_FILLED: "{n} orders filled",
    Event.ORDER_REJECTED: "{n} orders rejected",
    Event.COPY_FAILED: "{n} copied trades failed",
    Event.NEW_FOLLOWER: "{n} new followers",
    Event.SECURITY: "{n} security events",
}


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def retry_delay(attempts: int) -> float:
    base = _setting("NOTIFICATIONS_RETRY_BASE_SECONDS", 10)
    return min(base * 2 ** max(0, attempts - 1), _setting("NOTIFICATIONS_RETRY_MAX_SECONDS", 1800))


def build_message(deliveries: list[Delivery]) -> Message:
    """One message for a batch: the notification itself, or a summary of the burst."""
    notifications = [d.notification for d in deliveries]
    items = [
        {"id": n.pk, "title": n.title, "body": n.body, "data": n.data, "created_at": n.created_at}
        for n in notifications
    ]
    first = notifications[0]
    if len(notifications) == 1:
        return Message(event=first.event, title=first.title, body=first.body, items=items)
    n = len(notifications)
    label = Event(first.event).label if first.event in Event.values else first.event
    template = PLURAL_TITLES.get(first.event, "{n} x " + label)
    title = template.format(n=n)
    lines = [f"- {x.title}" for x in notifications[:BATCH_LINES]]
    if n > BATCH_LINES:
        lines.append(f"… and {n - BATCH_LINES} more")
    return Message(event=first.event, title=title, body="\n".join(lines), count=n, items=items)


def _send(channel: str, prefs: NotificationSettings, address: str, message: Message) -> None:
    if channel == Channel.EMAIL:
        if not prefs.email_enabled:
            raise PermanentDeliveryError("E-mail notifications are turned off.")
        email.send(address, message)
    elif channel == Channel.TELEGRAM:
        telegram.send(prefs.telegram_chat_id, message)
    elif channel == Channel.WEBHOOK:
        webhook.send(prefs.webhook_url, prefs.webhook_secret, message)
    else:
        raise PermanentDeliveryError(f"Unknown channel {channel}.")


def _claim(delivery_id: int) -> list[Delivery]:
    now = timezone.now()
    with transaction.atomic():
        lead = Delivery.objects.select_for_update().filter(pk=delivery_id, status=Delivery.Status.QUEUED).first()
        if lead is None or lead.due_at > now + timedelta(seconds=1):
            return []
        batch = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(
                user_id=lead.user_id,
                channel=lead.channel,
                event=lead.event,
                status=Delivery.Status.QUEUED,
                due_at__lte=now + timedelta(seconds=1),
            )
            .order_by("created_at", "pk")[:BATCH_MAX]
        )
        if lead not in batch:
            batch = [lead, *batch[: BATCH_MAX - 1]]
        batch_id = Delivery.new_batch_id()
        for d in batch:
            d.status = Delivery.Status.SENDING
            d.attempts += 1
            d.claimed_at = now
            d.batch_id = batch_id
            d.batch_size = len(batch)
        Delivery.objects.bulk_update(
            batch, ["status", "attempts", "claimed_at", "batch_id", "batch_size", "updated_at"]
        )
    ids = [d.pk for d in batch]
    return list(Delivery.objects.filter(pk__in=ids).select_related("notification", "user").order_by("created_at", "pk"))


def delivery_send(*, delivery_id: int) -> str | None:
    """Send the batch ``delivery_id`` leads (see the module docstring). Returns the batch's new
    status, or None when there was nothing to send (already claimed, not yet due: a duplicate
    or early message does nothing)."""
    batch = _claim(delivery_id)
    if not batch:
        return None
    lead = batch[0]
    prefs = NotificationSettings.objects.filter(user_id=lead.user_id).first() or NotificationSettings(
        user_id=lead.user_id
    )
    message = build_message(batch)
    error: DeliveryError | None = None
    try:
        _send(lead.channel, prefs, lead.user.email, message)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a bug or an unexpected library error: retried like a temporary one
        logger.exception("notification delivery %s failed unexpectedly", lead.pk)
        error = TemporaryDeliveryError(f"Unexpected error: {type(exc).__name__}")
    return _record(batch, error)


def _record(batch: list[Delivery], error: DeliveryError | None) -> str:
    now = timezone.now()
    ids = [d.pk for d in batch]
    rows = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING)
    attempts = max(d.attempts for d in batch)
    if error is None:
        rows.update(status=Delivery.Status.SENT, sent_at=now, last_error="", updated_at=now)
        status = Delivery.Status.SENT
    elif isinstance(error, TemporaryDeliveryError) and attempts < _setting("NOTIFICATIONS_MAX_ATTEMPTS", 5):
        delay = retry_delay(attempts)
        rows.update(
            status=Delivery.Status.QUEUED,
            due_at=now + timedelta(seconds=delay),
            last_error=str(error)[:500],
            updated_at=now,
        )
        status = Delivery.Status.QUEUED
        if delay <= _setting("NOTIFICATIONS_BATCH_SECONDS", 30) + 1:
            from apps.notifications import tasks

            tasks.delivery_send.apply_async((batch[0].pk,), countdown=delay)
    else:
        reason = str(error)[:500]
        if isinstance(error, TemporaryDeliveryError):
            reason = f"Gave up after {attempts} attempts: {reason}"[:500]
        rows.update(status=Delivery.Status.FAILED, last_error=reason, updated_at=now)
        status = Delivery.Status.FAILED
        logger.warning("notification delivery batch %s on %s failed: %s", ids, batch[0].channel, reason)
    broadcast(
        batch[0].user_id,
        "notification.delivery",
        {"ids": ids, "channel": batch[0].channel, "status": status, "error": "" if error is None else str(error)},
    )
    return status


def deliveries_sweep() -> int:
    """Beat: put batches claimed too long ago back in the queue (their worker died) and queue a
    send for every due batch (held by quiet hours, a long backoff, or a lost broker message).
    Returns how many sends were queued."""
    from apps.notifications import tasks

    now = timezone.now()
    stale = now - timedelta(seconds=_setting("NOTIFICATIONS_CLAIM_STALE_SECONDS", 300))
    Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_at__lt=stale).update(
        status=Delivery.Status.QUEUED, due_at=now, updated_at=now
    )
    leads: dict[tuple[Any, ...], int] = {}
    due = Delivery.objects.filter(status=Delivery.Status.QUEUED, due_at__lte=now).order_by("due_at", "pk")
    for pk, user_id, channel, event in due.values_list("pk", "user_id", "channel", "event")[:5000]:
        leads.setdefault((user_id, channel, event), pk)
    for pk in leads.values():
        tasks.delivery_send.delay(pk)
    return len(leads)
