"""Writes about users: second factor, API tokens, locking. Every change is audited."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, NotFound, ReauthenticationRequired, ValidationFailed
from apps.users.models import ApiToken, User
from apps.users.second_factor import VERIFIED_AT_SESSION_KEY, second_factor_is_fresh, session_mark_verified
from apps.users.selectors import BACKUP_DEVICE_NAME, backup_device_get, totp_device_get, user_has_second_factor


class SecondFactorError(ValidationFailed):
    default_code = "invalid_code"


def _clean_code(token: str) -> str:
    return "".join((token or "").split()).lower()


# --- enrolment -------------------------------------------------------------------------------


@transaction.atomic
def two_factor_setup_begin(*, user: User) -> TOTPDevice:
    """Create (or replace) the user's pending authenticator device; it is not used for login
    until confirmed with a code from the app."""
    if user_has_second_factor(user=user):
        raise Conflict("Two-factor authentication is already on.", code="already_enabled")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def two_factor_pending_device(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()


def _backup_codes_create(*, user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(settings.BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@transaction.atomic
def two_factor_setup_confirm(*, request: HttpRequest, user: User, token: str) -> list[str]:
    """Confirm the pending device with a code from the app. Turns 2FA on, marks this session
    verified, and returns the backup codes (shown once)."""
    device = two_factor_pending_device(user=user)
    if device is None:
        raise ValidationFailed("Start the set-up again: no authenticator is waiting to be confirmed.")
    if not device.verify_token(_clean_code(token)):
        raise SecondFactorError("That code is not right. Check the clock on your phone and try again.")
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _backup_codes_create(user=user)
    session_mark_verified(request=request, device=device)
    audit_record(action="user.2fa_enabled", actor=user, request=request)
    return codes


@transaction.atomic
def backup_codes_regenerate(*, request: HttpRequest, user: User) -> list[str]:
    if not second_factor_is_fresh(request, user):
        raise ReauthenticationRequired("Confirm with a current code first.")
    codes = _backup_codes_create(user=user)
    audit_record(action="user.backup_codes_regenerated", actor=user, request=request)
    return codes


# --- the second step of login ------------------------------------------------------------------


def _throttle_message(device: TOTPDevice | StaticDevice) -> str | None:
    allowed, info = device.verify_is_allowed()
    if allowed:
        return None
    locked_until = (info or {}).get("locked_until")
    if locked_until is not None:
        wait = max(1, int((locked_until - timezone.now()).total_seconds()))
        return f"Too many wrong codes. Wait {wait} s before trying again."
    return "Too many wrong codes. Wait a moment before trying again."


def two_factor_verify(*, request: HttpRequest, user: User, token: str) -> str:
    """Check a code from the authenticator app or a backup code and mark the session verified.

    Returns "totp" or "backup". Wrong codes slow down exponentially (django-otp's throttling);
    a TOTP code that was already used is refused (django-otp keeps the last used time step).
    """
    code = _clean_code(token)
    totp = totp_device_get(user=user)
    if totp is None:
        raise ValidationFailed("Two-factor authentication is not on for this account.")
    throttled = _throttle_message(totp)
    if throttled:
        raise SecondFactorError(throttled, code="throttled")
    with transaction.atomic():
        if code.isdigit() and totp.verify_token(code):
            session_mark_verified(request=request, device=totp)
            audit_record(action="user.login_2fa", actor=user, request=request)
            return "totp"
        backup = backup_device_get(user=user)
        if backup is not None and not code.isdigit() and backup.verify_token(code):
            session_mark_verified(request=request, device=backup)
            left = backup.token_set.count()
            audit_record(action="user.backup_code_used", actor=user, request=request, details={"codes_left": left})
            return "backup"
    if not code.isdigit():
        # A wrong backup code counts against the authenticator's throttle too.
        totp.throttle_increment()
    audit_record(action="user.2fa_failed", actor=user, request=request)
    raise SecondFactorError("That code is not right, or it was already used.")


def two_factor_disable(*, request: HttpRequest, user: User, token: str) -> None:
    """Turn 2FA off. Needs a current code (authenticator or backup) even in a verified session.

    The code check is outside the transaction so a wrong code's throttling and audit stay.
    """
    two_factor_verify(request=request, user=user, token=token)
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        audit_record(action="user.2fa_disabled", actor=user, request=request)
    request.session.pop(DEVICE_ID_SESSION_KEY, None)
    request.session.pop(VERIFIED_AT_SESSION_KEY, None)


# --- API tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    plaintext: str


@transaction.atomic
def api_token_create(*, request: HttpRequest, user: User, name: str, ttl_days: int | None = None) -> CreatedToken:
    """Create a personal API token. Needs a second factor verified in this session within
    SECOND_FACTOR_FRESH_SECONDS; the plaintext is returned once and never stored."""
    if not second_factor_is_fresh(request, user):
        raise ReauthenticationRequired(
            "Creating an API token needs two-factor authentication verified in the last "
            f"{settings.SECOND_FACTOR_FRESH_SECONDS // 60} minutes. "
            + (
                "Confirm with a current code and try again."
                if user_has_second_factor(user=user)
                else "Turn on two-factor authentication first."
            )
        )
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the token a name.", extra={"fields": {"name": ["This field is required."]}})
    if len(name) > 80:
        raise ValidationFailed("Names are at most 80 characters.", extra={"fields": {"name": ["Too long."]}})
    days = 90 if ttl_days is None else ttl_days
    if not 1 <= days <= settings.API_TOKEN_MAX_TTL_DAYS:
        raise ValidationFailed(
            f"Expiry must be between 1 and {settings.API_TOKEN_MAX_TTL_DAYS} days.",
            extra={"fields": {"ttl_days": ["Out of range."]}},
        )
    token, plaintext = ApiToken.objects.create(user=user, expiry=timedelta(days=days), name=name)
    audit_record(
        action="token.created",
        actor=user,
        target=token,
        request=request,
        details={"name": name, "expires_at": token.expiry.isoformat() if token.expiry else None},
    )
    return CreatedToken(token=token, plaintext=plaintext)


@transaction.atomic
def api_token_revoke(*, request: HttpRequest | None, user: User, public_id: str) -> None:
    token = ApiToken.objects.filter(user=user, public_id=public_id).first()
    if token is None:
        raise NotFound("No such token.")
    details = {"name": token.name, "token_key": token.token_key}
    token.delete()
    audit_record(action="token.revoked", actor=user, request=request, details=details)
    # A connection opened with this token must not outlive it.
    broadcast(user.pk, "session.ended", {"reason": "token_revoked", "token": str(public_id)})


# --- operators ---------------------------------------------------------------------------------


@transaction.atomic
def user_lock(*, actor: User, user: User, reason: str, request: HttpRequest | None = None) -> None:
    """Lock an account: no login, no session, no token works until unlocked. Open websockets
    are told to close."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_locked:
        return
    user.locked_at = timezone.now()
    user.locked_reason = reason[:200]
    user.is_active = False
    user.full_clean()
    user.save(update_fields=["locked_at", "locked_reason", "is_active"])
    audit_record(action="user.locked", actor=actor, user=user, target=user, request=request, details={"reason": reason})
    broadcast(user.pk, "session.ended", {"reason": "locked"})


@transaction.atomic
def user_unlock(*, actor: User, user: User, request: HttpRequest | None = None) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_locked:
        return
    user.locked_at = None
    user.locked_reason = ""
    user.is_active = True
    user.save(update_fields=["locked_at", "locked_reason", "is_active"])
    audit_record(action="user.unlocked", actor=actor, user=user, target=user, request=request)


@transaction.atomic
def user_reset_two_factor(*, actor: User, user: User, request: HttpRequest | None = None) -> None:
    """Remove a user's authenticator and backup codes (they lost their phone). They sign in
    with the password alone and should enrol again; staff must, before the admin opens."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    audit_record(action="user.2fa_reset_by_staff", actor=actor, user=user, target=user, request=request)
