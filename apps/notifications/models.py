"""Notifications: the in-app centre, each user's channel settings and alert rules, and the
delivery log.

- ``Notification``: one row per event for a user (the in-app centre keeps every one, unread
  until read). Created by ``services.notify``; ``dedupe_key`` makes a repeated event (a signal
  delivered twice) a no-op.
- ``NotificationSettings``: one row per user: e-mail on/off (to the account's address), the
  linked Telegram chat (and the one-time link code while linking), the outgoing webhook URL and
  its signing secret, the user's time zone, quiet hours and the daily summary hour.
- ``AlertRule``: which events go to which external channels, with an optional threshold
  (daily loss in the account's currency, drawdown in percent). Without a rule an event is
  in-app only.
- ``Delivery``: one notification on one external channel: queued -> sending -> sent, failed
  (with the last error) or suppressed (quiet hours in "suppress" mode, channel not set up).
  Deliveries of the same event sent together (a batched burst) share ``batch_id``.
"""

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class Event(models.TextChoices):
    ORDER_FILLED = "order_filled", "Order filled"
    ORDER_REJECTED = "order_rejected", "Order rejected or refused by risk"
    DEPLOYMENT_PAUSED = "deployment_paused", "Deployment paused"
    DEPLOYMENT_HALTED = "deployment_halted", "Deployment or account halted"
    DAILY_LOSS = "daily_loss", "Daily loss limit reached"
    DRAWDOWN = "drawdown", "Drawdown limit reached"
    DAILY_SUMMARY = "daily_summary", "Daily P&L summary"
    NEW_FOLLOWER = "new_follower", "New follower"
    COPY_FAILED = "copy_failed", "Copied trade failed"
    LISTING_APPROVED = "listing_approved", "Listing approved"
    LISTING_REJECTED = "listing_rejected", "Listing rejected"
    SECURITY = "security", "Security event"
    # Sent by the ML app (apps.ml.services.registry and .drift).
    MODEL_PROMOTED = "model_promoted", "Model promoted"
    DRIFT_DETECTED = "drift_detected", "Model drift detected"


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    TELEGRAM = "telegram", "Telegram"
    WEBHOOK = "webhook", "Webhook"


# Events whose rules take a threshold, and its unit.
THRESHOLD_EVENTS = {Event.DAILY_LOSS: "loss in the account currency", Event.DRAWDOWN: "drawdown in percent"}


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {value!r}; use a name such as Europe/Berlin.")


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=32, choices=Event.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "read_at", "-created_at"], name="notif_user_unread")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "dedupe_key"], condition=~Q(dedupe_key=""), name="notif_unique_dedupe_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class NotificationSettings(models.Model):
    class QuietMode(models.TextChoices):
        HOLD = "hold", "Hold until the quiet hours end"
        SUPPRESS = "suppress", "Drop (in-app only)"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    email_enabled = models.BooleanField(default=True, help_text="Send e-mail to the account's address.")
    telegram_chat_id = models.CharField(max_length=40, blank=True)
    telegram_username = models.CharField(max_length=80, blank=True)
    telegram_link_code = models.CharField(max_length=16, blank=True, db_index=True)
    telegram_link_expires_at = models.DateTimeField(null=True, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    # The HMAC key receivers verify with: the platform must know it to sign, so it is stored as
    # is; it is shown once when made and masked afterwards, never logged or serialised.
    webhook_secret = models.CharField(max_length=80, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    quiet_start = models.TimeField(null=True, blank=True, help_text="Local time quiet hours begin.")
    quiet_end = models.TimeField(null=True, blank=True, help_text="Local time quiet hours end.")
    quiet_mode = models.CharField(max_length=10, choices=QuietMode.choices, default=QuietMode.HOLD)
    daily_summary_hour = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Local hour (0-23) of the daily P&L summary; empty = none."
    )
    daily_summary_sent_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(daily_summary_hour__isnull=True) | Q(daily_summary_hour__lte=23),
                name="notif_summary_hour_0_23",
            )
        ]

    def __str__(self) -> str:
        return f"notification settings of user {self.user_id}"

    @property
    def telegram_linked(self) -> bool:
        return bool(self.telegram_chat_id)

    @property
    def webhook_secret_masked(self) -> str:
        return f"{self.webhook_secret[:4]}…{self.webhook_secret[-2:]}" if self.webhook_secret else ""

    def channel_ready(self, channel: str) -> bool:
        if channel == Channel.EMAIL:
            return self.email_enabled
        if channel == Channel.TELEGRAM:
            return bool(self.telegram_chat_id)
        if channel == Channel.WEBHOOK:
            return bool(self.webhook_url and self.webhook_secret)
        return False


class AlertRule(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=80, blank=True)
    events = models.JSONField(default=list, help_text='Event types this rule sends, e.g. ["order_filled"].')
    channels = models.JSONField(default=list, help_text="Channels: email, telegram, webhook.")
    threshold = models.DecimalField(
        max_digits=28,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="daily_loss: a loss of at least this much (account currency); drawdown: percent.",
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name or f"rule {self.pk}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not isinstance(self.events, list) or not self.events:
            errors["events"] = ["Pick at least one event."]
        elif unknown := sorted(set(map(str, self.events)) - set(Event.values)):
            errors["events"] = [f"Unknown events: {', '.join(unknown)}."]
        if not isinstance(self.channels, list) or not self.channels:
            errors["channels"] = ["Pick at least one channel."]
        elif unknown := sorted(set(map(str, self.channels)) - set(Channel.values)):
            errors["channels"] = [f"Unknown channels: {', '.join(unknown)}."]
        if self.threshold is not None and self.threshold <= 0:
            errors["threshold"] = ["A threshold is a positive number."]
        if errors:
            raise ValidationError(errors)


class Delivery(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    # Denormalised from the notification: the batching and the log read by (user, channel, event).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=32, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    due_at = models.DateTimeField(help_text="Not sent before this (batch window, quiet hours, backoff).")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    batch_id = models.UUIDField(null=True, blank=True, db_index=True)
    batch_size = models.PositiveIntegerField(default=1)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["user", "channel", "event", "status", "due_at"], name="delivery_batch"),
            models.Index(fields=["status", "due_at"], name="delivery_due"),
        ]
        constraints = [models.UniqueConstraint(fields=["notification", "channel"], name="delivery_once_per_channel")]

    def __str__(self) -> str:
        return f"{self.channel} delivery of notification {self.notification_id}: {self.status}"

    @staticmethod
    def new_batch_id() -> uuid.UUID:
        return uuid.uuid4()


class TelegramCursor(models.Model):
    """The last getUpdates update_id handled (one row, pk=1): the next poll asks for later ones."""

    last_update_id = models.BigIntegerField(default=0)
    polled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"telegram updates up to {self.last_update_id}"
