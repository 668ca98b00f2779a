"""Session state of the second factor: verified or not, and how long ago.

django-otp marks a session verified by storing the device it was verified with
(`django_otp.login`). We also store when, so sensitive actions can ask for a *fresh* factor.
"""

import time
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.models import Device

VERIFIED_AT_SESSION_KEY = "otp_verified_at"


def session_mark_verified(*, request: HttpRequest, device: Device) -> None:
    otp_login(request, device)
    request.session[VERIFIED_AT_SESSION_KEY] = time.time()


def session_is_verified(session: SessionBase, user: Any) -> bool:
    """Is `session` signed in as `user` and verified with a device that still exists and is
    theirs? (What django-otp's middleware checks for HTTP; the websocket needs it too, so a
    session verified with a device since removed does not count.)"""
    if str(session.get(SESSION_KEY)) != str(getattr(user, "pk", None)):
        return False
    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk and device.confirmed


def second_factor_is_fresh(request: HttpRequest, user: Any) -> bool:
    """Was a second factor of `user` verified in this request's session within
    SECOND_FACTOR_FRESH_SECONDS? A session of somebody else (say, beside another user's token)
    never counts."""
    session = getattr(request, "session", None)
    if session is None or not session_is_verified(session, user):
        return False
    verified_at = session.get(VERIFIED_AT_SESSION_KEY)
    if verified_at is None:
        return False
    return time.time() - float(verified_at) <= settings.SECOND_FACTOR_FRESH_SECONDS
