"""Notifications API: owner-scoped (mallory sees and changes nothing), bad input is a 400 that
changes nothing, and the portal pages."""

from typing import Any

import pytest
from django.urls import reverse

from apps.notifications.models import AlertRule, Delivery, Event, Notification, NotificationSettings
from apps.notifications.services import notify

pytestmark = pytest.mark.django_db


def _as(api_client: Any, user: Any) -> Any:
    api_client.force_authenticate(user)
    return api_client


@pytest.fixture
def alices(alice: Any) -> dict[str, Any]:
    rule = AlertRule.objects.create(user=alice, events=[Event.ORDER_FILLED], channels=["email"])
    n = notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="alice-secret-fill", body="")
    return {"rule": rule, "notification": n, "delivery": Delivery.objects.get(notification=n)}


def test_list_and_read(api_client, alice, alices):
    client = _as(api_client, alice)
    body = client.get("/api/v1/notifications/").json()
    assert [r["title"] for r in body["results"]] == ["alice-secret-fill"]
    n = alices["notification"]
    assert client.post(f"/api/v1/notifications/{n.pk}/read/").json()["is_read"] is True
    assert client.get("/api/v1/notifications/?unread=true").json()["results"] == []
    assert client.post("/api/v1/notifications/read-all/").json() == {"marked": 0, "unread": 0}


def test_outsider_sees_and_changes_nothing(api_client, alice, mallory, alices):
    client = _as(api_client, mallory)
    n, rule = alices["notification"], alices["rule"]
    assert client.get(f"/api/v1/notifications/{n.pk}/").status_code == 404
    assert client.post(f"/api/v1/notifications/{n.pk}/read/").status_code == 404
    assert client.get(f"/api/v1/alert-rules/{rule.pk}/").status_code == 404
    assert client.patch(f"/api/v1/alert-rules/{rule.pk}/", {"is_enabled": False}).status_code == 404
    assert client.delete(f"/api/v1/alert-rules/{rule.pk}/").status_code == 404
    client.post("/api/v1/notifications/read-all/")
    for path in ("/api/v1/notifications/", "/api/v1/alert-rules/", "/api/v1/deliveries/"):
        assert client.get(path).json()["results"] == [], path
    assert "webhook" not in str(client.get("/api/v1/notification-settings/").json()["webhook_url"])
    n.refresh_from_db()
    rule.refresh_from_db()
    assert n.read_at is None and rule.is_enabled


def test_rules_crud(api_client, alice):
    client = _as(api_client, alice)
    created = client.post(
        "/api/v1/alert-rules/",
        {"name": "losses", "events": ["daily_loss"], "channels": ["email", "webhook"], "threshold": "250"},
    )
    assert created.status_code == 201, created.json()
    rule_id = created.json()["id"]
    patched = client.patch(f"/api/v1/alert-rules/{rule_id}/", {"channels": ["telegram"]})
    assert patched.json()["channels"] == ["telegram"] and patched.json()["events"] == ["daily_loss"]
    assert client.delete(f"/api/v1/alert-rules/{rule_id}/").status_code == 204
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"events": ["nope"], "channels": ["email"]}, "events"),
        ({"events": ["order_filled"], "channels": ["sms"]}, "channels"),
        ({"events": [], "channels": ["email"]}, "events"),
        ({"events": ["order_filled"], "channels": ["email"], "threshold": "-1"}, "threshold"),
        ({"events": ["order_filled"], "channels": ["email"], "user": 1}, "user"),
    ],
)
def test_bad_rules_are_400_and_change_nothing(api_client, alice, body, field):
    response = _as(api_client, alice).post("/api/v1/alert-rules/", body)
    assert response.status_code == 400
    assert field in str(response.json())
    assert not AlertRule.objects.exists()


def test_settings_patch_secret_and_telegram_code(api_client, alice, settings):
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE = False
    client = _as(api_client, alice)
    ok = client.patch(
        "/api/v1/notification-settings/",
        {"timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "07:00", "daily_summary_hour": 18},
    )
    assert ok.status_code == 200 and ok.json()["timezone"] == "Europe/Berlin"
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"daily_summary_hour": 24},
        {"webhook_url": "http://10.0.0.5/hook"},
        {"webhook_secret": "mine"},
        {"quiet_start": None},
    ):
        response = client.patch("/api/v1/notification-settings/", bad, format="json")
        assert response.status_code == 400, bad
    prefs = NotificationSettings.objects.get(user=alice)
    assert (prefs.timezone, prefs.daily_summary_hour, prefs.webhook_url) == ("Europe/Berlin", 18, "")
    secret = client.post("/api/v1/notification-settings/webhook-secret/").json()["webhook_secret"]
    assert secret.startswith("whsec_")
    shown = client.get("/api/v1/notification-settings/").json()
    assert secret not in str(shown) and shown["webhook_secret_masked"]
    code = client.post("/api/v1/notification-settings/telegram-link/").json()["telegram_link_code"]
    assert len(code) == 8
    assert client.delete("/api/v1/notification-settings/telegram-link/").status_code == 204


def test_delivery_log_filters(api_client, alice, alices):
    client = _as(api_client, alice)
    assert len(client.get("/api/v1/deliveries/?status=queued").json()["results"]) == 1
    assert client.get("/api/v1/deliveries/?status=sent").json()["results"] == []
    assert client.get("/api/v1/deliveries/?status=bogus").status_code == 400


def test_anonymous_is_refused(api_client):
    assert api_client.get("/api/v1/notifications/").status_code in (401, 403)


def test_centre_and_settings_pages(web_client, alice, mallory, alices):
    web_client.force_login(mallory)
    page = web_client.get(reverse("notifications:centre"))
    assert page.status_code == 200 and b"alice-secret-fill" not in page.content
    n = alices["notification"]
    assert web_client.post(reverse("notifications:read", args=[n.pk])).status_code == 404
    assert web_client.post(reverse("notifications:rule-delete", args=[alices["rule"].pk])).status_code == 404

    web_client.force_login(alice)
    page = web_client.get(reverse("notifications:centre"))
    assert b"alice-secret-fill" in page.content and b'id="bell-count"' in page.content
    settings_page = web_client.get(reverse("notifications:settings"))
    assert settings_page.status_code == 200 and b"X-Signature" in settings_page.content
    bad = web_client.post(reverse("notifications:rule-create"), {"events": ["order_filled"]})
    assert bad.status_code == 400 and AlertRule.objects.filter(user=alice).count() == 1
    web_client.post(reverse("notifications:rule-create"), {"events": ["security"], "channels": ["email"]})
    assert AlertRule.objects.filter(user=alice).count() == 2
    web_client.post(reverse("notifications:read-all"))
    assert not Notification.objects.filter(user=alice, read_at__isnull=True).exists()
    rotated = web_client.post(reverse("notifications:webhook-secret"))
    assert b"whsec_" in rotated.content
