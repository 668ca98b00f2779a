"""Portal pages of trading accounts: the list, connect forms per kind (errors at the input the
service names, values kept, the secret never rendered back), the fresh second factor for live
accounts, the account page (masked key, balances, permissions, test button), edit, replace key,
disable; and mallory gets a 404 everywhere."""

from typing import Any

import pytest
from django.test import Client

from apps.accounts import services
from apps.accounts.models import TradingAccount
from tests.accounts.accounts_support import (
    API_KEY,
    CANARY_SECRET,
    alice_device,
    fernet_key,
    sent,
    session_client,
    venue,
)

pytestmark = pytest.mark.django_db

__all__ = ["alice_device", "fernet_key", "sent", "venue"]


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def fresh_web(alice, alice_device) -> Client:
    client: Client = session_client(alice, alice_device, api=False)
    return client


def exchange_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Binance main",
        "exchange_id": "binance",
        "market_type": "spot",
        "api_key": API_KEY,
        "secret": CANARY_SECRET,
    }
    data.update(overrides)
    return data


def test_list_page_renders_with_links_to_connect(alice):
    services.account_connect_paper(owner=alice, name="My paper", balances={"USDT": "100"})
    page = client_for(alice).get("/accounts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "My paper" in html and "/accounts/connect/exchange/" in html and "/accounts/connect/ib/" in html


def test_list_page_needs_login(web_client):
    assert web_client.get("/accounts/").status_code == 302


def test_allauth_pages_still_live_beside_the_accounts_pages(web_client):
    assert web_client.get("/accounts/login/").status_code == 200


def test_paper_form_creates_an_account_and_redirects_to_it(alice, sent):
    response = client_for(alice).post(
        "/accounts/connect/paper/",
        {"name": "Sim", "base_currency": "USDT", "balances": "USDT 2500\nBTC=0.1", "fee": "0.1", "slippage_bps": "5"},
    )
    account = TradingAccount.objects.get(owner=alice)
    # Its page waits for the first connection test (queued at connect; none has landed yet).
    assert response.status_code == 302 and response["Location"] == f"/accounts/{account.pk}/?testing=0"
    assert account.connection["costs"]["fee"] == pytest.approx(0.001)
    assert account.connection["costs"]["slippage"] == "fixed_bps"
    assert {b.asset for b in account.paper_balances.all()} == {"USDT", "BTC"}


def test_paper_form_errors_are_at_the_input_and_values_are_kept(alice):
    services.account_connect_paper(owner=alice, name="Taken", balances={"USDT": "100"})
    response = client_for(alice).post(
        "/accounts/connect/paper/",
        {"name": "Taken", "base_currency": "USDT", "balances": "USDT 2500", "fee": "0.1", "slippage_bps": "0"},
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "name" in form.errors and "already" in form.errors["name"][0]
    html = response.content.decode()
    assert 'value="Taken"' in html and "USDT 2500" in html
    bad_line = client_for(alice).post(
        "/accounts/connect/paper/",
        {"name": "X", "base_currency": "USDT", "balances": "USDT", "fee": "0.1", "slippage_bps": "0"},
    )
    assert "balances" in bad_line.context["form"].errors


def test_exchange_form_asks_for_a_fresh_factor_first(alice, alice_device, venue, fernet_key):
    stale = session_client(alice, alice_device, seconds_ago=20 * 60, api=False)
    page = stale.get("/accounts/connect/exchange/")
    assert page.status_code == 200
    assert 'id="needs-fresh-2fa"' in page.content.decode()
    response = stale.post("/accounts/connect/exchange/", exchange_form())
    assert response.status_code == 400
    assert "two-factor" in " ".join(response.context["form"].non_field_errors())
    assert not TradingAccount.objects.exists()


def test_exchange_form_connects_with_a_fresh_factor_and_shows_only_the_hint(alice, fresh_web, venue, fernet_key, sent):
    response = fresh_web.post("/accounts/connect/exchange/", exchange_form())
    account = TradingAccount.objects.get(owner=alice)
    assert response.status_code == 302
    services.account_test_connection(account_id=account.pk)
    page = fresh_web.get(f"/accounts/{account.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert account.credentials_hint in html and CANARY_SECRET not in html
    assert 'id="test-connection"' in html and 'id="balances"' in html and "USDT" in html
    assert 'id="permissions"' in html


def test_exchange_form_refuses_a_withdraw_key_at_the_key_input_keeping_values_but_not_the_secret(
    alice, fresh_web, venue, fernet_key
):
    venue.withdraw_enabled = True
    response = fresh_web.post("/accounts/connect/exchange/", exchange_form())
    assert response.status_code == 400
    form = response.context["form"]
    assert "This key can withdraw funds" in form.errors["api_key"][0]
    html = response.content.decode()
    assert 'value="Binance main"' in html and f'value="{API_KEY}"' in html
    assert CANARY_SECRET not in html
    assert not TradingAccount.objects.exists()


def test_ib_form_keeps_values_on_errors(alice, fresh_web):
    response = fresh_web.post(
        "/accounts/connect/ib/",
        {
            "name": "IB",
            "host": "10.0.0.9",
            "port": "4002",
            "client_id": "3",
            "account_code": "DU42",
            "base_currency": "USD",
        },
    )
    assert response.status_code == 400
    assert "host" in response.context["form"].errors
    assert 'value="DU42"' in response.content.decode()
    response = fresh_web.post(
        "/accounts/connect/ib/",
        {
            "name": "IB",
            "host": "127.0.0.1",
            "port": "4002",
            "client_id": "3",
            "account_code": "DU42",
            "base_currency": "USD",
        },
    )
    assert response.status_code == 302


def test_unknown_kind_is_404(alice):
    assert client_for(alice).get("/accounts/connect/crypto-bank/").status_code == 404


def test_test_button_queues_a_test_and_the_page_waits_for_it(alice, sent, django_capture_on_commit_callbacks):
    account = services.account_connect_paper(owner=alice, name="Sim", balances={"USDT": "100"})
    sent.calls.clear()
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/accounts/{account.pk}/test/")
    assert response.status_code == 302 and response["Location"].endswith("?testing=0")
    assert sent.calls == [(account.pk,)]
    page = client.get(response["Location"])
    assert 'id="test-pending"' in page.content.decode() and "account-config" in page.content.decode()
    status = client.get(f"/accounts/{account.pk}/status/").json()
    assert status["id"] == account.pk and status["tested_at"] is None


def test_the_page_says_testing_until_a_newer_result_lands(alice, sent):
    # given: connected, its first test queued (the page was sent to ?testing=0)
    account = services.account_connect_paper(owner=alice, name="Sim", balances={"USDT": "100"})
    client = client_for(alice)
    waiting = client.get(f"/accounts/{account.pk}/?testing=0").content.decode()
    assert '<p id="test-pending" class="muted">' in waiting

    # when: the worker's result lands
    services.account_test_connection(account_id=account.pk)

    # then: the same URL shows the result, no longer "Testing…"
    done = client.get(f"/accounts/{account.pk}/?testing=0").content.decode()
    assert '<p id="test-pending" class="muted" hidden>' in done and 'id="test-result"' in done
    # and its balances as a person writes them (stored with 10 decimal places)
    assert '<td class="num">100</td><td class="num">0</td>' in done and "0E-10" not in done


def test_edit_page_renames_and_shows_risk_limit_errors_at_the_input(alice):
    account = services.account_connect_paper(owner=alice, name="Sim", balances={"USDT": "100"})
    client = client_for(alice)
    response = client.post(
        f"/accounts/{account.pk}/edit/", {"name": "Sim 2", "risk_limits": '{"max_open_positions": -4}'}
    )
    assert response.status_code == 400
    assert "risk_limits" in response.context["form"].errors
    assert "max_open_positions" in response.content.decode()
    response = client.post(f"/accounts/{account.pk}/edit/", {"name": "Sim 2", "risk_limits": "{not json"})
    assert "risk_limits" in response.context["form"].errors
    response = client.post(f"/accounts/{account.pk}/edit/", {"name": "Sim 2", "risk_limits": ""})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "Sim 2"


def test_disable_button_disables_and_the_account_leaves_the_list(alice):
    account = services.account_connect_paper(owner=alice, name="Sim", balances={"USDT": "100"})
    client = client_for(alice)
    assert client.post(f"/accounts/{account.pk}/disable/").status_code == 302
    assert client.get(f"/accounts/{account.pk}/").status_code == 404
    assert "Sim" not in client.get("/accounts/").content.decode()


def test_reconnect_page_replaces_the_key(alice, fresh_web, venue, fernet_key):
    fresh_web.post("/accounts/connect/exchange/", exchange_form())
    account = TradingAccount.objects.get(owner=alice)
    services.account_mark_needs_reconnect(account_id=account.pk, reason="revoked")
    page = fresh_web.get(f"/accounts/{account.pk}/")
    assert 'id="needs-reconnect"' in page.content.decode()
    response = fresh_web.post(f"/accounts/{account.pk}/reconnect/", {"api_key": API_KEY, "secret": CANARY_SECRET})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.status == "active"


def test_mallory_gets_404_on_every_account_page(alice, mallory):
    account = services.account_connect_paper(owner=alice, name="Sim", balances={"USDT": "100"})
    client = client_for(mallory)
    for path in ("", "status/", "edit/", "reconnect/"):
        assert client.get(f"/accounts/{account.pk}/{path}").status_code == 404, path
    for path in ("test/", "disable/", "edit/"):
        assert client.post(f"/accounts/{account.pk}/{path}", {"name": "pwned"}).status_code == 404, path
    assert "Sim" not in client.get("/accounts/").content.decode()
    account.refresh_from_db()
    assert account.name == "Sim" and account.status == "active"
