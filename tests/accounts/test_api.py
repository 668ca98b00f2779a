"""The accounts API: connect (paper, ccxt, ib), list, retrieve, PATCH, DELETE (disable), test,
balances, reconnect. Secrets are write-only and never come back, in any body; live accounts need
a session verified with a fresh second factor (a token alone gets 403 reauth_required); the
withdraw-capable key is refused with 400 and nothing stored; mallory sees and changes nothing."""

import json
import logging
from typing import Any

import pytest
from knox.models import get_token_model
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import TradingAccount
from apps.audit.models import AuditEvent
from tests.accounts.accounts_support import (
    API_KEY,
    CANARY_PASSPHRASE,
    CANARY_SECRET,
    alice_device,
    exchange_body,
    fernet_key,
    paper_body,
    sent,
    session_client,
    venue,
)

pytestmark = pytest.mark.django_db

__all__ = ["alice_device", "fernet_key", "sent", "venue"]

URL = "/api/v1/accounts/"
SECRET_WORDS = ("secret", "passphrase", "password", "credentials_encrypted")


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def fresh_alice(alice, alice_device) -> APIClient:
    return session_client(alice, alice_device)


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def assert_no_secret(response: Any) -> None:
    text = response.content.decode()
    assert CANARY_SECRET not in text and CANARY_PASSPHRASE not in text
    if response.get("Content-Type", "").startswith("application/json") and text:
        body = response.json()
        if response.status_code < 400:
            assert not [k for k in keys_of(body) if any(word in k.lower() for word in SECRET_WORDS)], body


@pytest.fixture
def exchange_account(alice, fresh_alice, venue, fernet_key, sent) -> TradingAccount:
    response = fresh_alice.post(URL, exchange_body(), format="json")
    assert response.status_code == 201, response.json()
    return TradingAccount.objects.get(pk=response.json()["id"])


# --- connect ---------------------------------------------------------------------------------------


def test_create_paper_account_returns_201_with_location(alice, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(URL, paper_body(balances={"USDT": "5000", "BTC": "1"}), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"].endswith(f"{URL}{body['id']}/")
    assert body["kind"] == "paper" and body["credentials_hint"] == ""
    assert body["connection"]["costs"]["fee"] == 0.001
    assert sent.calls == [(body["id"],)]


def test_create_exchange_account_with_fresh_factor_never_returns_the_secret(
    alice, fresh_alice, venue, fernet_key, sent, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        response = fresh_alice.post(URL, exchange_body(password=CANARY_PASSPHRASE), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["credentials_hint"] == f"key …{API_KEY[-4:]}"
    assert_no_secret(response)
    for path in (URL, f"{URL}{body['id']}/", f"{URL}{body['id']}/balances/"):
        assert_no_secret(fresh_alice.get(path))
    # the Celery message holds the id only, and no log line carries the secret
    assert sent.calls == [(body["id"],)]
    assert CANARY_SECRET not in json.dumps(sent.calls)
    assert CANARY_SECRET not in caplog.text and CANARY_PASSPHRASE not in caplog.text


def test_create_exchange_account_with_token_only_is_403_reauth_required(alice, venue, fernet_key):
    _, plaintext = get_token_model().objects.create(user=alice, name="bot")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    response = client.post(URL, exchange_body(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauth_required"
    assert_no_secret(response)
    assert not TradingAccount.objects.exists()
    assert venue.requests == []


def test_create_live_account_with_stale_factor_is_403(alice, alice_device, venue, fernet_key):
    client = session_client(alice, alice_device, seconds_ago=16 * 60)
    for body in (
        exchange_body(),
        {"kind": "ib", "name": "IB", "host": "127.0.0.1", "port": 4002, "client_id": 1, "account_code": "DU1"},
    ):
        response = client.post(URL, body, format="json")
        assert response.status_code == 403, response.json()
        assert response.json()["error"]["code"] == "reauth_required"
    assert not TradingAccount.objects.exists()


def test_withdraw_capable_key_is_400_with_the_reason_and_nothing_stored(alice, fresh_alice, venue, fernet_key, caplog):
    caplog.set_level(logging.DEBUG)
    venue.withdraw_enabled = True
    response = fresh_alice.post(URL, exchange_body(), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "withdraw_permission"
    assert "This key can withdraw funds; create a trade-only key" in error["message"]
    assert_no_secret(response)
    assert not TradingAccount.objects.exists()
    assert CANARY_SECRET not in caplog.text


def test_wrong_key_is_400_and_nothing_stored(alice, fresh_alice, venue, fernet_key):
    response = fresh_alice.post(URL, exchange_body(secret="not-the-secret"), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert not TradingAccount.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "futures"}, "kind"),
        ({}, "kind"),
        (paper_body(owner=2), "owner"),
        (paper_body(status="active"), "status"),
        (paper_body(credentials_encrypted="x"), "credentials_encrypted"),
        (paper_body(balances="lots"), "balances"),
        (paper_body(balances={"USDT": "-5"}), "balances.USDT"),
        (paper_body(name=""), "name"),
        (exchange_body(exchange_id="nope"), "exchange_id"),
        (exchange_body(is_staff=True), "is_staff"),
    ],
)
def test_create_bad_input_is_400_naming_the_field(alice, fresh_alice, venue, fernet_key, body, field):
    response = fresh_alice.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert_no_secret(response)
    assert not TradingAccount.objects.exists()


# --- read and change -----------------------------------------------------------------------------


def test_list_is_the_callers_own_and_filters_by_kind(alice, bob, exchange_account, django_assert_max_num_queries):
    services.account_connect_paper(owner=alice, name="Paper", balances={"USDT": "1"})
    services.account_connect_paper(owner=bob, name="Bob's", balances={"USDT": "1"})
    client = client_for(alice)
    with django_assert_max_num_queries(6):
        body = client.get(URL).json()
    assert body["count"] == 2 and {a["name"] for a in body["results"]} == {"Paper", "Binance main"}
    assert [a["kind"] for a in client.get(URL, {"kind": "ccxt"}).json()["results"]] == ["ccxt"]


def test_patch_name_and_risk_limits(alice, exchange_account):
    client = client_for(alice)
    response = client.patch(
        f"{URL}{exchange_account.pk}/", {"name": "Renamed", "risk_limits": {"max_open_positions": 2}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Renamed" and response.json()["risk_limits"] == {"max_open_positions": 2}
    response = client.patch(f"{URL}{exchange_account.pk}/", {"risk_limits": {"max_open_positions": -1}}, format="json")
    assert response.status_code == 400
    for forbidden in ({"credentials_hint": "x"}, {"secret": "x"}, {"owner": 1}, {"status": "active"}):
        response = client.patch(f"{URL}{exchange_account.pk}/", forbidden, format="json")
        assert response.status_code == 400, forbidden


def test_delete_disables_and_is_409_while_a_deployment_runs(alice, exchange_account):
    from apps.strategies.models import Deployment

    client = client_for(alice)
    deployment = Deployment.objects.create(
        owner=alice,
        account=exchange_account,
        name="d",
        strategy_key="sma_cross",
        timeframe="1h",
        capital=1,
        status="paper",
    )
    response = client.delete(f"{URL}{exchange_account.pk}/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "deployments_running"
    Deployment.objects.filter(pk=deployment.pk).update(status="stopped")
    assert client.delete(f"{URL}{exchange_account.pk}/").status_code == 204
    exchange_account.refresh_from_db()
    assert exchange_account.status == "disabled" and exchange_account.credentials_encrypted == ""
    assert client.get(f"{URL}{exchange_account.pk}/").status_code == 404
    assert client.get(URL).json()["count"] == 0


def test_test_is_202_and_queues_the_id_only(alice, exchange_account, sent, django_capture_on_commit_callbacks):
    sent.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(f"{URL}{exchange_account.pk}/test/")
    assert response.status_code == 202
    assert response.json() == {"queued": True, "account_id": exchange_account.pk}
    assert sent.calls == [(exchange_account.pk,)]


def test_balances_returns_the_last_test(alice, exchange_account):
    services.account_test_connection(account_id=exchange_account.pk)
    response = client_for(alice).get(f"{URL}{exchange_account.pk}/balances/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["tested_at"]
    assert "USDT" in {b["asset"] for b in body["balances"]}
    assert body["permissions"]["can_withdraw"] is False
    assert_no_secret(response)


def test_reconnect_replaces_the_key_after_needs_reconnect(alice, fresh_alice, exchange_account, venue):
    services.account_mark_needs_reconnect(account_id=exchange_account.pk, reason="revoked")
    response = fresh_alice.post(
        f"{URL}{exchange_account.pk}/reconnect/", {"api_key": API_KEY, "secret": CANARY_SECRET}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "active"
    assert_no_secret(response)
    response = client_for(alice).post(
        f"{URL}{exchange_account.pk}/reconnect/", {"api_key": API_KEY, "secret": CANARY_SECRET}, format="json"
    )
    assert response.status_code == 403  # a forced (token-like) login has no fresh factor


# --- the outsider --------------------------------------------------------------------------------


def test_mallory_sees_and_changes_nothing(alice, mallory, exchange_account, sent):
    client = client_for(mallory)
    base = f"{URL}{exchange_account.pk}/"
    assert client.get(URL).json()["count"] == 0
    calls = [
        ("get", base, None),
        ("patch", base, {"name": "pwned", "risk_limits": {}}),
        ("delete", base, None),
        ("post", f"{base}test/", None),
        ("get", f"{base}balances/", None),
        ("post", f"{base}reconnect/", {"api_key": "x", "secret": "y"}),
    ]
    sent.calls.clear()
    for method, path, data in calls:
        response = getattr(client, method)(path, data, format="json")
        assert response.status_code == 404, (method, path, response.status_code)
        assert_no_secret(response)
    exchange_account.refresh_from_db()
    assert exchange_account.name == "Binance main" and exchange_account.status == "active"
    assert sent.calls == []
    assert not AuditEvent.objects.filter(actor=mallory).exists()
