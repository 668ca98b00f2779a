"""Events of the higher apps reach the notification centre: a real paper fill, a risk refusal,
a halted deployment, a listing approved, a new follower, a security event."""

# ruff: noqa: F811 - fixtures are imported from tests.trades.execution_support

from typing import Any

import pytest

from apps.audit.services import audit_record
from apps.marketplace.models import Listing
from apps.marketplace.services.listings import listing_approve, listing_reject
from apps.notifications.models import Event, Notification
from apps.trades.models import Fill, Order
from apps.trades.risk.switches import account_switch_set, deployment_switch_set
from apps.trades.services.orders import order_submit
from tests.marketplace.fanout_support import make_follower, make_listing
from tests.trades.execution_support import (  # noqa: F401 - fixtures
    T0,
    D,
    close_bar,
    intent,
    make_deployment,
    paper,
    paper_btc,
    queued,
)

pytestmark = pytest.mark.django_db


def _of(user: Any, event: str) -> list[Notification]:
    return list(Notification.objects.filter(user=user, event=event))


@pytest.fixture
def fill_notifications(monkeypatch):
    """The "order filled" task is published to the default queue; no worker runs here, so each
    publish runs the task at once (recording the queue it was sent to)."""
    from apps.trades import tasks

    queues: list[str] = []

    def run(args, **options):
        queues.append(options.get("queue", ""))
        tasks.fills_notify(*args)

    monkeypatch.setattr(tasks.fills_notify, "apply_async", run)
    return queues


def test_a_real_paper_fill_notifies_order_filled_once(
    alice, paper, paper_btc, queued, django_capture_on_commit_callbacks, fill_notifications
):
    deployment = make_deployment(paper, paper_btc)
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(
            intent=intent(
                paper,
                paper_btc,
                deployment_id=deployment.pk,
                bar_ts=T0,
                leg="entry",
                quantity=D("1"),
                expected_price=D("100"),
            )
        )
    with django_capture_on_commit_callbacks(execute=True):
        close_bar(paper_btc, 1, 101, 102, 100, 101)

    fill = Fill.objects.get(order=order)
    assert fill_notifications == ["default"]  # off the trading path
    [note] = _of(alice, Event.ORDER_FILLED)
    assert note.data["fill_id"] == fill.pk and note.data["order_id"] == order.pk
    assert "BTC/USDT" in note.title and "filled" in note.title
    # the fill's signal delivered again changes nothing
    from apps.trades.signals import fill_recorded

    fill_recorded.send(
        sender=Fill, fill_id=fill.pk, order_id=order.pk, account_id=paper.pk, deployment_id=deployment.pk
    )
    assert len(_of(alice, Event.ORDER_FILLED)) == 1


def test_a_risk_refusal_notifies_order_rejected_with_the_reason(
    alice, staff, paper, paper_btc, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        account_switch_set(account_id=paper.pk, mode="reduce_only", reason="testing", actor=staff)
    deployment = make_deployment(paper, paper_btc)
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(
            intent=intent(
                paper,
                paper_btc,
                deployment_id=deployment.pk,
                bar_ts=T0,
                leg="entry",
                quantity=D("1"),
                expected_price=D("100"),
            ),
            raise_refusal=False,
        )

    assert order.status == Order.Status.REJECTED
    [note] = _of(alice, Event.ORDER_REJECTED)
    assert note.data["order_id"] == order.pk
    assert order.status_reason and order.status_reason in note.body


def test_a_halted_deployment_notifies_its_owner_with_the_reason(
    alice, staff, mallory, paper, paper_btc, queued, django_capture_on_commit_callbacks
):
    deployment = make_deployment(paper, paper_btc, name="My bot")
    with django_capture_on_commit_callbacks(execute=True):
        deployment_switch_set(deployment_id=deployment.pk, mode="halted", reason="Operator check", actor=staff)

    [note] = _of(alice, Event.DEPLOYMENT_HALTED)
    assert note.title == "My bot halted" and "Operator check" in note.body
    assert not Notification.objects.filter(user=mallory).exists()


def test_a_listing_approved_or_rejected_notifies_its_owner(
    alice, staff, paper, paper_btc, queued, django_capture_on_commit_callbacks
):
    first = make_listing(make_deployment(paper, paper_btc), status=Listing.Status.PENDING)
    second = make_listing(make_deployment(paper, paper_btc), status=Listing.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        listing_approve(listing=first, actor=staff)
        listing_reject(listing=second, actor=staff, reason="Describe the risks")

    [approved] = _of(alice, Event.LISTING_APPROVED)
    [rejected] = _of(alice, Event.LISTING_REJECTED)
    assert approved.data["listing_id"] == first.pk
    assert "Describe the risks" in rejected.body


def test_a_new_follower_notifies_the_leader(alice, paper, paper_btc, queued, django_capture_on_commit_callbacks):
    listing = make_listing(make_deployment(paper, paper_btc))
    with django_capture_on_commit_callbacks(execute=True):
        sub = make_follower(listing, 1)

    [note] = _of(alice, Event.NEW_FOLLOWER)
    assert note.data["listing_id"] == listing.pk
    assert sub.follower.email not in note.body  # the follower did not ask to be shown


def test_security_actions_notify_but_failed_logins_do_not(alice, django_capture_on_commit_callbacks):
    audit_record(action="token.created", actor=alice)
    audit_record(action="user.login_failed", user=alice)
    [note] = _of(alice, Event.SECURITY)
    assert note.title == "A new API token was created"
