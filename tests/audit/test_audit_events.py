"""Security actions leave an AuditEvent for the right user."""

from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import get_token_model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from tests.conftest import totp_now
from tests.users.steps import VERIFY_URL, password_login, session_mark_verified, verified_client


def _actions(user) -> list[str]:
    return list(AuditEvent.objects.filter(user=user).order_by("id").values_list("action", flat=True))


def test_audit_login_is_recorded_for_the_user(client, alice, bob, password):
    # when
    password_login(client, alice.email, password)

    # then
    event = AuditEvent.objects.get(action="user.login")
    assert (event.user, event.actor, event.actor_email) == (alice, alice, alice.email)
    assert event.ip == "127.0.0.1"
    assert _actions(bob) == []


def test_audit_failed_login_is_recorded_for_the_account_not_the_typed_address(client, alice):
    password_login(client, alice.email, "not-the-password")
    password_login(client, "nobody@example.com", "not-the-password")

    event = AuditEvent.objects.get(action="user.login_failed")
    assert event.user == alice
    assert event.actor is None
    assert "nobody@example.com" not in str(list(AuditEvent.objects.values()))


def test_audit_logout_is_recorded(client, alice, password):
    password_login(client, alice.email, password)

    client.post("/accounts/logout/")

    assert _actions(alice) == ["user.login", "user.logout"]


def test_audit_second_step_success_and_failure_are_recorded(alice, enable_2fa, password, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = enable_2fa(alice)
    client = Client()
    password_login(client, alice.email, password)

    client.post(VERIFY_URL, {"code": "000000" if totp_now(device) != "000000" else "111111"})
    client.post(VERIFY_URL, {"code": totp_now(device)})

    assert _actions(alice) == ["user.login", "user.2fa_failed", "user.login_2fa"]


def test_audit_2fa_enabled_is_recorded(client, alice, bob):
    # given
    client.force_login(alice)
    client.get("/2fa/setup/")
    pending = TOTPDevice.objects.get(user=alice)

    # when
    client.post("/2fa/setup/", {"code": totp_now(pending)})

    # then
    event = AuditEvent.objects.get(action="user.2fa_enabled")
    assert (event.user, event.actor) == (alice, alice)
    assert _actions(bob) == []


def test_audit_2fa_disabled_is_recorded(alice, enable_2fa):
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    client.post("/2fa/disable/", {"code": totp_now(device)})

    event = AuditEvent.objects.get(action="user.2fa_disabled")
    assert (event.user, event.actor) == (alice, alice)


def test_audit_2fa_disable_with_wrong_code_records_failure_only(alice, enable_2fa):
    device = enable_2fa(alice)
    client = verified_client(alice, device)

    client.post("/2fa/disable/", {"code": "000000" if totp_now(device) != "000000" else "111111"})

    actions = _actions(alice)
    assert "user.2fa_failed" in actions
    assert "user.2fa_disabled" not in actions


def test_audit_token_created_and_revoked_are_recorded(alice, mallory, enable_2fa):
    # given
    client = APIClient()
    client.force_login(alice)
    session_mark_verified(client, enable_2fa(alice))

    # when
    created = client.post("/api/v1/tokens/", {"name": "bot"}).json()
    client.delete(f"/api/v1/tokens/{created['id']}/")

    # then
    made = AuditEvent.objects.get(action="token.created")
    assert (made.user, made.actor) == (alice, alice)
    assert made.target_type == "users.apitoken"
    assert made.target_id == created["id"]
    assert made.details["name"] == "bot"
    gone = AuditEvent.objects.get(action="token.revoked")
    assert (gone.user, gone.actor) == (alice, alice)
    assert gone.details["token_key"] == created["prefix"]
    # the secret never lands in the trail
    assert created["token"] not in str(list(AuditEvent.objects.values()))
    assert _actions(mallory) == []


def test_audit_outsider_revoke_attempt_records_nothing(alice, mallory):
    token, _ = get_token_model().objects.create(user=alice, name="bot")
    _, mallory_plaintext = get_token_model().objects.create(user=mallory, name="mallory")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {mallory_plaintext}")

    client.delete(f"/api/v1/tokens/{token.public_id}/")

    assert not AuditEvent.objects.filter(action="token.revoked").exists()


def test_audit_events_show_on_own_dashboard_only(client, alice, mallory, password):
    password_login(Client(), mallory.email, "not-the-password")
    password_login(client, alice.email, password)

    response = client.get("/")

    events = list(response.context["events"])
    assert [e.action for e in events] == ["user.login"]
    assert all(e.user_id == alice.pk for e in events)
