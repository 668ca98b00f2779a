"""Turning the second factor on (/2fa/setup/) and off (/2fa/disable/), and backup codes."""

import base64
import re

from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.users.selectors import user_has_second_factor
from tests.conftest import totp_now
from tests.users.steps import session_mark_verified, verified_client

SETUP_URL = "/2fa/setup/"
DISABLE_URL = "/2fa/disable/"


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_two_factor_setup_get_shows_qr_and_key(client, alice):
    # given
    client.force_login(alice)

    # when
    response = client.get(SETUP_URL)

    # then
    assert response.status_code == 200
    assert b'src="data:image/svg+xml;base64,' in response.content
    device = TOTPDevice.objects.get(user=alice)
    assert not device.confirmed
    match = re.search(rb'<code id="totp-secret">([A-Z2-7]+)</code>', response.content)
    assert match
    secret = match.group(1).decode()

    assert base64.b32decode(secret + "=" * (-len(secret) % 8)) == device.bin_key
    assert not user_has_second_factor(user=alice)


def test_two_factor_setup_reload_keeps_the_pending_key(client, alice):
    client.force_login(alice)
    first = client.get(SETUP_URL)

    second = client.get(SETUP_URL)

    assert first.context["secret"] == second.context["secret"]
    assert TOTPDevice.objects.filter(user=alice).count() == 1


def test_two_factor_setup_post_with_code_confirms_and_shows_ten_backup_codes(client, alice):
    # given
    client.force_login(alice)
    client.get(SETUP_URL)
    pending = TOTPDevice.objects.get(user=alice, confirmed=False)

    # when
    response = client.post(SETUP_URL, {"code": totp_now(pending)})

    # then
    assert response.status_code == 200
    codes = response.context["codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(code.encode() in response.content for code in codes)
    assert user_has_second_factor(user=alice)
    assert StaticToken.objects.filter(device__user=alice).count() == 10
    # the session that enrolled is verified: pages open without the second step
    assert client.get("/").status_code == 200


def test_two_factor_setup_wrong_code_leaves_it_off(client, alice):
    client.force_login(alice)
    client.get(SETUP_URL)
    pending = TOTPDevice.objects.get(user=alice, confirmed=False)

    response = client.post(SETUP_URL, {"code": _wrong(totp_now(pending))})

    assert response.status_code == 200
    assert response.context["form"].errors["code"]
    assert not user_has_second_factor(user=alice)
    assert not StaticDevice.objects.filter(user=alice).exists()


def test_two_factor_setup_when_already_on_redirects_and_keeps_device(alice, enable_2fa):
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    response = client.get(SETUP_URL)

    assert response.status_code == 302
    assert response["Location"] == "/2fa/"
    assert list(TOTPDevice.objects.filter(user=alice)) == [device]


def test_two_factor_setup_needs_login(client, db):
    response = client.get(SETUP_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_two_factor_disable_with_current_code_turns_it_off(alice, enable_2fa):
    # given
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    # when
    response = client.post(DISABLE_URL, {"code": totp_now(device)})

    # then
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert not StaticDevice.objects.filter(user=alice).exists()
    assert client.get("/").status_code == 200


def test_two_factor_disable_with_wrong_code_leaves_it_on(alice, enable_2fa):
    # given
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    # when
    response = client.post(DISABLE_URL, {"code": _wrong(totp_now(device))}, follow=True)

    # then
    assert response.status_code == 200
    assert b"That code is not right" in response.content
    assert user_has_second_factor(user=alice)
    assert StaticToken.objects.filter(device__user=alice).count() == 10


def test_two_factor_disable_without_code_leaves_it_on(alice, enable_2fa):
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    client.post(DISABLE_URL, {})

    assert user_has_second_factor(user=alice)


def test_two_factor_disable_by_get_is_refused(alice, enable_2fa):
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    response = client.get(DISABLE_URL)

    assert response.status_code == 405
    assert user_has_second_factor(user=alice)


def test_backup_codes_regenerate_needs_fresh_factor(alice, enable_2fa):
    # given: a session verified 20 minutes ago
    device = enable_2fa(alice)
    client = Client()
    client.force_login(alice)
    session_mark_verified(client, device, seconds_ago=20 * 60)
    before = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))

    # when
    stale = client.post("/2fa/backup-codes/")

    # then
    assert stale.status_code == 302
    assert set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True)) == before

    session_mark_verified(client, device)
    fresh = client.post("/2fa/backup-codes/")
    assert fresh.status_code == 200
    after = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))
    assert len(after) == 10
    assert after.isdisjoint(before)
