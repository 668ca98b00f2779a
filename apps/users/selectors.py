from django.db.models import QuerySet
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.users.models import ApiToken, User

BACKUP_DEVICE_NAME = "backup"


def user_has_second_factor(*, user: User) -> bool:
    """True when the user has a confirmed authenticator app (TOTP)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_device_get(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def backup_device_get(*, user: User) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, name=BACKUP_DEVICE_NAME, confirmed=True).first()


def backup_codes_remaining(*, user: User) -> int:
    device = backup_device_get(user=user)
    return device.token_set.count() if device is not None else 0


def api_token_list_for_user(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created")


def api_token_get_for_user(*, user: User, public_id: str) -> ApiToken | None:
    try:
        return ApiToken.objects.filter(user=user, public_id=public_id).first()
    except (ValueError, TypeError):
        return None
