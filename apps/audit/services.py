import json
import logging
from pathlib import Path
from typing import Any

from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from apps.audit import chain
from apps.audit.models import AuditEvent
from apps.common.broadcast import broadcast

logger = logging.getLogger(__name__)

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
        if action in NOTIFIED_SECURITY_ACTIONS:
            _notify_security(event, subject.pk)
    return event


# Security actions that also reach the user as a "security" notification (in-app, and their
# channels by their alert rules; never held by quiet hours). Failed logins and logouts are not:
# an attacker guessing passwords must not flood the victim's phone.
NOTIFIED_SECURITY_ACTIONS = {
    "user.login": "New sign-in to your account",
    "user.password_changed": "Your password was changed",
    "user.password_reset": "Your password was reset",
    "user.2fa_enabled": "Two-factor authentication turned on",
    "user.2fa_disabled": "Two-factor authentication turned off",
    "user.backup_code_used": "A backup code was used to sign in",
    "user.backup_codes_regenerated": "New backup codes were made",
    "user.locked": "Your account was locked",
    "user.2fa_reset_by_staff": "An operator reset your two-factor authentication",
    "token.created": "A new API token was created",
}


def _notify_security(event: AuditEvent, user_id: int) -> None:
    # notifications sits beside audit (DESIGN.md layers); imported here, not at module load.
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    where = ", ".join(x for x in (f"from {event.ip}" if event.ip else "", event.user_agent[:120]) if x)
    try:
        notify(
            user_id=user_id,
            event=Event.SECURITY,
            title=NOTIFIED_SECURITY_ACTIONS[event.action],
            body=f"{event.created_at:%Y-%m-%d %H:%M} UTC{' ' + where if where else ''}. "
            "If this was not you, change your password and review your API tokens.",
            data={"action": event.action, "ip": event.ip, "audit_id": event.pk},
            dedupe_key=f"audit:{event.pk}",
        )
    except Exception:
        # The audit row is what matters; a notification failing must not undo it (notify runs
        # in a savepoint).
        logger.exception("security notification for audit event %s failed", event.pk)


def audit_record_many(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append several events built with `audit_event`, in list order, sealed into their hash
    chains (apps.audit.chain: a lock statement, a read of the chains' heads, an id allocation
    and one INSERT, whatever the count). Security actions go through `audit_record`, which also
    pushes them."""
    if any(event.action in SECURITY_ACTIONS for event in events):
        raise ValueError("Security events are recorded one by one with audit_record.")
    return chain.append(events)


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


def audit_verify(*, using: str = "default", exported: dict[str, Any] | None = None) -> chain.Verdict:
    """Walk every hash chain (``manage.py audit_verify``); ``exported``: an earlier heads document
    whose heads must still be there unchanged."""
    heads = chain.heads_from_document(exported) if exported else []
    return chain.verify(using=using, exported_heads=heads)


def audit_heads_write(path: Path, *, using: str = "default") -> Path:
    """Write the chains' latest heads as JSON to ``path`` (a file, or a folder: then a dated file
    in it), atomically (a temporary file renamed into place). Returns the file written."""
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"audit-heads-{timezone.now():%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = chain.heads_document(chain.heads_latest(using=using))
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=1, sort_keys=True))
    partial.replace(path)
    return path
