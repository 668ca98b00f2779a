"""Each user's channel settings, webhook secret and alert rules."""

import secrets
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from apps.audit.services import audit_record
from apps.common.errors import ValidationFailed
from apps.notifications.channels import PermanentDeliveryError, TemporaryDeliveryError, webhook
from apps.notifications.models import AlertRule, NotificationSettings

SETTINGS_FIELDS = frozenset(
    {"email_enabled", "webhook_url", "timezone", "quiet_start", "quiet_end", "quiet_mode", "daily_summary_hour"}
)
RULE_FIELDS = frozenset({"name", "events", "channels", "threshold", "is_enabled"})


def _invalid(exc: DjangoValidationError) -> ValidationFailed:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    message = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
    return ValidationFailed(message, code="invalid", extra={"fields": fields})


@transaction.atomic
def notification_settings_get_or_create(*, user: Any) -> NotificationSettings:
    prefs, _ = NotificationSettings.objects.get_or_create(user_id=user.pk)
    return prefs


@transaction.atomic
def notification_settings_update(*, user: Any, request: Any = None, **changes: Any) -> NotificationSettings:
    """Change the user's channel settings (only SETTINGS_FIELDS). A webhook URL must be http(s)
    and, unless NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE, point at a public address."""
    unknown = sorted(set(changes) - SETTINGS_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown settings: {', '.join(unknown)}.", extra={"fields": {k: ["Unknown field."] for k in unknown}}
        )
    prefs = NotificationSettings.objects.select_for_update().filter(user_id=user.pk).first()
    if prefs is None:
        prefs = NotificationSettings.objects.create(user_id=user.pk)
    for name, value in changes.items():
        setattr(prefs, name, value)
    if (prefs.quiet_start is None) != (prefs.quiet_end is None):
        raise ValidationFailed(
            "Quiet hours need both a start and an end.",
            extra={"fields": {"quiet_end" if prefs.quiet_end is None else "quiet_start": ["Set both, or neither."]}},
        )
    if prefs.webhook_url:
        try:
            webhook.check_url(prefs.webhook_url)
        except PermanentDeliveryError as exc:
            raise ValidationFailed(str(exc), extra={"fields": {"webhook_url": [str(exc)]}}) from None
        except TemporaryDeliveryError:
            pass  # DNS is down right now: checked again at every send
        if not prefs.webhook_secret:
            prefs.webhook_secret = _new_secret()
    try:
        prefs.full_clean()
    except DjangoValidationError as exc:
        raise _invalid(exc) from None
    prefs.save()
    audit_record(
        action="notifications.settings_changed",
        actor=user,
        target=prefs,
        request=request,
        details={"fields": sorted(changes)},
    )
    return prefs


def _new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


@transaction.atomic
def webhook_secret_rotate(*, user: Any, request: Any = None) -> str:
    """A new signing secret for the user's webhook; returned once (shown masked afterwards)."""
    prefs = notification_settings_get_or_create(user=user)
    prefs = NotificationSettings.objects.select_for_update().get(pk=prefs.pk)
    prefs.webhook_secret = _new_secret()
    prefs.save(update_fields=["webhook_secret", "updated_at"])
    audit_record(action="notifications.webhook_secret_rotated", actor=user, target=prefs, request=request)
    return prefs.webhook_secret


def _rule_clean_save(rule: AlertRule) -> AlertRule:
    if isinstance(rule.events, list):
        rule.events = sorted(set(map(str, rule.events)))
    if isinstance(rule.channels, list):
        rule.channels = sorted(set(map(str, rule.channels)))
    try:
        rule.full_clean()
    except DjangoValidationError as exc:
        raise _invalid(exc) from None
    rule.save()
    return rule


@transaction.atomic
def alert_rule_create(*, user: Any, request: Any = None, **fields: Any) -> AlertRule:
    unknown = sorted(set(fields) - RULE_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown fields: {', '.join(unknown)}.")
    rule = _rule_clean_save(AlertRule(user_id=user.pk, **fields))
    audit_record(action="notifications.rule_created", actor=user, target=rule, request=request)
    return rule


@transaction.atomic
def alert_rule_update(*, rule: AlertRule, user: Any, request: Any = None, **fields: Any) -> AlertRule:
    unknown = sorted(set(fields) - RULE_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown fields: {', '.join(unknown)}.")
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk, user_id=user.pk)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule = _rule_clean_save(rule)
    audit_record(action="notifications.rule_changed", actor=user, target=rule, request=request)
    return rule


@transaction.atomic
def alert_rule_delete(*, rule: AlertRule, user: Any, request: Any = None) -> None:
    audit_record(action="notifications.rule_deleted", actor=user, target=rule, request=request)
    AlertRule.objects.filter(pk=rule.pk, user_id=user.pk).delete()
