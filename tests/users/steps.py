"""Steps the user tests share: signing in through the real allauth form, and marking a test
client's session as verified with a second factor (what /2fa/verify/ does) when the test is
about something else."""

import time
from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from apps.users.second_factor import VERIFIED_AT_SESSION_KEY

LOGIN_URL = "/accounts/login/"
VERIFY_URL = "/2fa/verify/"
FRESH_SECONDS = 15 * 60


def password_login(client: Client, email: str, password: str, **extra: Any) -> Any:
    """Post the allauth login form, as a browser does."""
    return client.post(LOGIN_URL, {"login": email, "password": password, **extra})


def session_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def session_mark_verified(client: Client, device: Device, *, seconds_ago: float = 0) -> None:
    """Store in the client's session what a successful second step stores."""
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_SESSION_KEY] = time.time() - seconds_ago
    session.save()


def verified_client(user: Any, device: Device, *, client: Client | None = None) -> Client:
    """A client signed in as `user` whose session passed the second step just now."""
    client = client or Client()
    client.force_login(user)
    session_mark_verified(client, device)
    return client
