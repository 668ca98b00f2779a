"""The operations console: staff only, and only with a verified second factor; its actions on
users go through the services and are audited."""

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import get_token_model

from apps.audit.models import AuditEvent
from tests.conftest import totp_now
from tests.users.steps import VERIFY_URL, password_login, session_user_id, verified_client

ADMIN_URL = "/admin/"
USERS_URL = "/admin/users/user/"


@pytest.fixture
def staff_device(staff, enable_2fa):
    return enable_2fa(staff)


@pytest.fixture
def staff_client(staff, staff_device):
    return verified_client(staff, staff_device)


def _redirect_chain(client: Client, url: str) -> list[str]:
    response = client.get(url, follow=True)
    return [location for location, _ in response.redirect_chain]


def test_admin_anonymous_is_sent_to_allauth_login(client, db):
    # when
    response = client.get(ADMIN_URL)
    chain = _redirect_chain(client, ADMIN_URL)

    # then
    assert response.status_code == 302
    assert chain[-1].startswith("/accounts/login/")
    assert "next=%2Fadmin%2F" in chain[-1]


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/admin/users/user/", "/admin/audit/auditevent/"])
def test_admin_anonymous_never_gets_a_page(client, db, path):
    response = client.get(path)

    assert response.status_code == 302


def test_admin_login_form_post_does_not_log_in(client, staff, password):
    # the admin's own form is not an entrance: login goes through allauth
    response = client.post("/admin/login/", {"username": staff.email, "password": password})

    assert response.status_code == 302
    assert session_user_id(client) is None


def test_admin_staff_without_device_is_sent_to_setup(client, staff, password):
    # given
    password_login(client, staff.email, password)

    # when
    chain = _redirect_chain(client, ADMIN_URL)

    # then
    assert chain[-1].startswith("/2fa/setup/")
    assert client.get(ADMIN_URL).status_code == 302


def test_admin_staff_with_device_unverified_is_sent_to_verify(client, staff, staff_device, password):
    password_login(client, staff.email, password)

    response = client.get(ADMIN_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY_URL)


def test_admin_staff_verified_through_the_second_step_gets_200(client, staff, staff_device, password):
    # given
    password_login(client, staff.email, password)
    verify = client.post(VERIFY_URL, {"code": totp_now(staff_device), "next": ADMIN_URL})
    assert verify["Location"] == ADMIN_URL

    # when
    response = client.get(ADMIN_URL)

    # then
    assert response.status_code == 200
    assert b"Trading platform operations" in response.content


def test_admin_non_staff_verified_is_not_let_in(alice, enable_2fa):
    client = verified_client(alice, enable_2fa(alice))

    response = client.get(ADMIN_URL)
    chain = _redirect_chain(client, ADMIN_URL)

    assert response.status_code == 302
    assert chain[-1] == "/"
    assert client.get(USERS_URL).status_code == 302


def test_admin_non_staff_without_2fa_is_not_let_in(client, alice):
    client.force_login(alice)

    assert client.get(ADMIN_URL).status_code == 302
    assert client.get(USERS_URL).status_code == 302


def test_admin_user_list_shows_users(staff_client, alice):
    response = staff_client.get(USERS_URL)

    assert response.status_code == 200
    assert alice.email.encode() in response.content


def _action(client: Client, action: str, *users) -> None:
    response = client.post(USERS_URL, {"action": action, "_selected_action": [u.pk for u in users]})
    assert response.status_code == 302


def test_admin_lock_action_stops_login_and_tokens(staff_client, staff, alice, password):
    # given: alice has a token and a session
    _, plaintext = get_token_model().objects.create(user=alice, name="bot")
    alice_browser = Client()
    password_login(alice_browser, alice.email, password)
    assert alice_browser.get("/").status_code == 200

    # when
    _action(staff_client, "lock_users", alice)

    # then
    alice.refresh_from_db()
    assert alice.is_locked
    assert not alice.is_active
    assert alice_browser.get("/").status_code == 302
    fresh = Client()
    login = password_login(fresh, alice.email, password)
    assert session_user_id(fresh) is None
    assert login.status_code == 302
    assert login["Location"] == "/accounts/inactive/"
    api = Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {plaintext}")
    assert api.status_code == 401
    assert set(api.json()["error"]) >= {"code", "message"}
    event = AuditEvent.objects.get(action="user.locked")
    assert (event.user, event.actor) == (alice, staff)


def test_admin_lock_action_does_not_lock_yourself(staff_client, staff):
    _action(staff_client, "lock_users", staff)

    staff.refresh_from_db()
    assert not staff.is_locked
    assert not AuditEvent.objects.filter(action="user.locked").exists()


def test_admin_unlock_action_lets_user_in_again(staff_client, staff, alice, password):
    _action(staff_client, "lock_users", alice)

    _action(staff_client, "unlock_users", alice)

    alice.refresh_from_db()
    assert not alice.is_locked
    browser = Client()
    password_login(browser, alice.email, password)
    assert session_user_id(browser) == str(alice.pk)
    event = AuditEvent.objects.get(action="user.unlocked")
    assert (event.user, event.actor) == (alice, staff)


def test_admin_reset_2fa_action_removes_devices(staff_client, staff, alice, bob, enable_2fa, password):
    # given
    enable_2fa(alice)
    enable_2fa(bob)

    # when
    _action(staff_client, "reset_two_factor", alice)

    # then
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert not StaticDevice.objects.filter(user=alice).exists()
    assert TOTPDevice.objects.filter(user=bob).exists()
    event = AuditEvent.objects.get(action="user.2fa_reset_by_staff")
    assert (event.user, event.actor) == (alice, staff)
    # alice signs in with the password alone now
    browser = Client()
    password_login(browser, alice.email, password)
    assert browser.get("/").status_code == 200


def test_admin_api_tokens_cannot_be_added_or_changed(staff_client, alice):
    token, plaintext = get_token_model().objects.create(user=alice, name="bot")

    add = staff_client.get("/admin/users/apitoken/add/")
    change = staff_client.post(f"/admin/users/apitoken/{token.pk}/change/", {"name": "renamed"})
    view = staff_client.get(f"/admin/users/apitoken/{token.pk}/change/")

    assert add.status_code == 403
    assert change.status_code == 403
    assert view.status_code == 200
    assert plaintext.encode() not in view.content
    token.refresh_from_db()
    assert token.name == "bot"


def test_admin_audit_events_cannot_be_deleted_from_admin(staff_client, alice):
    from apps.audit.services import audit_record

    event = audit_record(action="user.login", actor=alice)

    response = staff_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize("action", ["lock_users", "unlock_users", "reset_two_factor"])
def test_admin_view_only_staff_cannot_run_user_actions(action, alice, enable_2fa, password):
    from django.contrib.auth.models import Permission

    from apps.users.models import User

    # given: an operator who may only view users
    viewer = User.objects.create_user("viewer@example.com", password, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = verified_client(viewer, enable_2fa(viewer))
    device = enable_2fa(alice)
    # when
    response = client.post("/admin/users/user/", {"action": action, "_selected_action": [alice.pk]})
    # then: the action is not offered, and nothing changed
    assert response.status_code in {200, 302}
    alice.refresh_from_db()
    assert alice.is_active and alice.locked_at is None
    assert type(device).objects.filter(pk=device.pk).exists()


def test_admin_shows_the_celery_beat_schedules(staff, enable_2fa):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    # What beat's database scheduler stores for the settings' schedule when it starts.
    every = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="worker-heartbeat", task="apps.common.tasks.worker_heartbeat", interval=every)
    client = verified_client(staff, enable_2fa(staff))

    response = client.get("/admin/django_celery_beat/periodictask/")

    assert response.status_code == 200
    assert b"worker-heartbeat" in response.content
    assert client.get("/admin/").content.count(b"Periodic tasks") >= 1
