"""Kill switch services: platform / account / deployment, each audited, told to the owner
(RiskEvent + trade.switch push), and on HALTED the open orders cancelled after commit (cancels
always go through: the risk checks never see a cancel)."""

import sys
import types
from typing import Any

import pytest

from apps.accounts.models import TradingAccount
from apps.audit.models import AuditEvent
from apps.strategies.models import Deployment
from apps.trades.errors import TradingHaltedError
from apps.trades.models import Order, PlatformSwitch, RiskEvent
from apps.trades.risk import switches
from tests.trades.risk_fixtures import btc_rules, check, make_account, open_order, paper, running

__all__ = ["btc_rules", "paper", "running"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def cancelled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the order_cancel calls the switch makes after commit (execution's own tests
    cover what order_cancel then does at the venue)."""
    calls: list[int] = []

    def record(*, order: Order, actor: Any = None) -> None:
        calls.append(order.pk)

    try:
        from apps.trades.services import orders

        monkeypatch.setattr(orders, "order_cancel", record)
    except ImportError:
        stand_in = types.ModuleType("apps.trades.services.orders")
        stand_in.order_cancel = record  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "apps.trades.services.orders", stand_in)
    return calls


def test_platform_halt(
    paper: TradingAccount,
    btc_rules: Any,
    running: Deployment,
    staff: Any,
    bob: Any,
    cancelled: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    other = make_account(bob, name="Bob's")
    resting = open_order(paper, btc_rules, "buy", "1", deployment=running)
    partly = open_order(other, btc_rules, "sell", "1", status=Order.Status.PARTIALLY_FILLED)
    open_order(paper, btc_rules, "buy", "1", status=Order.Status.FILLED)
    with django_capture_on_commit_callbacks(execute=True):
        switch = switches.platform_switch_set(mode="halted", reason="exchange incident", actor=staff)
    assert (switch.mode, switch.reason, switch.changed_by) == ("halted", "exchange incident", staff)
    assert sorted(cancelled) == sorted([resting.pk, partly.pk])
    assert AuditEvent.objects.filter(action="trading.platform_switch", actor=staff).exists()
    assert set(RiskEvent.objects.filter(code="kill_switch", kind="halted").values_list("account_id", flat=True)) == {
        paper.pk,
        other.pk,
    }
    with pytest.raises(TradingHaltedError):
        check(paper, btc_rules, "buy", "1")
    with django_capture_on_commit_callbacks(execute=True):
        switches.platform_switch_set(mode="active", reason="", actor=staff)
    assert PlatformSwitch.objects.get(pk=1).mode == "active"
    check(paper, btc_rules, "buy", "1")


def test_platform_reduce_only_cancels_nothing(
    paper: TradingAccount, btc_rules: Any, staff: Any, cancelled: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    open_order(paper, btc_rules, "buy", "1")
    with django_capture_on_commit_callbacks(execute=True):
        switches.platform_switch_set(mode="reduce_only", reason="", actor=staff)
    assert cancelled == []
    assert RiskEvent.objects.get(account=paper).kind == "alert"


def test_account_switch(
    paper: TradingAccount,
    btc_rules: Any,
    bob: Any,
    alice: Any,
    cancelled: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    mine = open_order(paper, btc_rules, "buy", "1")
    other = make_account(bob, name="Bob's")
    open_order(other, btc_rules, "buy", "1")
    with django_capture_on_commit_callbacks(execute=True):
        account = switches.account_switch_set(account_id=paper.pk, mode="halted", reason="suspicious", actor=alice)
    assert (account.trading_state, account.trading_state_reason) == ("halted", "suspicious")
    assert cancelled == [mine.pk]
    assert AuditEvent.objects.filter(action="account.trading_state_changed").exists()
    assert RiskEvent.objects.filter(account=paper, code="kill_switch").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        switches.account_switch_set(account_id=paper.pk, mode="reduce_only", reason="", actor=alice)
    paper.refresh_from_db()
    assert paper.trading_state == "reduce_only"


def test_deployment_switch(
    paper: TradingAccount,
    btc_rules: Any,
    running: Deployment,
    alice: Any,
    cancelled: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    stop = open_order(paper, btc_rules, "sell", "1", deployment=running, reduce_only=True)
    open_order(paper, btc_rules, "buy", "1")  # manual: not this deployment's
    fence = running.fence
    with django_capture_on_commit_callbacks(execute=True):
        deployment = switches.deployment_switch_set(
            deployment_id=running.pk, mode="reduce_only", reason="winding down", actor=alice
        )
    assert deployment.is_reduce_only and deployment.status == "paper" and deployment.fence == fence + 1
    assert cancelled == []
    with django_capture_on_commit_callbacks(execute=True):
        deployment = switches.deployment_switch_set(deployment_id=running.pk, mode="halted", reason="", actor=alice)
    assert deployment.status == "halted"
    assert cancelled == [stop.pk]
    assert AuditEvent.objects.filter(action="deployment.switch").count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        deployment = switches.deployment_switch_set(deployment_id=running.pk, mode="active", reason="", actor=alice)
    assert (deployment.status, deployment.is_reduce_only) == ("paused", False)


def test_bad_mode_and_missing_rows(paper: TradingAccount, staff: Any) -> None:
    from apps.common.errors import NotFound, ValidationFailed

    with pytest.raises(ValidationFailed):
        switches.platform_switch_set(mode="off", reason="", actor=staff)
    with pytest.raises(NotFound):
        switches.account_switch_set(account_id=999999, mode="halted", reason="", actor=staff)
    with pytest.raises(NotFound):
        switches.deployment_switch_set(deployment_id=999999, mode="halted", reason="", actor=staff)


def test_switch_pushes_to_the_owner(paper: TradingAccount, alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(switches, "broadcast", lambda user_id, event, data: pushed.append((user_id, event, data)))
    switches.account_switch_set(account_id=paper.pk, mode="reduce_only", reason="x", actor=alice)
    assert (alice.pk, "trade.switch") in [(u, e) for u, e, _ in pushed]
