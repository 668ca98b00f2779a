"""notify(): the in-app centre, rules, throttling/batching, quiet hours, thresholds, the daily
summary, mark read."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from apps.notifications.models import AlertRule, Delivery, Event, Notification, NotificationSettings
from apps.notifications.selectors import notification_list_for_user, notification_unread_count
from apps.notifications.services import notify, notify_threshold
from apps.notifications.services.deliveries import deliveries_sweep, delivery_send
from apps.notifications.services.notify import notification_mark_all_read, notification_mark_read, quiet_until
from apps.notifications.services.summaries import summaries_send_due

pytestmark = pytest.mark.django_db


def _fill(user: Any, n: int = 1, **extra: Any) -> Notification:
    return notify(
        user_id=user.pk, event=Event.ORDER_FILLED, title=f"BUY 1 BTC/USDT fill {n}", body="b", data={"n": n}, **extra
    )


def _rule(user: Any, events: list[str], channels: list[str], **extra: Any) -> AlertRule:
    return AlertRule.objects.create(user=user, events=events, channels=channels, **extra)


def test_without_rules_a_notification_is_in_app_only(alice):
    n = _fill(alice)

    assert list(notification_list_for_user(user=alice)) == [n]
    assert notification_unread_count(user_id=alice.pk) == 1
    assert not Delivery.objects.exists()


def test_a_repeated_dedupe_key_records_once(alice):
    first = _fill(alice, dedupe_key="fill:7")
    again = _fill(alice, 2, dedupe_key="fill:7")

    assert again.pk == first.pk
    assert Notification.objects.count() == 1


def test_unknown_event_is_refused(alice):
    with pytest.raises(ValueError):
        notify(user_id=alice.pk, event="nonsense", title="x", body="")
    assert not Notification.objects.exists()


def test_a_rule_sends_by_email_and_channels_not_set_up_are_suppressed(alice, django_capture_on_commit_callbacks):
    _rule(alice, [Event.ORDER_FILLED], ["email", "telegram"])
    with django_capture_on_commit_callbacks(execute=False):
        n = _fill(alice)
    email, telegram = Delivery.objects.filter(notification=n).order_by("channel")

    assert telegram.status == Delivery.Status.SUPPRESSED and "not set up" in telegram.last_error
    assert delivery_send(delivery_id=email.pk) == Delivery.Status.SENT
    email.refresh_from_db()
    assert email.status == Delivery.Status.SENT and email.attempts == 1 and email.sent_at
    assert [m.to for m in mail.outbox] == [[alice.email]]
    assert "BUY 1 BTC/USDT fill 1" in mail.outbox[0].subject


def test_another_users_rule_does_not_route_mine(alice, mallory):
    _rule(mallory, [Event.ORDER_FILLED], ["email"])
    _fill(alice)
    assert not Delivery.objects.exists()


def test_a_burst_becomes_one_message_on_external_channels_but_each_stays_in_app(alice):
    _rule(alice, [Event.ORDER_FILLED], ["email"])
    notes = [_fill(alice, i) for i in range(1, 6)]
    deliveries = list(Delivery.objects.order_by("pk"))

    # the first goes at once; the other four wait for the window's end together
    assert deliveries[0].due_at <= timezone.now()
    assert {d.due_at for d in deliveries[1:]} == {deliveries[1].due_at}
    assert deliveries[1].due_at - deliveries[0].due_at >= timedelta(seconds=29)
    delivery_send(delivery_id=deliveries[0].pk)
    assert delivery_send(delivery_id=deliveries[1].pk) is None  # not due yet: nothing sent early

    Delivery.objects.filter(pk__in=[d.pk for d in deliveries[1:]]).update(due_at=timezone.now())
    assert delivery_send(delivery_id=deliveries[1].pk) == Delivery.Status.SENT

    assert len(mail.outbox) == 2
    assert "4 orders filled" in mail.outbox[1].subject
    assert all(f"fill {i}" in mail.outbox[1].body for i in range(2, 6))
    batch = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[1:]])
    assert {(d.status, d.batch_size) for d in batch} == {(Delivery.Status.SENT, 4)}
    assert len({d.batch_id for d in batch}) == 1
    assert Notification.objects.filter(user=alice).count() == len(notes) == 5


def test_a_second_send_of_the_same_delivery_sends_nothing(alice):
    _rule(alice, [Event.ORDER_FILLED], ["email"])
    _fill(alice)
    delivery = Delivery.objects.get()
    delivery_send(delivery_id=delivery.pk)
    assert delivery_send(delivery_id=delivery.pk) is None
    assert len(mail.outbox) == 1


def _quiet_now(user: Any, mode: str = "hold") -> NotificationSettings:
    now = timezone.now().astimezone(UTC)
    start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    return NotificationSettings.objects.create(
        user=user, timezone="UTC", quiet_start=start, quiet_end=end, quiet_mode=mode
    )


def test_quiet_hours_hold_external_deliveries_until_they_end(alice):
    prefs = _quiet_now(alice)
    _rule(alice, [Event.ORDER_FILLED], ["email"])
    _fill(alice)
    delivery = Delivery.objects.get()

    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.due_at == quiet_until(prefs, timezone.now())
    assert delivery.due_at > timezone.now() + timedelta(hours=1)
    assert delivery_send(delivery_id=delivery.pk) is None and not mail.outbox
    assert Notification.objects.filter(user=alice, read_at__isnull=True).count() == 1  # in-app is never held


def test_quiet_hours_in_suppress_mode_drop_external_deliveries(alice):
    _quiet_now(alice, mode="suppress")
    _rule(alice, [Event.ORDER_FILLED], ["email"])
    _fill(alice)
    assert Delivery.objects.get().status == Delivery.Status.SUPPRESSED


def test_security_events_ignore_quiet_hours(alice):
    _quiet_now(alice)
    _rule(alice, [Event.SECURITY], ["email"])
    notify(user_id=alice.pk, event=Event.SECURITY, title="New sign-in", body="from 1.2.3.4")
    delivery = Delivery.objects.get()
    assert delivery.due_at <= timezone.now()
    assert delivery_send(delivery_id=delivery.pk) == Delivery.Status.SENT


def test_quiet_hours_wrap_midnight_in_the_users_time_zone():
    prefs = NotificationSettings(timezone="Europe/Berlin", quiet_start=time(22, 0), quiet_end=time(7, 0))
    # 21:30 UTC = 22:30 in Berlin (winter): quiet until 07:00 Berlin = 06:00 UTC next day
    assert quiet_until(prefs, datetime(2024, 1, 10, 21, 30, tzinfo=UTC)) == datetime(2024, 1, 11, 6, 0, tzinfo=UTC)
    assert quiet_until(prefs, datetime(2024, 1, 10, 12, 0, tzinfo=UTC)) is None


def test_the_sweep_queues_due_batches_and_requeues_stale_claims(alice):
    _rule(alice, [Event.ORDER_FILLED], ["email"])
    _fill(alice)
    Delivery.objects.update(status=Delivery.Status.SENDING, claimed_at=timezone.now() - timedelta(hours=1))
    assert deliveries_sweep() == 1
    assert Delivery.objects.get().status == Delivery.Status.QUEUED


def test_threshold_rules_fire_once_per_day_at_or_past_the_threshold(alice, mallory):
    _rule(alice, [Event.DAILY_LOSS], ["email"], threshold=Decimal("500"))
    kwargs: dict[str, Any] = {
        "user_id": alice.pk,
        "event": Event.DAILY_LOSS,
        "scope": "account:1",
        "title": "t",
        "body": "",
    }

    assert notify_threshold(value=Decimal("499"), **kwargs) is None
    first = notify_threshold(value=Decimal("500"), **kwargs)
    again = notify_threshold(value=Decimal("800"), **kwargs)
    assert first is not None and again == first
    assert first.data["threshold"] == "500.0000000000"
    assert Delivery.objects.filter(notification=first).count() == 1
    assert notify_threshold(**{**kwargs, "user_id": mallory.pk}, value=Decimal("10000")) is None


def test_mark_read_and_mark_all_read_are_the_owners_only(alice, mallory):
    a1, a2 = _fill(alice, 1), _fill(alice, 2)
    m1 = _fill(mallory)
    notification_mark_read(user=alice, notification_id=a1.pk)
    from apps.common.errors import NotFound

    with pytest.raises(NotFound):
        notification_mark_read(user=mallory, notification_id=a2.pk)
    assert notification_unread_count(user_id=alice.pk) == 1
    assert [n.pk for n in notification_list_for_user(user=alice)] == [a2.pk, a1.pk]  # unread first
    assert notification_mark_all_read(user=mallory) == 1
    m1.refresh_from_db()
    a2.refresh_from_db()
    assert m1.read_at is not None and a2.read_at is None


def test_daily_summary_goes_out_at_the_users_local_hour_once(alice, bob):
    NotificationSettings.objects.create(user=alice, timezone="Asia/Tokyo", daily_summary_hour=9)
    NotificationSettings.objects.create(user=bob, timezone="UTC", daily_summary_hour=9)
    at_nine_in_tokyo = datetime(2024, 3, 1, 0, 5, tzinfo=UTC)

    assert summaries_send_due(now=at_nine_in_tokyo) == 1
    assert summaries_send_due(now=at_nine_in_tokyo + timedelta(minutes=30)) == 0
    summary = Notification.objects.get(event=Event.DAILY_SUMMARY)
    assert summary.user_id == alice.pk and "2024-03-01" in summary.title
    assert not Notification.objects.filter(user=bob).exists()
