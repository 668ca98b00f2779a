"""``notify``: record an event for a user and plan its external deliveries.

The in-app centre keeps every event. External channels follow the user's alert rules (no rule =
in-app only) and are throttled per (user, channel, event type): at most one message per
``NOTIFICATIONS_BATCH_SECONDS`` (30 s). The first event of a quiet spell goes out at once; the
ones after it within the window wait for the window's end and go out together as one message
("5 orders filled: ..."). Quiet hours (the user's time zone) hold external deliveries until
they end, or drop them (``quiet_mode``); security events ignore quiet hours. In-app and the
live bell are never held.

Deliveries are sent by ``deliveries.delivery_send`` in a Celery task on the ``default`` queue.
A window's task is scheduled with a countdown of at most the window; longer holds (quiet hours,
backoff past the window) are picked up by the beat sweep, so no message waits in the broker
longer than the visibility timeout.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.common.broadcast import broadcast
from apps.common.bulk import bulk_insert
from apps.common.presence import users_online
from apps.notifications.models import AlertRule, Channel, Delivery, Event, Notification, NotificationSettings
from apps.notifications.selectors import notification_unread_count

logger = logging.getLogger(__name__)

# Events quiet hours never hold: the user must hear about them at once.
URGENT_EVENTS = frozenset({Event.SECURITY})


def batch_seconds() -> float:
    return float(getattr(settings, "NOTIFICATIONS_BATCH_SECONDS", 30))


def notification_payload(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "event": notification.event,
        "event_display": notification.get_event_display(),
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "created_at": notification.created_at,
        "read_at": notification.read_at,
    }


def _value(data: dict[str, Any]) -> Decimal | None:
    try:
        return Decimal(str(data["value"])) if data.get("value") is not None else None
    except (ArithmeticError, ValueError):
        return None


def rule_channels(*, user_id: int, event: str, data: dict[str, Any]) -> set[str]:
    """The channels the user's enabled rules send ``event`` to. A rule with a threshold matches
    an event that carries a ``value`` (a loss amount, a drawdown percent) at or past it."""
    value = _value(data)
    channels: set[str] = set()
    for rule in AlertRule.objects.filter(user_id=user_id, is_enabled=True).only("events", "channels", "threshold"):
        if event not in rule.events:
            continue
        if rule.threshold is not None and value is not None and value < rule.threshold:
            continue
        channels.update(c for c in rule.channels if c in Channel.values)
    return channels


def quiet_until(prefs: NotificationSettings, now: datetime) -> datetime | None:
    """The end of the user's quiet hours (UTC) when ``now`` is inside them, else None. The
    window may wrap midnight (22:00-07:00)."""
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or start == end:
        return None
    zone = ZoneInfo(prefs.timezone or "UTC")
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_date = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_date, end, tzinfo=zone).astimezone(ZoneInfo("UTC"))


def _plan_delivery(notification: Notification, channel: str, prefs: NotificationSettings, now: datetime) -> None:
    fields: dict[str, Any] = {
        "notification": notification,
        "user_id": notification.user_id,
        "event": notification.event,
        "channel": channel,
    }
    if not prefs.channel_ready(channel):
        Delivery.objects.create(
            **fields, status=Delivery.Status.SUPPRESSED, due_at=now, last_error=f"{channel} is not set up."
        )
        return
    hold = None if notification.event in URGENT_EVENTS else quiet_until(prefs, now)
    if hold is not None and prefs.quiet_mode == NotificationSettings.QuietMode.SUPPRESS:
        Delivery.objects.create(**fields, status=Delivery.Status.SUPPRESSED, due_at=now, last_error="Quiet hours.")
        return
    same = Delivery.objects.filter(user_id=notification.user_id, channel=channel, event=notification.event)
    pending = same.filter(status=Delivery.Status.QUEUED, due_at__gt=now).order_by("due_at").first()
    if pending is not None:
        # A batch is waiting for its window (or the quiet hours) to end: join it.
        Delivery.objects.create(**fields, due_at=max(pending.due_at, hold or pending.due_at))
        return
    window = timedelta(seconds=batch_seconds())
    last = (
        same.exclude(status=Delivery.Status.SUPPRESSED)
        .filter(due_at__gt=now - window)
        .order_by("-due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    due = max(now, last + window) if last is not None else now
    if hold is not None:
        due = max(due, hold)
    delivery = Delivery.objects.create(**fields, due_at=due)
    countdown = (due - now).total_seconds()
    if countdown <= window.total_seconds() + 1:
        from apps.notifications import tasks

        delivery_id = delivery.pk
        transaction.on_commit(lambda: tasks.delivery_send.apply_async((delivery_id,), countdown=max(0.0, countdown)))
    # else: the beat sweep (deliveries_sweep) sends it when it is due.


@transaction.atomic
def notify(
    *,
    user_id: int,
    event: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> Notification:
    """Record ``event`` for the user in the notification centre, push ``notification.new`` (with
    the unread count) after commit, and queue its external deliveries per the user's rules (see
    the module docstring). A ``dedupe_key`` seen before for this user returns the existing
    notification and does nothing else (a signal delivered twice). Runs in a savepoint: a
    caller may catch an error from here and carry on with its own transaction."""
    if event not in Event.values:
        raise ValueError(f"unknown notification event {event!r}")
    data = data or {}
    key = (dedupe_key or "")[:120]
    if key:
        existing = Notification.objects.filter(user_id=user_id, dedupe_key=key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                user_id=user_id, event=event, title=title[:200], body=body, data=data, dedupe_key=key
            )
    except IntegrityError:
        if not key:
            raise
        return Notification.objects.get(user_id=user_id, dedupe_key=key)
    # Only to users with a connection open (the count is a query; a fill fan-out notifies
    # thousands of followers): a page opened later reads the centre and the count on load.
    if user_id in users_online([user_id]):
        broadcast(
            user_id,
            "notification.new",
            {"notification": notification_payload(notification), "unread": notification_unread_count(user_id=user_id)},
        )
    channels = rule_channels(user_id=user_id, event=event, data=data)
    if channels:
        prefs = NotificationSettings.objects.filter(user_id=user_id).first() or NotificationSettings(user_id=user_id)
        now = timezone.now()
        for channel in sorted(channels):
            _plan_delivery(notification, channel, prefs, now)
    return notification


@dataclass(frozen=True)
class NotificationItem:
    """One notification of a ``notify_many`` batch (the arguments of ``notify``)."""

    user_id: int
    event: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str = ""


def notify_many(items: Sequence[NotificationItem]) -> int:
    """``notify`` for many notifications at once (a copy fan-out's thousands of fills): one read
    of the dedupe keys, one INSERT, one presence lookup and one read of the alert rules for the
    whole batch; the live event and the external deliveries then go, as ``notify`` sends them,
    to the few users with a connection open or a rule for the event. Call it after commit.
    Returns how many notifications were new."""
    items = [item for item in items if item.event in Event.values]
    if not items:
        return 0
    user_ids = sorted({item.user_id for item in items})
    keys = [item.dedupe_key[:120] for item in items if item.dedupe_key]
    seen = set(
        Notification.objects.filter(user_id__in=user_ids, dedupe_key__in=keys).values_list("user_id", "dedupe_key")
    )
    now = timezone.now()
    fresh = [
        Notification(
            user_id=item.user_id,
            event=item.event,
            title=item.title[:200],
            body=item.body,
            data=item.data,
            dedupe_key=item.dedupe_key[:120],
            created_at=now,
        )
        for item in items
        if not item.dedupe_key or (item.user_id, item.dedupe_key[:120]) not in seen
    ]
    if not fresh:
        return 0
    bulk_insert(Notification, fresh, ignore_conflicts=True)
    online = users_online(user_ids)
    ruled = set(
        AlertRule.objects.filter(user_id__in=user_ids, is_enabled=True).values_list("user_id", flat=True).distinct()
    )
    wanted = [n for n in fresh if n.user_id in online or n.user_id in ruled]
    if not wanted:
        return len(fresh)
    # The rows of the users who get more than the centre, with their ids (the INSERT gave none back).
    stored = {
        (n.user_id, n.dedupe_key): n
        for n in Notification.objects.filter(
            user_id__in={n.user_id for n in wanted}, dedupe_key__in=[n.dedupe_key for n in wanted if n.dedupe_key]
        )
    }
    with transaction.atomic():
        for note in wanted:
            row = stored.get((note.user_id, note.dedupe_key)) if note.dedupe_key else None
            if row is None:
                continue
            if note.user_id in online:
                broadcast(
                    note.user_id,
                    "notification.new",
                    {
                        "notification": notification_payload(row),
                        "unread": notification_unread_count(user_id=note.user_id),
                    },
                )
            if note.user_id in ruled:
                channels = rule_channels(user_id=note.user_id, event=row.event, data=row.data)
                if channels:
                    prefs = NotificationSettings.objects.filter(user_id=note.user_id).first() or NotificationSettings(
                        user_id=note.user_id
                    )
                    for channel in sorted(channels):
                        _plan_delivery(row, channel, prefs, now)
    return len(fresh)


def notify_threshold(
    *, user_id: int, event: str, value: Decimal, scope: str, title: str, body: str, data: dict[str, Any] | None = None
) -> Notification | None:
    """For threshold events (daily loss, drawdown): notify when ``value`` reached the lowest
    threshold of the user's enabled rules for ``event``, once per ``scope`` (e.g. a deployment)
    and UTC day. None when no rule's threshold is reached."""
    thresholds = [
        rule.threshold
        for rule in AlertRule.objects.filter(user_id=user_id, is_enabled=True, threshold__isnull=False)
        if event in rule.events and rule.threshold is not None
    ]
    reached = [t for t in thresholds if value >= t]
    if not reached:
        return None
    day = timezone.now().date().isoformat()
    return notify(
        user_id=user_id,
        event=event,
        title=title,
        body=body,
        data={**(data or {}), "value": str(value), "threshold": str(min(reached))},
        dedupe_key=f"{event}:{scope}:{day}",
    )


@transaction.atomic
def notification_mark_read(*, user: Any, notification_id: int) -> Notification:
    """Mark one of the user's notifications read (NotFound for anyone else's)."""
    from apps.notifications.selectors import notification_get_for_user

    notification = notification_get_for_user(user=user, notification_id=notification_id)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
        _announce_read(user.pk, [notification.pk])
    return notification


@transaction.atomic
def notification_mark_all_read(*, user: Any) -> int:
    """Mark every unread notification of the user read; returns how many."""
    unread = Notification.objects.filter(user_id=user.pk, read_at__isnull=True)
    ids = list(unread.values_list("pk", flat=True)[:10_000])
    count = unread.update(read_at=timezone.now())
    if count:
        _announce_read(user.pk, ids)
    return count


def _announce_read(user_id: int, ids: list[int]) -> None:
    broadcast(user_id, "notification.read", {"ids": ids, "unread": notification_unread_count(user_id=user_id)})


def local_time(prefs: NotificationSettings, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(prefs.timezone or "UTC"))


def users_with_threshold_rules(*, user_ids: Sequence[int], event: str) -> set[int]:
    """Those of ``user_ids`` with an enabled threshold rule for ``event`` (one query for a batch)."""
    rows = AlertRule.objects.filter(user_id__in=list(user_ids), is_enabled=True, threshold__isnull=False).values_list(
        "user_id", "events"
    )
    return {user_id for user_id, events in rows if event in events}


def has_threshold_rules(*, user_id: int, event: str) -> bool:
    """Whether the user has an enabled rule with a threshold for ``event`` (a cheap check before
    computing the figure it compares)."""
    return any(
        event in events
        for events in AlertRule.objects.filter(user_id=user_id, is_enabled=True, threshold__isnull=False).values_list(
            "events", flat=True
        )
    )
