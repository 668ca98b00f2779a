"""Session state of the second factor: verified or not, and how long ago.

django-otp marks a session verified by storing the device it was verified with
(`django_otp.login`). We also store when, so sensitive actions can ask for a *fresh* factor.
"""

import time

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.models import Device

VERIFIED_AT_SESSION_KEY = "otp_verified_at"


def session_mark_verified(*, request: HttpRequest, device: Device) -> None:
    otp_login(request, device)
    request.session[VERIFIED_AT_SESSION_KEY] = time.time()


def session_is_verified(session: SessionBase) -> bool:
    return bool(session.get(DEVICE_ID_SESSION_KEY))


def second_factor_is_fresh(request: HttpRequest) -> bool:
    """Was a second factor verified in this session within SECOND_FACTOR_FRESH_SECONDS?"""
    session = getattr(request, "session", None)
    if session is None or not session_is_verified(session):
        return False
    verified_at = session.get(VERIFIED_AT_SESSION_KEY)
    if verified_at is None:
        return False
    return time.time() - float(verified_at) <= settings.SECOND_FACTOR_FRESH_SECONDS
