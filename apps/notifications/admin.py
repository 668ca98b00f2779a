"""Admin of notifications: the delivery log and the notifications (facts, read-only; search by
id and e-mail, filter by status and channel), and users' settings and rules (read-only; secrets
and link codes never shown). A queued or failed delivery can be sent again through an action
that calls the delivery service's queue."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.notifications.models import AlertRule, Delivery, Notification, NotificationSettings


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly):
    list_display = (
        "id",
        "user",
        "channel",
        "event",
        "status",
        "attempts",
        "batch_size",
        "due_at",
        "sent_at",
        "last_error",
    )
    list_filter = ("status", "channel", "event")
    search_fields = ("=id", "user__email", "=notification__id")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    actions = ["send_again"]
    fields = (
        "notification",
        "user",
        "channel",
        "event",
        "status",
        "attempts",
        "last_error",
        "due_at",
        "claimed_at",
        "sent_at",
        "batch_id",
        "batch_size",
        "created_at",
    )
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only fields; the change permission only lets the action run.
        return obj is None and bool(request.user.is_staff)

    @admin.action(description="Send again (failed or queued)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        from apps.notifications import tasks

        rows = queryset.filter(status__in=[Delivery.Status.FAILED, Delivery.Status.QUEUED])
        ids = list(rows.values_list("pk", flat=True))
        rows.update(status=Delivery.Status.QUEUED, attempts=0, due_at=timezone.now())
        for pk in ids:
            tasks.delivery_send.delay(pk)
        messages.success(request, f"Queued {len(ids)} deliveries.")


@admin.register(Notification)
class NotificationAdmin(_ReadOnly):
    list_display = ("id", "user", "event", "title", "created_at", "read_at")
    list_filter = ("event",)
    search_fields = ("=id", "user__email", "title")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = ("user", "event", "title", "body", "data", "dedupe_key", "created_at", "read_at")
    readonly_fields = fields


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(_ReadOnly):
    list_display = ("user", "email_enabled", "telegram_linked", "webhook_url", "timezone", "daily_summary_hour")
    search_fields = ("user__email",)
    list_select_related = ("user",)
    fields = (
        "user",
        "email_enabled",
        "telegram_chat_id",
        "telegram_username",
        "webhook_url",
        "timezone",
        "quiet_start",
        "quiet_end",
        "quiet_mode",
        "daily_summary_hour",
        "daily_summary_sent_on",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(boolean=True)
    def telegram_linked(self, obj: NotificationSettings) -> bool:
        return obj.telegram_linked


@admin.register(AlertRule)
class AlertRuleAdmin(_ReadOnly):
    list_display = ("id", "user", "name", "events", "channels", "threshold", "is_enabled")
    list_filter = ("is_enabled",)
    search_fields = ("=id", "user__email")
    list_select_related = ("user",)
    fields = ("user", "name", "events", "channels", "threshold", "is_enabled", "created_at", "updated_at")
    readonly_fields = fields
