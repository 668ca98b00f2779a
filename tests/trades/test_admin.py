"""The trades admin: read-only consoles for orders, fills, positions, ledger and risk events
(search by client order id and owner e-mail, bounded queries), order actions (cancel, resolve
now) and the platform kill switch actions (halt all / reduce only / resume)."""

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from apps.trades.models import Fill, PlatformSwitch, RiskEvent
from tests.trades.risk_fixtures import btc_rules, hold, open_order, paper
from tests.users.steps import verified_client

__all__ = ["btc_rules", "paper"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(staff: Any, enable_2fa: Any) -> Client:
    return verified_client(staff, enable_2fa(staff))


@pytest.fixture
def book(paper: Any, btc_rules: Any) -> dict[str, Any]:
    orders = [open_order(paper, btc_rules, "buy", "1", status=s) for s in ("new", "open", "filled")]
    fill = Fill.objects.create(
        order=orders[2],
        account=paper,
        instrument=btc_rules,
        trade_id="T-1",
        side="buy",
        quantity=Decimal(1),
        price=Decimal(100),
        filled_at="2024-01-01T00:00:00Z",
    )
    hold(paper, btc_rules, "1")
    RiskEvent.objects.create(account=paper, order=orders[0], code="max_position", message="too big")
    return {"orders": orders, "fill": fill}


@pytest.mark.parametrize("model", ["order", "fill", "position", "ledgerentry", "riskevent", "platformswitch"])
def test_lists_render_with_bounded_queries(
    staff_client: Client, book: dict, model: str, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(20):
        response = staff_client.get(f"/admin/trades/{model}/")
    assert response.status_code == 200


def test_search_by_client_order_id_and_owner(staff_client: Client, book: dict) -> None:
    order = book["orders"][1]
    response = staff_client.get("/admin/trades/order/", {"q": order.client_order_id})
    assert order.client_order_id in response.content.decode()
    assert book["orders"][0].client_order_id not in response.content.decode()
    response = staff_client.get("/admin/trades/order/", {"q": "alice@example.com"})
    assert response.content.decode().count("alice@example.com") >= 3
    response = staff_client.get("/admin/trades/fill/", {"q": book["orders"][2].client_order_id})
    assert "T-1" in response.content.decode()


def test_rows_are_read_only(staff_client: Client, book: dict) -> None:
    order = book["orders"][1]
    page = staff_client.get(f"/admin/trades/order/{order.pk}/change/")
    assert page.status_code == 200
    staff_client.post(f"/admin/trades/order/{order.pk}/change/", {"status": "filled"})
    order.refresh_from_db()
    assert order.status == "open"
    assert staff_client.get("/admin/trades/order/add/").status_code == 403


def test_cancel_action(staff_client: Client, book: dict, django_capture_on_commit_callbacks: Any) -> None:
    new = book["orders"][0]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/trades/order/", {"action": "cancel_orders", "_selected_action": [new.pk]}, follow=True
        )
    assert response.status_code == 200
    new.refresh_from_db()
    assert new.status == "cancelled"


def test_resolve_action_queues(staff_client: Client, book: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.trades import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.order_resolve, "delay", lambda order_id: queued.append(order_id))
    staff_client.post(
        "/admin/trades/order/",
        {"action": "resolve_orders", "_selected_action": [o.pk for o in book["orders"]]},
        follow=True,
    )
    assert sorted(queued) == sorted(o.pk for o in book["orders"][:2])  # not the filled one


def test_platform_switch_actions(
    staff_client: Client,
    staff: Any,
    book: dict,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from apps.trades.services import orders

    asked: list[int] = []
    monkeypatch.setattr(orders, "order_cancel", lambda *, order, actor=None: asked.append(order.pk))
    staff_client.get("/admin/trades/platformswitch/")
    switch = PlatformSwitch.objects.get(pk=1)
    for action, mode in (("reduce_only", "reduce_only"), ("halt_all", "halted"), ("resume", "active")):
        with django_capture_on_commit_callbacks(execute=True):
            response = staff_client.post(
                "/admin/trades/platformswitch/", {"action": action, "_selected_action": [switch.pk]}, follow=True
            )
        assert response.status_code == 200
        switch.refresh_from_db()
        assert switch.mode == mode
        assert switch.changed_by == staff
    assert AuditEvent.objects.filter(action="trading.platform_switch").count() == 3
    assert set(asked) == {o.pk for o in book["orders"][:2]}  # the open ones were cancelled on halt


def test_switch_needs_staff(alice: Any, password: str, enable_2fa: Any) -> None:
    client = verified_client(alice, enable_2fa(alice))
    response = client.get("/admin/trades/platformswitch/")
    assert response.status_code in (302, 403)
    assert PlatformSwitch.objects.filter(mode="halted").count() == 0
