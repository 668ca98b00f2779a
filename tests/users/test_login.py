"""Login through allauth, with and without the second step."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import totp_now
from tests.users.steps import VERIFY_URL, password_login, session_user_id

# --- password only -----------------------------------------------------------------------------


def test_login_without_2fa_reaches_dashboard(client, alice, password):
    # when
    response = password_login(client, alice.email, password)

    # then
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert session_user_id(client) == str(alice.pk)
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert b"Dashboard" in dashboard.content


def test_login_email_is_case_insensitive(client, alice, password):
    response = password_login(client, "Alice@Example.COM", password)

    assert response.status_code == 302
    assert session_user_id(client) == str(alice.pk)


def test_login_wrong_password_shows_form_error_and_no_session(client, alice):
    # when
    response = password_login(client, alice.email, "not-the-password")

    # then
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert b"not correct" in response.content
    assert session_user_id(client) is None
    assert client.get("/").status_code == 302


def test_login_unknown_email_answers_like_wrong_password(db, alice):
    wrong = password_login(Client(), alice.email, "not-the-password")
    unknown = password_login(Client(), "nobody@example.com", "not-the-password")

    assert wrong.status_code == unknown.status_code == 200
    assert wrong.context["form"].non_field_errors() == unknown.context["form"].non_field_errors()


def test_login_after_five_failures_refuses_even_the_right_password(client, alice, password):
    # given: the per-address limit is 5 failures in 5 minutes
    for _ in range(5):
        assert password_login(client, alice.email, "not-the-password").status_code == 200

    # when
    response = password_login(client, alice.email, password)

    # then
    assert b"Too many failed login attempts" in response.content
    assert session_user_id(client) is None


def test_login_failures_on_one_address_do_not_lock_out_another(client, alice, bob, password):
    for _ in range(5):
        password_login(client, alice.email, "not-the-password")

    response = password_login(client, bob.email, password)

    assert response.status_code == 302
    assert session_user_id(client) == str(bob.pk)


def test_login_ten_failures_from_one_ip_lock_out_other_addresses_too(client, bob, password):
    # given: the per-IP limit is 10 failures a minute, whatever the address
    for i in range(10):
        password_login(client, f"guess{i}@example.com", "not-the-password")

    # when
    response = password_login(client, bob.email, password)

    # then
    assert b"Too many failed login attempts" in response.content
    assert session_user_id(client) is None


def test_login_repeated_posts_from_one_ip_are_answered_429(client, db):
    # given: allauth allows 30 login posts a minute from one address (ACCOUNT_RATE_LIMITS "login")
    statuses = [password_login(client, f"user{i}@example.com", "not-the-password").status_code for i in range(30)]
    assert set(statuses) == {200}

    # when
    response = password_login(client, "user31@example.com", "not-the-password")

    # then
    assert response.status_code == 429
    assert session_user_id(client) is None


# --- with a second factor ----------------------------------------------------------------------


@pytest.fixture
def alice_device(alice, enable_2fa):
    return enable_2fa(alice)


@pytest.fixture
def half_logged_in(client, alice, alice_device, password):
    """alice's browser after the password step, before the second one."""
    response = password_login(client, alice.email, password)
    assert response.status_code == 302
    assert session_user_id(client) == str(alice.pk)
    return client


@pytest.mark.parametrize("path", ["/", "/2fa/", "/2fa/setup/", "/tokens/", "/admin/"])
def test_login_with_2fa_every_page_redirects_to_verify(half_logged_in, path):
    response = half_logged_in.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY_URL)
    assert f"next={path.replace('/', '%2F')}" in response["Location"]


def test_login_with_2fa_api_with_session_is_403_second_factor_required(half_logged_in):
    response = half_logged_in.get("/api/v1/me/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "second_factor_required"


def test_login_with_2fa_token_post_with_session_is_403_second_factor_required(half_logged_in):
    response = half_logged_in.post("/api/v1/tokens/", {"name": "bot"}, content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "second_factor_required"


def test_login_with_2fa_verify_page_renders(half_logged_in):
    response = half_logged_in.get(VERIFY_URL)

    assert response.status_code == 200
    assert b"Two-factor check" in response.content


def test_login_with_2fa_correct_totp_lets_you_through(half_logged_in, alice, alice_device):
    # when
    response = half_logged_in.post(VERIFY_URL, {"code": totp_now(alice_device), "next": "/tokens/"})

    # then
    assert response.status_code == 302
    assert response["Location"] == "/tokens/"
    assert half_logged_in.get("/").status_code == 200
    me = half_logged_in.get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["email"] == alice.email
    assert me.json()["has_2fa"] is True


def test_login_with_2fa_code_with_spaces_is_accepted(half_logged_in, alice_device):
    code = totp_now(alice_device)

    response = half_logged_in.post(VERIFY_URL, {"code": f" {code[:3]} {code[3:]} "})

    assert response.status_code == 302


def test_login_with_2fa_verify_ignores_offsite_next(half_logged_in, alice_device):
    response = half_logged_in.post(VERIFY_URL, {"code": totp_now(alice_device), "next": "https://evil.example/"})

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_login_with_2fa_wrong_code_is_400_with_message(half_logged_in, alice_device):
    # when
    wrong = "000000" if totp_now(alice_device) != "000000" else "111111"
    response = half_logged_in.post(VERIFY_URL, {"code": wrong})

    # then
    assert response.status_code == 400
    assert response.context["form"].errors["code"] == ["That code is not right, or it was already used."]
    assert half_logged_in.get("/").status_code == 302


def test_login_with_2fa_totp_replayed_in_a_new_login_is_refused(alice, alice_device, password):
    # given: the code was used once
    code = totp_now(alice_device)
    first = Client()
    password_login(first, alice.email, password)
    assert first.post(VERIFY_URL, {"code": code}).status_code == 302

    # when: someone who saw it signs in with the password and replays it
    second = Client()
    password_login(second, alice.email, password)
    response = second.post(VERIFY_URL, {"code": code})

    # then
    assert response.status_code == 400
    assert b"already used" in response.content
    assert second.get("/").status_code == 302


def test_login_with_2fa_backup_code_works_once(alice, alice_device, password):
    # given
    backup = StaticToken.objects.filter(device__user=alice).first().token
    first = Client()
    password_login(first, alice.email, password)

    # when
    used = first.post(VERIFY_URL, {"code": backup.upper()})

    # then
    assert used.status_code == 302
    assert first.get("/").status_code == 200
    assert not StaticToken.objects.filter(device__user=alice, token=backup).exists()

    second = Client()
    password_login(second, alice.email, password)
    reused = second.post(VERIFY_URL, {"code": backup})
    assert reused.status_code == 400
    assert second.get("/").status_code == 302


def test_login_with_2fa_throttles_after_repeated_wrong_codes(half_logged_in, alice_device, settings):
    # given: a long enough back-off that the test never races the clock
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    wrong = "000000" if totp_now(alice_device) != "000000" else "111111"
    first = half_logged_in.post(VERIFY_URL, {"code": wrong})
    assert first.status_code == 400

    # when: even the right code is refused while throttled
    response = half_logged_in.post(VERIFY_URL, {"code": totp_now(alice_device)})

    # then
    assert response.status_code == 400
    message = response.context["form"].errors["code"][0]
    assert "Too many wrong codes" in message
    assert "Wait" in message
    assert half_logged_in.get("/").status_code == 302


def test_login_with_2fa_throttle_delay_doubles(half_logged_in, alice_device, settings):
    # given: one wrong code, and its 60 s back-off over
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    wrong = "000000" if totp_now(alice_device) != "000000" else "111111"
    half_logged_in.post(VERIFY_URL, {"code": wrong})
    alice_device.refresh_from_db()
    assert alice_device.throttling_failure_count == 1
    TOTPDevice.objects.filter(pk=alice_device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(seconds=61)
    )

    # when: a second wrong code
    half_logged_in.post(VERIFY_URL, {"code": wrong})
    response = half_logged_in.post(VERIFY_URL, {"code": totp_now(alice_device)})

    # then: the wait is now about 120 s
    message = response.context["form"].errors["code"][0]
    match = re.search(r"Wait (\d+) s", message)
    assert match, message
    wait = int(match.group(1))
    assert 60 < wait <= 120


def test_login_with_2fa_wrong_backup_codes_are_throttled_too(half_logged_in, alice_device, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    assert half_logged_in.post(VERIFY_URL, {"code": "wrongcode"}).status_code == 400

    response = half_logged_in.post(VERIFY_URL, {"code": totp_now(alice_device)})

    assert response.status_code == 400
    assert "Wait" in response.context["form"].errors["code"][0]


def test_login_with_2fa_logout_stays_reachable(half_logged_in):
    response = half_logged_in.post("/accounts/logout/")

    assert response.status_code == 302
    assert session_user_id(half_logged_in) is None
