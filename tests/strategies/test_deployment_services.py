"""Deployment services: validation naming the field, the owner's own account / rule set, the
life cycle with its fence, audit and live events, live trading behind a fresh second factor,
and stop with or without closing positions."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import TradingAccount
from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, ReauthenticationRequired, ValidationFailed
from apps.strategies import services as strategy_services
from apps.strategies.lookahead import LookaheadReport
from apps.strategies.models import Deployment
from apps.strategies.registry import get_strategy
from apps.strategies.services import deployments as services
from apps.strategies.services.deployments import DeploymentStateError
from apps.trades.models import Order, Position
from tests.backtests.platform_support import pushed
from tests.strategies.deploy_support import (
    HISTORY_BARS,
    deployment_kwargs,
    feed_bar,
    market,
    next_bars,
    paper_account,
    ticks_inline,
)

__all__ = ["market", "paper_account", "pushed", "ticks_inline"]


def fields_of(exc: ApplicationError) -> set[str]:
    return set(exc.extra.get("fields", {}))


@pytest.fixture
def live_account(alice: Any) -> TradingAccount:
    return TradingAccount.objects.create(
        owner=alice, name="Binance", kind=TradingAccount.Kind.CCXT, exchange_id="binance"
    )


def test_create_stores_a_validated_draft(market: Any, paper_account: Any) -> None:
    deployment = services.deployment_create(
        **deployment_kwargs(market, paper_account, risk={"max_drawdown": 0.2, "max_order_notional": 500})
    )
    assert deployment.status == Deployment.Status.DRAFT
    assert list(deployment.instruments.all()) == [market]
    assert deployment.settings["sizing"]["mode"] == "fixed_fraction"
    assert deployment.settings["exits"]["stop_loss"] is None  # complete: defaults filled in
    assert "cash" not in deployment.settings
    assert deployment.risk == {"max_drawdown": 0.2, "max_order_notional": "500"}
    assert AuditEvent.objects.filter(action="deployment.created", target_id=str(deployment.pk)).exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"strategy_key": "nope"}, "strategy"),
        ({"strategy_key": "sma_cross", "params": {"fast": 50, "slow": 20}}, "params.fast"),
        ({"settings": {"exits": {"stop_loss": 2}}}, "settings.exits.stop_loss"),
        ({"settings": {"cash": 5}}, "settings.cash"),
        ({"settings": {"costs": {"funding": 0.01}}}, "settings.costs.funding"),
        ({"risk": {"max_drawdown": 3}}, "risk.max_drawdown"),
        ({"risk": {"unknown": 1}}, "risk.unknown"),
        ({"capital": "0"}, "capital"),
        ({"capital": "lots"}, "capital"),
        ({"instrument_ids": []}, "instrument_ids"),
        ({"instrument_ids": [999999]}, "instrument_ids"),
        ({"timeframe": "7m"}, "timeframe"),
        ({"name": "x" * 200}, "name"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(
    market: Any, paper_account: Any, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        services.deployment_create(**deployment_kwargs(market, paper_account, **overrides))
    assert caught.value.status_code == 400
    assert field in fields_of(caught.value)
    assert not Deployment.objects.exists()


def test_create_refuses_another_users_account_and_rule_set(market: Any, paper_account: Any, bob: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        services.deployment_create(**{**deployment_kwargs(market, paper_account), "owner": bob})
    assert "account_id" in fields_of(caught.value)
    rules = {
        "version": 1,
        "enter_long": {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}},
    }
    rule_set = strategy_services.rule_set_create(owner=paper_account.owner, name="mine", rules=rules)
    from apps.accounts.services import account_connect_paper

    bobs = account_connect_paper(owner=bob, name="Bob paper", balances={"USDT": Decimal("1000")})
    with pytest.raises(ValidationFailed) as caught:
        services.deployment_create(**deployment_kwargs(market, bobs, strategy_key="", rule_set_id=rule_set.pk))
    assert "rule_set_id" in fields_of(caught.value)


def test_create_refuses_a_lookahead_biased_configuration(market: Any, paper_account: Any) -> None:
    strategy = get_strategy("sma_cross", {"fast": 5, "slow": 20})
    report = LookaheadReport(
        is_biased=True,
        columns=("enter_long",),
        bars=("2021-01-01T00:00:00+00:00",),
        checked=40,
        biased_truncations=3,
        message="peeks",
    )
    strategy_services.lookahead_verdict_record(strategy=strategy, report=report)
    with pytest.raises(ValidationFailed) as caught:
        services.deployment_create(
            **deployment_kwargs(market, paper_account, strategy_key="sma_cross", params={"fast": 5, "slow": 20})
        )
    assert caught.value.code == "lookahead_biased"


def test_the_life_cycle_raises_the_fence_audits_and_tells_the_owner(
    market: Any, paper_account: Any, pushed: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    fences = [deployment.fence]
    with django_capture_on_commit_callbacks(execute=True):
        for step in (
            lambda d: services.deployment_start(deployment=d, mode="paper"),
            lambda d: services.deployment_pause(deployment=d),
            lambda d: services.deployment_resume(deployment=d),
            lambda d: services.deployment_stop(deployment=d),
        ):
            deployment = step(deployment)
            fences.append(deployment.fence)
    assert fences == sorted(set(fences)), "every change raises the fence"
    assert deployment.status == Deployment.Status.STOPPED and deployment.stopped_at is not None
    statuses = [e["status"] for e in pushed.of(paper_account.owner, "deployment.status")]
    assert statuses == ["paper", "paused", "paper", "stopped"]
    actions = set(AuditEvent.objects.filter(target_id=str(deployment.pk)).values_list("action", flat=True))
    assert {"deployment.started", "deployment.paused", "deployment.resumed", "deployment.stopped"} <= actions


def test_start_sets_the_last_bar_so_history_is_not_traded(market: Any, paper_account: Any) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    assert deployment.last_bar_ts == market.series.get(timeframe="1m").last_ts


def test_a_running_deployment_cannot_be_edited_or_deleted(market: Any, paper_account: Any) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    with pytest.raises(DeploymentStateError):
        services.deployment_update(deployment=deployment, capital="5000")
    with pytest.raises(DeploymentStateError):
        services.deployment_delete(deployment=deployment)
    paused = services.deployment_pause(deployment=deployment)
    updated = services.deployment_update(deployment=paused, capital="5000", settings={"exits": {"stop_loss": 0.02}})
    assert updated.capital == Decimal("5000") and updated.settings["exits"]["stop_loss"] == 0.02
    with pytest.raises(ValidationFailed) as caught:
        services.deployment_update(deployment=updated, account_id=paper_account.pk + 1000)
    assert "account_id" in fields_of(caught.value)


def test_a_draft_is_deleted(market: Any, paper_account: Any) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    services.deployment_delete(deployment=deployment)
    assert not Deployment.objects.exists()


def test_paper_mode_needs_a_paper_account_and_live_a_real_one(
    market: Any, paper_account: Any, live_account: TradingAccount
) -> None:
    on_paper = services.deployment_create(**deployment_kwargs(market, paper_account))
    with pytest.raises(ValidationFailed) as caught:
        services.deployment_start(deployment=on_paper, mode="live")
    assert "mode" in fields_of(caught.value)
    on_live = services.deployment_create(**deployment_kwargs(market, live_account, name="live"))
    with pytest.raises(ValidationFailed):
        services.deployment_start(deployment=on_live, mode="paper")


def test_live_needs_a_fresh_second_factor(
    market: Any, live_account: TradingAccount, alice: Any, enable_2fa: Any, rf: Any
) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    from tests.users.steps import FRESH_SECONDS

    deployment = services.deployment_create(**deployment_kwargs(market, live_account))
    with pytest.raises(ReauthenticationRequired):
        services.deployment_start(deployment=deployment, mode="live", request=None)
    device = enable_2fa(alice)
    request = rf.post("/")
    request.session = SessionStore()
    request.user = alice
    import time

    from django.contrib.auth import SESSION_KEY
    from django_otp import DEVICE_ID_SESSION_KEY

    from apps.users.second_factor import VERIFIED_AT_SESSION_KEY

    request.session[SESSION_KEY] = str(alice.pk)
    request.session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    request.session[VERIFIED_AT_SESSION_KEY] = time.time() - FRESH_SECONDS - 5
    with pytest.raises(ReauthenticationRequired):
        services.deployment_start(deployment=deployment, mode="live", request=request)
    request.session[VERIFIED_AT_SESSION_KEY] = time.time()
    started = services.deployment_start(deployment=deployment, mode="live", request=request)
    assert started.status == Deployment.Status.LIVE


def test_stop_with_close_positions_closes_at_market(
    market: Any, paper_account: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account, strategy_key="test_always_long"))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    bars = next_bars(2)
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    feed_bar(market, bars.iloc[1:2], django_capture_on_commit_callbacks)
    assert Position.objects.get(deployment=deployment).quantity > 0
    with django_capture_on_commit_callbacks(execute=True):
        stopped = services.deployment_stop(deployment=deployment, close_positions=True)
    assert stopped.status == Deployment.Status.STOPPED
    close = Order.objects.get(deployment=deployment, leg="close")
    assert close.reduce_only and close.side == "sell"
    assert close.quantity == Position.objects.get(deployment=deployment).quantity
    assert HISTORY_BARS  # the history the ticks saw


def test_halt_goes_through_the_kill_switch(
    market: Any, paper_account: Any, pushed: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    with django_capture_on_commit_callbacks(execute=True):
        halted = services.deployment_halt(deployment=deployment, reason="max drawdown")
    assert halted.status == Deployment.Status.HALTED and halted.status_reason == "max drawdown"
    assert pushed.of(paper_account.owner, "deployment.status")[-1]["status"] == "halted"
    resumed = services.deployment_resume(deployment=halted)
    assert resumed.status == Deployment.Status.PAPER
