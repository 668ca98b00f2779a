"""Portal pages of trading: orders (status filter, cancel), fills with slippage, positions with
P&L, refused orders and why, and the manual order form (errors at the field, values kept,
refusals shown). Another user's order is a 404; lists show only one's own rows."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from apps.trades.models import Fill, Order, RiskEvent
from tests.trades.risk_fixtures import btc_rules, hold, make_account, open_order, paper
from tests.trades.test_api import with_candles
from tests.users.steps import verified_client

__all__ = ["btc_rules", "paper"]
pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def alice_client(alice: Any, enable_2fa: Any) -> Client:
    return verified_client(alice, enable_2fa(alice))


@pytest.fixture
def mallory_client(mallory: Any, enable_2fa: Any) -> Client:
    return verified_client(mallory, enable_2fa(mallory))


def test_orders_page_filters_by_status(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    shown = open_order(paper, btc_rules, "buy", "1", status="open")
    hidden = open_order(paper, btc_rules, "buy", "1", status="filled")
    page = alice_client.get("/trades/", {"status": "open"}).content.decode()
    assert shown.client_order_id in page and hidden.client_order_id not in page
    assert 'id="live-table"' in page and "trades_live.js" in page
    everything = alice_client.get("/trades/").content.decode()
    assert hidden.client_order_id in everything


def test_cancel_button(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    order = open_order(paper, btc_rules, "buy", "1", status="new")
    assert f'data-cancel="{order.pk}"' in alice_client.get("/trades/").content.decode()
    response = alice_client.post(f"/trades/{order.pk}/cancel/", {"next": "/trades/"})
    assert response.status_code == 302 and response["Location"] == "/trades/"
    order.refresh_from_db()
    assert order.status == "cancelled"
    response = alice_client.post(f"/trades/{order.pk}/cancel/", follow=True)
    assert "already" in response.content.decode()


def test_fills_show_slippage_and_positions_pnl(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    with_candles(btc_rules, close=110.0)
    order = open_order(paper, btc_rules, "buy", "2", status="filled")
    Fill.objects.create(
        order=order,
        account=paper,
        instrument=btc_rules,
        trade_id="T-9",
        side="buy",
        quantity=D(2),
        price=D("100.5"),
        expected_price=D(100),
        slippage_bps=D("50"),
        filled_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    page = alice_client.get("/trades/fills/").content.decode()
    assert "50" in page and order.client_order_id in page
    hold(paper, btc_rules, "2", price="100")
    page = alice_client.get("/trades/positions/").content.decode()
    assert "20" in page  # (110 - 100) x 2 unrealised


def test_risk_events_page(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    order = open_order(paper, btc_rules, "buy", "1", status="rejected")
    RiskEvent.objects.create(account=paper, order=order, code="max_position", message="The position would be too big.")
    page = alice_client.get("/trades/risk-events/").content.decode()
    assert "max_position" in page and "The position would be too big." in page


def test_manual_order_form_places_an_order(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    assert alice_client.get("/trades/new/").status_code == 200
    response = alice_client.post(
        "/trades/new/",
        {"account": paper.pk, "instrument": btc_rules.pk, "side": "buy", "type": "market", "quantity": "1"},
    )
    order = Order.objects.get(account=paper)
    assert response.status_code == 302 and response["Location"] == f"/trades/{order.pk}/"
    assert order.source == "manual" and order.created_by is not None


def test_manual_order_form_errors_at_the_field_values_kept(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    response = alice_client.post(
        "/trades/new/",
        {"account": paper.pk, "instrument": btc_rules.pk, "side": "buy", "type": "limit", "quantity": "1.25"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_price_errors"' in page and "needs a price" in page
    assert 'value="1.25"' in page
    assert not Order.objects.exists()


def test_manual_order_refusal_is_shown(alice_client: Client, paper: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    paper.risk_limits = {"max_order_notional": "10"}
    paper.save()
    response = alice_client.post(
        "/trades/new/",
        {"account": paper.pk, "instrument": btc_rules.pk, "side": "buy", "type": "market", "quantity": "1"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="form-errors"' in page and "maximum per order" in page
    assert Order.objects.get(account=paper).status == "rejected"


def test_mallory_sees_nothing(mallory_client: Client, mallory: Any, paper: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    order = open_order(paper, btc_rules, "buy", "1")
    hold(paper, btc_rules, "1")
    RiskEvent.objects.create(account=paper, code="max_position", message="secret")
    assert mallory_client.get(f"/trades/{order.pk}/").status_code == 404
    assert mallory_client.post(f"/trades/{order.pk}/cancel/").status_code == 404
    for path in ("/trades/", "/trades/fills/", "/trades/positions/", "/trades/risk-events/"):
        page = mallory_client.get(path, {"account": paper.pk}).content.decode()
        assert order.client_order_id not in page and "secret" not in page, path
    make_account(mallory, name="Mine")
    response = mallory_client.post(
        "/trades/new/",
        {"account": paper.pk, "instrument": btc_rules.pk, "side": "buy", "type": "market", "quantity": "1"},
    )
    assert response.status_code == 200 and "account" in response.content.decode()
    assert Order.objects.filter(account=paper).count() == 1


def test_pages_need_login(web_client: Client) -> None:
    assert web_client.get("/trades/").status_code == 302
