"""Authentication events from Django and allauth, written to the audit trail.

These are signals because the events are raised inside third-party code; each receiver only
calls the audit service.
"""

from typing import Any

from allauth.account import signals as allauth_signals
from django.contrib.auth import signals as auth_signals
from django.http import HttpRequest

from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.users.models import User
from apps.users.ws_auth import session_fingerprint


def _on_login(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_record(action="user.login", actor=user, request=request)


def _on_logout(sender: Any, request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action="user.logout", actor=user, request=request)
        # The session is about to be flushed: close the websockets that were opened with it.
        key = getattr(getattr(request, "session", None), "session_key", None)
        broadcast(user.pk, "session.ended", {"reason": "logged_out", "session": session_fingerprint(key)})


def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    email = str(credentials.get("email") or credentials.get("username") or "").lower()
    user = User.objects.filter(email=email).first() if email else None
    # Recorded against the account (if it exists) so its owner sees attempts on the dashboard;
    # the address typed is not echoed anywhere a stranger could read it.
    if user is not None:
        audit_record(action="user.login_failed", user=user, request=request)


def _on_signed_up(request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_record(action="user.signed_up", actor=user, request=request)


def _on_password_changed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_record(action="user.password_changed", actor=user, request=request)


def _on_password_reset(request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_record(action="user.password_reset", actor=user, request=request)


def connect() -> None:
    auth_signals.user_logged_in.connect(_on_login, dispatch_uid="users-login")
    auth_signals.user_logged_out.connect(_on_logout, dispatch_uid="users-logout")
    auth_signals.user_login_failed.connect(_on_login_failed, dispatch_uid="users-login-failed")
    allauth_signals.user_signed_up.connect(_on_signed_up, dispatch_uid="users-signed-up")
    allauth_signals.password_changed.connect(_on_password_changed, dispatch_uid="users-pw-changed")
    allauth_signals.password_reset.connect(_on_password_reset, dispatch_uid="users-pw-reset")
