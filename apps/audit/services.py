from typing import Any

from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common.broadcast import broadcast
from apps.common.bulk import bulk_insert

# Actions shown to the user as security events on the dashboard (and pushed live).
SECURITY_ACTIONS = frozenset(
    {
        "user.signed_up",
        "user.login",
        "user.login_2fa",
        "user.login_failed",
        "user.logout",
        "user.password_changed",
        "user.password_reset",
        "user.2fa_enabled",
        "user.2fa_disabled",
        "user.2fa_failed",
        "user.backup_code_used",
        "user.backup_codes_regenerated",
        "user.locked",
        "user.unlocked",
        "user.2fa_reset_by_staff",
        "token.created",
        "token.revoked",
    }
)


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    ip = request.META.get("REMOTE_ADDR")
    return ip or None


def _target_id(target: models.Model | None) -> str:
    # A model with a public id is named by it: an API token's pk is its 128-character digest,
    # which neither fits target_id nor belongs in the trail.
    if target is None:
        return ""
    return str(getattr(target, "public_id", None) or target.pk)


def audit_record(
    *,
    action: str,
    actor: Any = None,
    user: Any = None,
    target: models.Model | None = None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the audit trail.

    `user` defaults to `actor`. Security actions are also pushed (after commit) to the user's
    open dashboards.
    """
    event = audit_event(action=action, actor=actor, user=user, target=target, request=request, details=details)
    event.save()
    subject = event.user
    if subject is not None and action in SECURITY_ACTIONS:
        broadcast(subject.pk, "security_event", security_event_payload(event))
    return event


def audit_record_many(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append several events built with `audit_event` in one statement (a hot path writing two
    rows at once). Security actions go through `audit_record`, which also pushes them."""
    if any(event.action in SECURITY_ACTIONS for event in events):
        raise ValueError("Security events are recorded one by one with audit_record.")
    now = timezone.now()
    for event in events:
        event.created_at = event.created_at or now
    bulk_insert(AuditEvent, events)
    return events


def audit_event(
    *,
    action: str,
    actor: Any = None,
    user: Any = None,
    target: models.Model | None = None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
    user_id: int | None = None,
) -> AuditEvent:
    """The unsaved AuditEvent `audit_record` writes (arguments as there; ``user_id`` instead of
    ``user`` spares a batch reading every user row)."""
    actor_obj = actor if getattr(actor, "is_authenticated", False) else None
    subject = user if user is not None else actor_obj
    return AuditEvent(
        action=action,
        actor=actor_obj,
        actor_email=getattr(actor_obj, "email", "") or "",
        user_id=user_id if subject is None and user_id is not None else getattr(subject, "pk", None),
        target_type=target._meta.label_lower if target is not None else "",
        target_id=_target_id(target),
        target_repr=str(target)[:200] if target is not None else "",
        ip=client_ip(request),
        user_agent=(request.headers.get("User-Agent", "")[:300] if request is not None else ""),
        details=details or {},
    )


def security_event_payload(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "action": event.action,
        "created_at": event.created_at,
        "ip": event.ip,
        "actor_email": event.actor_email,
        "details": event.details,
    }
