"""Reads of the notifications app; owner scoping lives here (another user's notification,
rule or delivery is "not found")."""

from typing import Any

from django.db.models import Case, QuerySet, Value, When

from apps.common.errors import NotFound
from apps.notifications.models import AlertRule, Delivery, Notification, NotificationSettings


def notification_list_for_user(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    """The user's notifications, unread first, newest first within each."""
    qs = Notification.objects.filter(user_id=user.pk)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    unread_first = Case(When(read_at__isnull=True, then=Value(0)), default=Value(1))
    return qs.order_by(unread_first, "-created_at", "-pk")


def notification_get_for_user(*, user: Any, notification_id: int) -> Notification:
    found = Notification.objects.filter(user_id=user.pk, pk=notification_id).first()
    if found is None:
        raise NotFound("No such notification.")
    return found


def notification_unread_count(*, user_id: int) -> int:
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def alert_rule_list_for_user(*, user: Any) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(user_id=user.pk).order_by("pk")


def alert_rule_get_for_user(*, user: Any, rule_id: int) -> AlertRule:
    found = AlertRule.objects.filter(user_id=user.pk, pk=rule_id).first()
    if found is None:
        raise NotFound("No such alert rule.")
    return found


def delivery_list_for_user(*, user: Any, status: str = "", channel: str = "") -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(user_id=user.pk).select_related("notification")
    if status:
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channel=channel)
    return qs.order_by("-created_at", "-pk")


def notification_settings_for_user(*, user: Any) -> NotificationSettings:
    """The user's settings row, or an unsaved one with the defaults (writes make it)."""
    found = NotificationSettings.objects.filter(user_id=user.pk).first()
    return found if found is not None else NotificationSettings(user_id=user.pk)
