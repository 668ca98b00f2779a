"""Account services: connect paper / exchange / IB, the withdraw-permission refusal against
FakeVenue (ccxt over real HTTP), fresh second factor for live accounts, update, disable, the
kill-switch state, needs-reconnect, and the connection test (the worker's side)."""

from decimal import Decimal
from typing import Any

import pytest
from django.test import RequestFactory

from apps.accounts import crypto, services, tasks
from apps.accounts.models import PaperBalance, TradingAccount
from apps.accounts.signals import account_status_changed
from apps.audit.models import AuditEvent
from apps.common.errors import Conflict, NotFound, ReauthenticationRequired, ValidationFailed
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


def fresh_request(user: Any, device: Any, *, seconds_ago: float = 0) -> Any:
    """A request whose session passed the second factor `seconds_ago`."""
    client = session_client(user, device, seconds_ago=seconds_ago, api=False)
    request = RequestFactory().post("/")
    request.session = client.session
    request.user = user
    return request


def connect_exchange(user: Any, request: Any, **overrides: Any) -> TradingAccount:
    kwargs: dict[str, Any] = {
        "owner": user,
        "request": request,
        "name": "Binance",
        "exchange_id": "binance",
        "api_key": API_KEY,
        "secret": CANARY_SECRET,
    }
    kwargs.update(overrides)
    return services.account_connect_exchange(**kwargs)


# --- paper --------------------------------------------------------------------------------------


def test_connect_paper_funds_balances_and_validates_costs(alice, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        account = services.account_connect_paper(
            owner=alice, name="  My   paper ", balances={"usdt": Decimal("10000"), "BTC": "0.5"}, costs={"fee": 0.002}
        )
    assert account.name == "My paper"
    assert account.kind == "paper" and account.credentials_encrypted == "" and not account.is_live
    assert {b.asset: b.free for b in PaperBalance.objects.filter(account=account)} == {
        "USDT": Decimal("10000"),
        "BTC": Decimal("0.5"),
    }
    assert account.connection["costs"]["fee"] == 0.002
    assert sent.calls == [(account.pk,)]
    assert AuditEvent.objects.filter(action="account.connected", target_id=str(account.pk)).exists()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"name": ""}, "name"),
        ({"balances": {}}, "balances"),
        ({"balances": {"USDT": "-1"}}, "balances.USDT"),
        ({"balances": {"USDT": "lots"}}, "balances.USDT"),
        ({"balances": {"US DT": "1"}}, "balances"),
        ({"balances": {"USDT": "0"}}, "balances"),
        ({"costs": {"fee": 2}}, "costs.fee"),
        ({"costs": {"nonsense": 1}}, "costs.nonsense"),
        ({"base_currency": "not a currency"}, "base_currency"),
    ],
)
def test_connect_paper_refuses_bad_input_naming_the_field(alice, kwargs, field):
    arguments: dict[str, Any] = {"owner": alice, "name": "Paper", "balances": {"USDT": "100"}, **kwargs}
    with pytest.raises(ValidationFailed) as error:
        services.account_connect_paper(**arguments)
    assert field in error.value.extra["fields"], error.value.extra
    assert not TradingAccount.objects.exists()


def test_account_names_are_unique_per_owner(alice, bob):
    services.account_connect_paper(owner=alice, name="Main", balances={"USDT": "1"})
    services.account_connect_paper(owner=bob, name="Main", balances={"USDT": "1"})
    with pytest.raises(ValidationFailed) as error:
        services.account_connect_paper(owner=alice, name="Main", balances={"USDT": "1"})
    assert error.value.code == "duplicate_name"


# --- exchange: second factor, permissions ---------------------------------------------------------


def test_connect_exchange_without_fresh_second_factor_is_refused(alice, alice_device, venue, fernet_key):
    for request in (None, fresh_request(alice, alice_device, seconds_ago=16 * 60)):
        with pytest.raises(ReauthenticationRequired) as error:
            connect_exchange(alice, request)
        assert error.value.code == "reauth_required"
    assert venue.requests == []  # not even asked
    assert not TradingAccount.objects.exists()


def test_connect_exchange_needs_the_callers_own_verified_session(alice, bob, alice_device, venue, fernet_key):
    # bob's request carrying alice's verified session does not count for bob
    request = fresh_request(alice, alice_device)
    request.user = bob
    with pytest.raises(ReauthenticationRequired):
        connect_exchange(bob, request)


def test_trade_only_key_is_stored_encrypted_with_a_masked_hint(
    alice, alice_device, venue, fernet_key, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        account = connect_exchange(alice, fresh_request(alice, alice_device))
    assert account.kind == "ccxt" and account.exchange_id == "binance" and account.is_live
    assert account.credentials_hint == f"key …{API_KEY[-4:]}"
    assert CANARY_SECRET not in account.credentials_encrypted
    assert crypto.decrypt_credentials(account.credentials_encrypted) == {"api_key": API_KEY, "secret": CANARY_SECRET}
    assert account.last_test["permissions"]["can_withdraw"] is False
    assert any(r.path == "/sapi/v1/account/apiRestrictions" for r in venue.requests)
    # the queued test carries the id only
    assert sent.calls == [(account.pk,)]
    event = AuditEvent.objects.get(action="account.connected", target_id=str(account.pk))
    assert CANARY_SECRET not in str(event.details) and event.details["hint"] == account.credentials_hint


def test_withdraw_capable_key_is_refused_and_nothing_is_stored(alice, alice_device, venue, fernet_key):
    venue.withdraw_enabled = True
    with pytest.raises(ValidationFailed) as error:
        connect_exchange(alice, fresh_request(alice, alice_device))
    assert error.value.code == "withdraw_permission"
    assert "This key can withdraw funds; create a trade-only key" in error.value.message
    assert "api_key" in error.value.extra["fields"]
    assert not TradingAccount.objects.exists()
    assert not AuditEvent.objects.filter(action="account.connected").exists()


def test_key_the_venue_refuses_is_a_clear_error_and_not_stored(alice, alice_device, venue, fernet_key):
    with pytest.raises(ValidationFailed) as error:
        connect_exchange(alice, fresh_request(alice, alice_device), secret="wrong-secret")
    assert error.value.code == "invalid_credentials"
    assert "refused this key" in error.value.message
    venue.revoked_key = True
    with pytest.raises(ValidationFailed) as error:
        connect_exchange(alice, fresh_request(alice, alice_device))
    assert error.value.code == "invalid_credentials"
    assert not TradingAccount.objects.exists()


def test_unreachable_venue_says_try_again(alice, alice_device, venue, fernet_key):
    venue.rate_limit(30)
    with pytest.raises(ValidationFailed) as error:
        connect_exchange(alice, fresh_request(alice, alice_device))
    assert error.value.code == "venue_unavailable"
    assert not TradingAccount.objects.exists()


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"exchange_id": "not-an-exchange"}, "exchange_id"),
        ({"market_type": "options"}, "market_type"),
        ({"api_key": " "}, "api_key"),
        ({"secret": ""}, "secret"),
        ({"name": ""}, "name"),
    ],
)
def test_connect_exchange_bad_input_names_the_field(alice, alice_device, venue, fernet_key, overrides, field):
    with pytest.raises(ValidationFailed) as error:
        connect_exchange(alice, fresh_request(alice, alice_device), **overrides)
    assert field in error.value.extra["fields"]
    assert venue.requests == []


# --- IB -------------------------------------------------------------------------------------------


def test_connect_ib_needs_fresh_factor_and_stores_no_secret(alice, alice_device, sent, settings):
    with pytest.raises(ReauthenticationRequired):
        services.account_connect_ib(
            owner=alice, request=None, name="IB", host="127.0.0.1", port=4002, client_id=7, account_code="du123"
        )
    account = services.account_connect_ib(
        owner=alice,
        request=fresh_request(alice, alice_device),
        name="IB",
        host="127.0.0.1",
        port=4002,
        client_id=7,
        account_code="du123",
    )
    assert account.kind == "ib" and account.credentials_encrypted == ""
    assert account.connection == {"host": "127.0.0.1", "port": 4002, "client_id": 7, "account_code": "DU123"}
    assert account.credentials_hint == "DU123 at 127.0.0.1:4002"


def test_connect_ib_refuses_hosts_the_operator_does_not_allow(alice, alice_device, settings):
    settings.IB_ALLOWED_HOSTS = ["ib-gateway"]
    with pytest.raises(ValidationFailed) as error:
        services.account_connect_ib(
            owner=alice,
            request=fresh_request(alice, alice_device),
            name="IB",
            host="169.254.169.254",
            port=80,
            client_id=1,
            account_code="U1",
        )
    assert "host" in error.value.extra["fields"]


# --- change ---------------------------------------------------------------------------------------


def test_update_renames_and_validates_risk_limits(alice):
    account = services.account_connect_paper(owner=alice, name="A", balances={"USDT": "100"})
    services.account_connect_paper(owner=alice, name="Taken", balances={"USDT": "100"})
    with pytest.raises(ValidationFailed) as error:
        services.account_update(account=account, actor=alice, name="Taken")
    assert error.value.code == "duplicate_name"
    account = services.account_update(account=account, actor=alice, name="B", risk_limits={"max_open_positions": 3})
    assert account.name == "B" and account.risk_limits == {"max_open_positions": 3}
    with pytest.raises(ValidationFailed) as error:
        services.account_update(account=account, actor=alice, risk_limits={"max_open_positions": -1})
    assert any(str(key).startswith("risk_limits") for key in error.value.extra["fields"])
    with pytest.raises(ValidationFailed):
        services.account_update(account=account, actor=alice, risk_limits={"no_such_limit": 1})
    assert AuditEvent.objects.filter(action="account.updated", target_id=str(account.pk)).count() == 1


def test_disable_wipes_the_secret_frees_the_name_and_is_refused_while_deployments_run(
    alice, alice_device, venue, fernet_key, django_capture_on_commit_callbacks
):
    account = connect_exchange(alice, fresh_request(alice, alice_device), name="Main")
    from apps.strategies.models import Deployment

    deployment = Deployment.objects.create(
        owner=alice, account=account, name="d", strategy_key="sma_cross", timeframe="1h", capital=1000, status="live"
    )
    with pytest.raises(Conflict) as error:
        services.account_disable(account=account, actor=alice)
    assert error.value.code == "deployments_running"
    Deployment.objects.filter(pk=deployment.pk).update(status="stopped")
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    account_status_changed.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            account = services.account_disable(account=account, actor=alice)
    finally:
        account_status_changed.disconnect(receiver)
    assert account.status == "disabled" and account.trading_state == "halted"
    assert account.credentials_encrypted == ""
    assert account.name == f"Main (disabled #{account.pk})"
    assert received and received[0]["status"] == "disabled"
    # the name can be used again
    connect_exchange(alice, fresh_request(alice, alice_device), name="Main")


def test_set_trading_state_and_needs_reconnect_are_idempotent_and_audited(alice):
    account = services.account_connect_paper(owner=alice, name="A", balances={"USDT": "100"})
    services.account_set_trading_state(account_id=account.pk, state="halted", reason="ops", actor=None)
    services.account_set_trading_state(account_id=account.pk, state="halted", reason="ops", actor=None)
    assert AuditEvent.objects.filter(action="account.trading_state_changed").count() == 1
    with pytest.raises(ValidationFailed):
        services.account_set_trading_state(account_id=account.pk, state="nope", reason="", actor=None)
    services.account_mark_needs_reconnect(account_id=account.pk, reason="revoked")
    services.account_mark_needs_reconnect(account_id=account.pk, reason="revoked again")
    account.refresh_from_db()
    assert account.status == "needs_reconnect" and account.status_reason == "revoked"
    assert AuditEvent.objects.filter(action="account.needs_reconnect").count() == 1
    with pytest.raises(NotFound):
        services.account_mark_needs_reconnect(account_id=999_999, reason="x")


# --- test connection ------------------------------------------------------------------------------


def test_connection_test_stores_balances_and_permissions_and_tells_the_owner(
    alice, alice_device, venue, fernet_key, monkeypatch, django_capture_on_commit_callbacks
):
    account = connect_exchange(alice, fresh_request(alice, alice_device))
    pushed: list[tuple[int, str, dict[str, Any]]] = []
    monkeypatch.setattr("apps.common.broadcast.send_now", lambda *args: pushed.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.account_test_connection(account.pk)
    account.refresh_from_db()
    assert account.last_test["ok"] is True
    balances = {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in account.last_test["balances"]}
    assert balances["USDT"] == (Decimal(100000), Decimal(0))
    assert account.last_test["permissions"]["can_withdraw"] is False
    assert account.last_tested_at is not None
    events = [(user_id, event) for user_id, event, _ in pushed]
    assert (alice.pk, "account.tested") in events
    assert all(CANARY_SECRET not in str(data) for _, _, data in pushed)


def test_connection_test_with_a_revoked_key_records_the_failure(alice, alice_device, venue, fernet_key):
    account = connect_exchange(alice, fresh_request(alice, alice_device))
    venue.revoked_key = True
    result = services.account_test_connection(account_id=account.pk)
    assert result["ok"] is False and result["message"]
    account.refresh_from_db()
    assert account.last_test["ok"] is False


def test_connection_test_that_finds_withdrawals_enabled_marks_needs_reconnect(alice, alice_device, venue, fernet_key):
    account = connect_exchange(alice, fresh_request(alice, alice_device))
    venue.withdraw_enabled = True  # enabled at the exchange after connecting
    services.account_test_connection(account_id=account.pk)
    account.refresh_from_db()
    assert account.status == "needs_reconnect"
    assert "can withdraw" in account.status_reason
    venue.withdraw_enabled = False  # fixed at the exchange: a passing test makes it active again
    services.account_test_connection(account_id=account.pk)
    account.refresh_from_db()
    assert account.status == "active"


def test_connection_test_of_a_disabled_or_missing_account_does_nothing(alice):
    account = services.account_connect_paper(owner=alice, name="A", balances={"USDT": "100"})
    services.account_disable(account=account, actor=alice)
    assert services.account_test_connection(account_id=account.pk) == {}
    assert services.account_test_connection(account_id=123_456) == {}


def test_test_request_queues_the_task_with_the_id_only(alice, sent, django_capture_on_commit_callbacks):
    account = services.account_connect_paper(owner=alice, name="A", balances={"USDT": "100"})
    sent.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.account_test_request(account=account, actor=alice)
    assert sent.calls == [(account.pk,)]


def test_the_test_task_runs_on_the_orders_queue():
    task: Any = tasks.account_test_connection
    assert task.queue == "orders"
    assert task.acks_late is True


def test_paper_connection_test_reports_its_balances(alice, django_capture_on_commit_callbacks):
    account = services.account_connect_paper(owner=alice, name="A", balances={"USDT": "250"})
    result = services.account_test_connection(account_id=account.pk)
    assert result["ok"] is True, result
    assert [b["asset"] for b in result["balances"]] == ["USDT"]
