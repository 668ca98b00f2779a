"""The accounts admin: list, filters, search, read-only detail pages that never show a credential
(only the masked hint), and actions through the services: test connection and the account kill
switch (halt / reduce only / resume)."""

from typing import Any

import pytest

from apps.accounts import services
from apps.accounts.models import TradingAccount
from apps.audit.models import AuditEvent
from tests.accounts.accounts_support import CANARY_SECRET, alice_device, fernet_key, sent, session_client, venue
from tests.factories import UserFactory
from tests.users.steps import verified_client

pytestmark = pytest.mark.django_db

__all__ = ["alice_device", "fernet_key", "sent", "venue"]

LIST = "/admin/accounts/tradingaccount/"


@pytest.fixture
def staff_client(staff, enable_2fa):
    return verified_client(staff, enable_2fa(staff))


@pytest.fixture
def accounts(alice, bob, alice_device, venue, fernet_key, sent):
    client = session_client(alice, alice_device)
    response = client.post(
        "/api/v1/accounts/",
        {
            "kind": "ccxt",
            "name": "Binance main",
            "exchange_id": "binance",
            "api_key": venue.api_key,
            "secret": CANARY_SECRET,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    exchange = TradingAccount.objects.get(pk=response.json()["id"])
    paper = services.account_connect_paper(owner=bob, name="Bob paper", balances={"USDT": "100"})
    return {"exchange": exchange, "paper": paper}


def test_list_and_detail_render_without_credentials(staff_client, accounts, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        listing = staff_client.get(LIST)
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "alice@example.com" in body and "Binance main" in body and "Bob paper" in body
    assert accounts["exchange"].credentials_hint in body
    detail = staff_client.get(f"{LIST}{accounts['exchange'].pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert CANARY_SECRET not in page and CANARY_SECRET not in body
    assert accounts["exchange"].credentials_encrypted not in page
    assert 'name="name"' not in page  # facts, not a form
    assert staff_client.get(f"{LIST}add/").status_code == 403


def test_filters_and_search(staff_client, accounts):
    only_paper = staff_client.get(LIST, {"kind__exact": "paper"}).content.decode()
    assert "Bob paper" in only_paper and "Binance main" not in only_paper
    by_email = staff_client.get(LIST, {"q": "bob@example.com"}).content.decode()
    assert "Bob paper" in by_email and "Binance main" not in by_email
    by_id = staff_client.get(LIST, {"q": str(accounts["exchange"].pk)}).content.decode()
    assert "Binance main" in by_id


def test_kill_switch_actions_set_the_trading_state_and_are_audited(staff_client, staff, accounts):
    ids = [accounts["exchange"].pk, accounts["paper"].pk]
    for action, state in (("halt_trading", "halted"), ("reduce_only", "reduce_only"), ("resume_trading", "active")):
        response = staff_client.post(LIST, {"action": action, "_selected_action": ids})
        assert response.status_code == 302
        assert set(TradingAccount.objects.filter(pk__in=ids).values_list("trading_state", flat=True)) == {state}
    assert AuditEvent.objects.filter(action="account.trading_state_changed", actor=staff).count() == 6


def test_test_connection_action_queues_tests(staff_client, accounts, sent, django_capture_on_commit_callbacks):
    sent.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(LIST, {"action": "test_connection", "_selected_action": [accounts["paper"].pk]})
    assert sent.calls == [(accounts["paper"].pk,)]


def test_staff_without_change_permission_cannot_use_the_actions(accounts, enable_2fa):
    viewer: Any = UserFactory(email="viewer@example.com", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_tradingaccount"))
    client = verified_client(viewer, enable_2fa(viewer))
    assert client.get(LIST).status_code == 200
    client.post(LIST, {"action": "halt_trading", "_selected_action": [accounts["paper"].pk]})
    accounts["paper"].refresh_from_db()
    assert accounts["paper"].trading_state == "active"
