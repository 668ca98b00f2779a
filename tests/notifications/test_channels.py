"""The external channels against local servers: Telegram (tests/fakes/fake_telegram.py: send,
link by code, wrong and expired codes refused) and the webhook (tests/fakes/webhook_receiver.py:
the signature verified; a failing receiver retried, then failed, while e-mail still delivers)."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from apps.common.errors import ValidationFailed
from apps.notifications.models import AlertRule, Delivery, Event, NotificationSettings
from apps.notifications.services import notify
from apps.notifications.services.deliveries import delivery_send
from apps.notifications.services.preferences import notification_settings_update, webhook_secret_rotate
from apps.notifications.services.telegram_link import telegram_link_start, telegram_updates_poll
from tests.fakes.fake_telegram import FakeTelegram
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def tg(settings: Any) -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        settings.TELEGRAM_BOT_TOKEN = fake.token
        settings.TELEGRAM_API_URL = fake.url
        yield fake


@pytest.fixture
def hook(settings: Any) -> Iterator[WebhookReceiver]:
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 0
    with WebhookReceiver() as receiver:
        yield receiver


def _send_all_due() -> None:
    for pk in Delivery.objects.filter(status=Delivery.Status.QUEUED).values_list("pk", flat=True):
        Delivery.objects.filter(pk=pk, status=Delivery.Status.QUEUED).update(due_at=timezone.now())
        delivery_send(delivery_id=pk)


def test_telegram_link_by_code_then_a_notification_arrives_in_the_chat(alice, tg):
    prefs = telegram_link_start(user=alice)
    tg.user_sends(chat_id=4242, text=f"/start {prefs.telegram_link_code.lower()}")

    assert telegram_updates_poll() == 1
    prefs.refresh_from_db()
    assert prefs.telegram_chat_id == "4242" and prefs.telegram_link_code == ""
    assert "Linked" in tg.replies_to(4242)[0]

    AlertRule.objects.create(user=alice, events=[Event.ORDER_FILLED], channels=["telegram"])
    notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="BUY 1 BTC/USDT filled", body="at 100")
    _send_all_due()
    assert Delivery.objects.get().status == Delivery.Status.SENT
    assert tg.replies_to(4242)[-1].startswith("BUY 1 BTC/USDT filled")
    assert telegram_updates_poll() == 0  # the update is not handled twice


def test_a_wrong_code_is_refused_with_a_reply_and_links_nothing(alice, tg):
    telegram_link_start(user=alice)
    tg.user_sends(chat_id=666, text="WRONGCODE")
    telegram_updates_poll()

    assert "not valid" in tg.replies_to(666)[0]
    assert not NotificationSettings.objects.exclude(telegram_chat_id="").exists()


def test_an_expired_code_is_refused_with_a_reply(alice, tg):
    prefs = telegram_link_start(user=alice)
    NotificationSettings.objects.filter(pk=prefs.pk).update(
        telegram_link_expires_at=timezone.now() - timedelta(seconds=1)
    )
    tg.user_sends(chat_id=777, text=prefs.telegram_link_code)
    telegram_updates_poll()

    assert "expired" in tg.replies_to(777)[0]
    prefs.refresh_from_db()
    assert prefs.telegram_chat_id == ""


def test_a_used_code_does_not_link_a_second_chat(alice, tg):
    prefs = telegram_link_start(user=alice)
    tg.user_sends(chat_id=1, text=prefs.telegram_link_code)
    tg.user_sends(chat_id=2, text=prefs.telegram_link_code)
    telegram_updates_poll()
    prefs.refresh_from_db()
    assert prefs.telegram_chat_id == "1"
    assert "not valid" in tg.replies_to(2)[0]


def test_telegram_blocked_by_the_user_fails_at_once(alice, tg):
    NotificationSettings.objects.create(user=alice, telegram_chat_id="9")
    AlertRule.objects.create(user=alice, events=[Event.ORDER_FILLED], channels=["telegram"])
    tg.fail_with = 403
    notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="t", body="")
    _send_all_due()
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1
    assert "Fake failure" in delivery.last_error


def test_the_webhook_is_signed_and_the_receiver_verifies_it(alice, hook):
    notification_settings_update(user=alice, webhook_url=hook.url)
    hook.secret = webhook_secret_rotate(user=alice)
    AlertRule.objects.create(user=alice, events=[Event.LISTING_APPROVED], channels=["webhook"])
    notify(user_id=alice.pk, event=Event.LISTING_APPROVED, title="Listing approved", body="", data={"listing_id": 3})
    _send_all_due()

    [received] = hook.received
    assert received["verified"]
    assert received["json"]["event"] == "listing_approved"
    assert received["json"]["notifications"][0]["data"] == {"listing_id": 3}
    assert received["headers"]["X-Event"] == "listing_approved"
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_a_failing_webhook_is_retried_then_failed_while_email_still_delivers(alice, hook, settings):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 3
    notification_settings_update(user=alice, webhook_url=hook.url)
    hook.secret = NotificationSettings.objects.get(user=alice).webhook_secret
    hook.fail_with = 503
    AlertRule.objects.create(user=alice, events=[Event.ORDER_REJECTED], channels=["webhook", "email"])
    notify(user_id=alice.pk, event=Event.ORDER_REJECTED, title="Order rejected", body="max_position")

    for _ in range(3):
        _send_all_due()

    webhook = Delivery.objects.get(channel="webhook")
    email = Delivery.objects.get(channel="email")
    assert (webhook.status, webhook.attempts) == (Delivery.Status.FAILED, 3)
    assert "503" in webhook.last_error and "3 attempts" in webhook.last_error
    assert len(hook.received) == 3 and all(r["verified"] for r in hook.received)
    assert email.status == Delivery.Status.SENT and len(mail.outbox) == 1


def test_a_webhook_refusing_with_4xx_is_not_retried(alice, hook):
    notification_settings_update(user=alice, webhook_url=hook.url)
    hook.fail_with = 410
    AlertRule.objects.create(user=alice, events=[Event.ORDER_FILLED], channels=["webhook"])
    notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="t", body="")
    _send_all_due()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 1)


def test_backoff_grows_between_attempts(alice, hook, settings):
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    notification_settings_update(user=alice, webhook_url=hook.url)
    hook.fail_with = 500
    AlertRule.objects.create(user=alice, events=[Event.ORDER_FILLED], channels=["webhook"])
    notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="t", body="")
    delays = []
    for _ in range(3):
        _send_all_due()
        delivery = Delivery.objects.get()
        delays.append(round((delivery.due_at - timezone.now()).total_seconds()))
    assert delays == [10, 20, 40]


def test_a_private_webhook_address_is_refused_unless_allowed(alice, settings):
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationFailed) as refused:
        notification_settings_update(user=alice, webhook_url="http://127.0.0.1:9/hook")
    assert "webhook_url" in refused.value.extra["fields"]
    assert not NotificationSettings.objects.filter(user=alice).exclude(webhook_url="").exists()
