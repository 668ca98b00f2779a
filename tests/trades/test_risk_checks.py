"""Pre-trade risk checks: every limit refuses with its stable code and a RiskEvent records the
refusal; the kill switches at three levels (halted refuses everything, reduce-only accepts a
reducing order and refuses an increasing one); loss limits pause and halt."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import TradingAccount
from apps.marketdata.models import Candle, CandleSeries
from apps.strategies.models import Deployment
from apps.trades.errors import RiskRefusedError, TradingHaltedError
from apps.trades.models import Order, PlatformSwitch, RiskEvent
from apps.trades.risk.checks import deployment_loss_check, risk_refusal_record, trading_blocked
from tests.trades.risk_fixtures import (
    btc_rules,
    check,
    hold,
    make_account,
    make_deployment,
    make_instrument,
    open_order,
    paper,
    running,
)

__all__ = ["btc_rules", "paper", "running"]
pytestmark = pytest.mark.django_db
D = Decimal


def refused(code: str, *args: Any, **kwargs: Any) -> RiskRefusedError:
    with pytest.raises(RiskRefusedError) as caught:
        check(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    assert caught.value.status_code == 422
    assert caught.value.message
    return caught.value


def test_no_limits_accepts(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    check(paper, btc_rules, "buy", "5", deployment=running)
    check(paper, btc_rules, "sell", "5")


# --- limits --------------------------------------------------------------------------------------


def test_max_order_notional_deployment_and_account(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    running.risk = {"max_order_notional": "1000"}
    running.save()
    check(paper, btc_rules, "buy", "10", deployment=running)  # exactly 1,000
    error = refused("max_order_notional", paper, btc_rules, "buy", "10.01", deployment=running)
    assert error.extra["scope"] == "deployment"
    paper.risk_limits = {"max_order_notional": "500"}
    paper.save()
    error = refused("max_order_notional", paper, btc_rules, "sell", "6")  # manual order
    assert error.extra["scope"] == "account"
    assert error.extra["limit"] == "500"


def test_max_position_counts_position_and_open_orders(
    paper: TradingAccount, btc_rules: Any, running: Deployment
) -> None:
    running.risk = {"max_position_notional": "2000"}
    running.save()
    hold(paper, btc_rules, "10", deployment=running)
    open_order(paper, btc_rules, "buy", "5", deployment=running)
    check(paper, btc_rules, "buy", "5", deployment=running)  # 10 + 5 + 5 = 20 units = 2,000
    refused("max_position", paper, btc_rules, "buy", "5.5", deployment=running)
    # A reduce-only open order and a cancelled one do not add.
    open_order(paper, btc_rules, "buy", "50", deployment=running, reduce_only=True)
    open_order(paper, btc_rules, "buy", "50", deployment=running, status=Order.Status.CANCELLED)
    check(paper, btc_rules, "buy", "5", deployment=running)


def test_max_position_on_the_short_side(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    running.risk = {"max_position_notional": "1000"}
    running.save()
    check(paper, btc_rules, "sell", "10", deployment=running)
    refused("max_position", paper, btc_rules, "sell", "10.5", deployment=running)


def test_account_max_position_applies_to_manual_positions(paper: TradingAccount, btc_rules: Any) -> None:
    paper.risk_limits = {"max_position_notional": "1000"}
    paper.save()
    hold(paper, btc_rules, "8")
    refused("max_position", paper, btc_rules, "buy", "3")
    check(paper, btc_rules, "buy", "2")


def test_max_symbol_exposure_sums_deployments_and_manual(
    paper: TradingAccount, btc_rules: Any, running: Deployment
) -> None:
    other = make_deployment(paper, btc_rules, name="Other")
    paper.risk_limits = {"max_symbol_exposure": "3000"}
    paper.save()
    hold(paper, btc_rules, "10", deployment=running)
    hold(paper, btc_rules, "-10", deployment=other)  # a short counts at its absolute value
    check(paper, btc_rules, "buy", "10")  # manual: 10 + 10 + 10 = 3,000
    refused("max_symbol_exposure", paper, btc_rules, "buy", "10.5")
    eth = make_instrument("ETH/USDT")
    check(paper, eth, "buy", "29", price="100")  # 2,900: the BTC positions do not count


def test_max_exposure_marks_other_symbols_at_their_last_close(paper: TradingAccount, btc_rules: Any) -> None:
    eth = make_instrument("ETH/USDT")
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    Candle.objects.create(instrument=eth, timeframe="1h", ts=ts, open=50, high=50, low=50, close=50, volume=1)
    CandleSeries.objects.create(instrument=eth, timeframe="1h", first_ts=ts, last_ts=ts, count=1)
    hold(paper, eth, "20", price="10")  # worth 1,000 at the last close (not 200 at the entry)
    paper.risk_limits = {"max_exposure_notional": "2000"}
    paper.save()
    check(paper, btc_rules, "buy", "10")
    error = refused("max_exposure", paper, btc_rules, "buy", "10.01")
    assert D(error.extra["value"]) == D("2001.00")


def test_deployment_max_exposure(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    eth = make_instrument("ETH/USDT")
    running.risk = {"max_exposure_notional": "1500"}
    running.save()
    hold(paper, eth, "10", deployment=running, price="100")
    hold(paper, eth, "100", price="100")  # the manual position is not the deployment's
    check(paper, btc_rules, "buy", "5", deployment=running)
    refused("max_exposure", paper, btc_rules, "buy", "5.01", deployment=running)


def test_max_open_positions(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    eth, sol = make_instrument("ETH/USDT"), make_instrument("SOL/USDT")
    running.risk = {"max_open_positions": 2}
    running.save()
    hold(paper, btc_rules, "1", deployment=running)
    open_order(paper, eth, "buy", "1", deployment=running)  # a pending entry counts
    refused("max_open_positions", paper, sol, "buy", "1", deployment=running)
    check(paper, btc_rules, "buy", "1", deployment=running)  # adding to a held one is fine
    paper.risk_limits = {"max_open_positions": 1}
    paper.save()
    error = refused("max_open_positions", paper, sol, "buy", "1")
    assert error.extra["scope"] == "account"


def test_max_orders_per_minute(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    running.risk = {"max_orders_per_minute": 2}
    running.save()
    open_order(paper, btc_rules, "buy", "1", deployment=running, status=Order.Status.FILLED)
    open_order(paper, btc_rules, "buy", "1", deployment=running, status=Order.Status.REJECTED)  # not counted
    check(paper, btc_rules, "buy", "1", deployment=running)
    open_order(paper, btc_rules, "buy", "1", deployment=running, status=Order.Status.FILLED)
    refused("max_orders_per_minute", paper, btc_rules, "buy", "1", deployment=running)
    Order.objects.update(created_at=datetime.now(UTC) - timedelta(minutes=2))
    check(paper, btc_rules, "buy", "1", deployment=running)


def test_insufficient_balance_from_last_known_balances(alice: Any, btc_rules: Any) -> None:
    account = make_account(
        alice,
        name="Binance",
        kind="ccxt",
        last_test={"balances": [{"asset": "USDT", "free": "500", "locked": "0"}, {"asset": "BTC", "free": "1"}]},
    )
    check(account, btc_rules, "buy", "5")
    refused("insufficient_balance", account, btc_rules, "buy", "5.01")
    check(account, btc_rules, "sell", "1")
    refused("insufficient_balance", account, btc_rules, "sell", "1.5")
    no_balances = make_account(alice, name="Binance 2", kind="ccxt")
    check(no_balances, btc_rules, "buy", "1000")  # nothing known: the venue judges


def test_reducing_orders_pass_every_limit(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    running.risk = {"max_order_notional": "10", "max_position_notional": "10", "max_orders_per_minute": 1}
    running.save()
    hold(paper, btc_rules, "100", deployment=running)
    open_order(paper, btc_rules, "buy", "1", deployment=running, status=Order.Status.FILLED)
    check(paper, btc_rules, "sell", "100", deployment=running, reduce_only=True)
    check(paper, btc_rules, "sell", "40", deployment=running)
    refused("max_order_notional", paper, btc_rules, "sell", "101", deployment=running)  # flips: not reducing


def test_reduce_only_intent_that_does_not_reduce(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    refused("reduce_only", paper, btc_rules, "sell", "1", deployment=running, reduce_only=True)  # flat
    hold(paper, btc_rules, "2", deployment=running)
    refused("reduce_only", paper, btc_rules, "buy", "1", deployment=running, reduce_only=True)  # same side
    refused("reduce_only", paper, btc_rules, "sell", "3", deployment=running, reduce_only=True)  # more
    check(paper, btc_rules, "sell", None, deployment=running, reduce_only=True)  # no quantity: the position


def test_sized_at_fill_entries_are_counted_by_their_estimate(
    paper: TradingAccount, btc_rules: Any, running: Deployment
) -> None:
    running.risk = {"max_order_notional": "1500"}
    running.save()
    sizing = {"mode": "fixed_fraction", "equity": 10000.0, "fraction": 0.1, "fee": 0.001, "maker_fee": 0.001}
    check(paper, btc_rules, "buy", None, deployment=running, sizing=sizing)  # 1,000
    refused("max_order_notional", paper, btc_rules, "buy", None, deployment=running, sizing={**sizing, "fraction": 0.2})
    refused("max_order_notional", paper, btc_rules, "buy", None, deployment=running, quote_quantity=D("1600"))


def test_refusal_is_recorded_as_a_risk_event(paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    running.risk = {"max_order_notional": "10"}
    running.save()
    error = refused("max_order_notional", paper, btc_rules, "buy", "1", deployment=running)
    order = open_order(paper, btc_rules, "buy", "1", deployment=running, status=Order.Status.REJECTED)
    event = risk_refusal_record(account=paper, deployment=running, order=order, error=error)
    event.refresh_from_db()
    assert (event.kind, event.code, event.order_id) == (RiskEvent.Kind.REFUSED, "max_order_notional", order.pk)
    assert event.message == error.message
    assert event.details["limit"] == "10"


# --- kill switches -------------------------------------------------------------------------------


def _set_switch(level: str, mode: str, account: TradingAccount, deployment: Deployment) -> None:
    if level == "platform":
        PlatformSwitch.objects.update_or_create(pk=1, defaults={"mode": mode, "reason": "ops drill"})
    elif level == "account":
        TradingAccount.objects.filter(pk=account.pk).update(trading_state=mode, trading_state_reason="drill")
    elif mode == "halted":
        Deployment.objects.filter(pk=deployment.pk).update(status="halted", status_reason="max drawdown")
    else:
        Deployment.objects.filter(pk=deployment.pk).update(is_reduce_only=True)


LEVELS = ["platform", "account", "deployment"]


@pytest.mark.parametrize("level", LEVELS)
def test_halted_refuses_everything(level: str, paper: TradingAccount, btc_rules: Any, running: Deployment) -> None:
    hold(paper, btc_rules, "2", deployment=running)
    _set_switch(level, "halted", paper, running)
    running.refresh_from_db()
    with pytest.raises(TradingHaltedError) as caught:
        check(paper, btc_rules, "buy", "1", deployment=running)
    assert caught.value.code == "kill_switch"
    assert caught.value.extra["scope"] == level
    with pytest.raises(TradingHaltedError):
        check(paper, btc_rules, "sell", "1", deployment=running, reduce_only=True)  # reducing too
    assert trading_blocked(account=paper, deployment=running, reduce_only=True)
    assert trading_blocked(account=paper, deployment=running, reduce_only=False)


@pytest.mark.parametrize("level", LEVELS)
def test_reduce_only_accepts_reducing_and_refuses_increasing(
    level: str, paper: TradingAccount, btc_rules: Any, running: Deployment
) -> None:
    hold(paper, btc_rules, "2", deployment=running)
    _set_switch(level, "reduce_only", paper, running)
    running.refresh_from_db()
    check(paper, btc_rules, "sell", "1", deployment=running)  # reducing: accepted
    error = refused("reduce_only", paper, btc_rules, "buy", "1", deployment=running)  # increasing
    assert error.extra["scope"] == level
    refused("reduce_only", paper, btc_rules, "sell", "3", deployment=running)  # flips: increasing
    assert trading_blocked(account=paper, deployment=running, reduce_only=True) is None
    assert "reduce-only" in (trading_blocked(account=paper, deployment=running, reduce_only=False) or "")


def test_platform_reduce_only_applies_to_manual_orders(paper: TradingAccount, btc_rules: Any) -> None:
    hold(paper, btc_rules, "-3")
    PlatformSwitch.objects.create(pk=1, mode="reduce_only")
    check(paper, btc_rules, "buy", "3")
    refused("reduce_only", paper, btc_rules, "sell", "1")


@pytest.mark.parametrize("status", ["paused", "stopped", "draft"])
def test_deployment_not_running_takes_only_reducing_orders(
    status: str, paper: TradingAccount, btc_rules: Any, running: Deployment
) -> None:
    hold(paper, btc_rules, "2", deployment=running)
    running.status = status
    running.save()
    refused("deployment_not_running", paper, btc_rules, "buy", "1", deployment=running)
    check(paper, btc_rules, "sell", "2", deployment=running)


def test_account_needing_reconnect_refuses(paper: TradingAccount, btc_rules: Any) -> None:
    TradingAccount.objects.filter(pk=paper.pk).update(status="needs_reconnect")
    refused("account_unavailable", paper, btc_rules, "buy", "1")


def test_nothing_blocked_when_all_active(paper: TradingAccount, running: Deployment) -> None:
    assert trading_blocked(account=paper, deployment=running, reduce_only=False) is None
    assert trading_blocked(account=paper, deployment=None, reduce_only=False) is None


# --- loss limits ---------------------------------------------------------------------------------


def test_loss_check_tracks_day_start_and_peak(running: Deployment) -> None:
    assert deployment_loss_check(deployment=running, equity=D("10000")) is None
    running.refresh_from_db()
    assert running.day_start_equity == D("10000")
    assert running.peak_equity == D("10000")
    assert running.day_started_on == datetime.now(UTC).date()
    deployment_loss_check(deployment=running, equity=D("12000"))
    running.refresh_from_db()
    assert (running.peak_equity, running.day_start_equity) == (D("12000"), D("10000"))


def test_daily_loss_pauses(running: Deployment) -> None:
    running.risk = {"daily_loss_limit": 0.05}
    running.save()
    deployment_loss_check(deployment=running, equity=D("10000"))
    assert deployment_loss_check(deployment=running, equity=D("9600")) is None
    action, reason = deployment_loss_check(deployment=running, equity=D("9500")) or ("", "")
    assert action == "pause"
    assert "Daily loss" in reason


def test_daily_loss_amount_pauses(running: Deployment) -> None:
    running.risk = {"daily_loss_amount": "300"}
    running.save()
    deployment_loss_check(deployment=running, equity=D("10000"))
    assert (deployment_loss_check(deployment=running, equity=D("9700")) or ("",))[0] == "pause"


def test_day_rolls_at_utc_midnight(running: Deployment) -> None:
    running.risk = {"daily_loss_limit": 0.05}
    running.day_start_equity = D("20000")
    running.day_started_on = date(2020, 1, 1)
    running.save()
    assert deployment_loss_check(deployment=running, equity=D("9000")) is None  # a new day starts at 9,000
    running.refresh_from_db()
    assert running.day_start_equity == D("9000")


def test_max_drawdown_halts(running: Deployment) -> None:
    running.risk = {"max_drawdown": 0.2, "daily_loss_limit": 0.01}
    running.peak_equity = D("15000")
    running.save()
    action, reason = deployment_loss_check(deployment=running, equity=D("12000")) or ("", "")
    assert action == "halt"  # halting wins over pausing
    assert "drawdown" in reason
