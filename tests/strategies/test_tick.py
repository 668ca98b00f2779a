"""The tick, through the real receiver path: a bar stored as closed is announced after commit,
the paper venue matches it, one tick per running deployment runs (in this process), the
strategy decides, the Signal is recorded and the order goes through the execution service to
the paper venue. Duplicate, late and old ticks do nothing harmful."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from apps.strategies.models import Deployment, Signal, TickRun
from apps.strategies.services import deployments as services
from apps.strategies.services import ticks
from apps.trades.models import Fill, Order, Position, RiskEvent
from tests.strategies.deploy_support import (
    HISTORY_BARS,
    bar_ts,
    deployment_kwargs,
    feed_bar,
    market,
    next_bars,
    paper_account,
    ticks_inline,
)

__all__ = ["market", "paper_account", "ticks_inline"]


@pytest.fixture
def running(market: Any, paper_account: Any) -> Deployment:
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    return services.deployment_start(deployment=deployment, mode="paper")


def tick_of(deployment: Deployment, market: Any, index: int, **kwargs: Any) -> str:
    return ticks.deployment_tick(deployment_id=deployment.pk, instrument_id=market.pk, bar_ts=bar_ts(index), **kwargs)


def test_a_signal_bar_records_one_signal_and_one_order_that_fills_at_the_next_open(
    running: Deployment, market: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given the next bar opens at an even minute (HISTORY_BARS is even): the strategy wants long
    bars = next_bars(2)
    assert bars.index[0].minute % 2 == 0
    # when it closes
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    # then one Signal (enter long) and one entry order, sent to the paper venue
    signal = Signal.objects.get(deployment=running)
    assert signal.action == Signal.Action.ENTER_LONG
    order = Order.objects.get(deployment=running)
    assert order.leg == "entry" and order.side == "buy" and order.status == Order.Status.OPEN
    run = TickRun.objects.get(deployment=running)
    assert run.outcome == "order" and run.finished_at is not None and run.duration_ms is not None
    # when the next bar closes, the paper venue fills the entry at its open
    feed_bar(market, bars.iloc[1:2], django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    fill = Fill.objects.get(order=order)
    assert (
        fill.price == Decimal(str(round(bars.iloc[1]["open"], 2)))
        or abs(float(fill.price) - bars.iloc[1]["open"]) < 0.01
    )
    position = Position.objects.get(deployment=running, instrument=market)
    assert position.quantity > 0
    # and the odd bar's exit signal sent a reduce-only exit
    exit_order = Order.objects.get(deployment=running, leg="exit")
    assert exit_order.reduce_only and exit_order.side == "sell" and exit_order.quantity == position.quantity


def store(market: Any, count: int) -> Any:
    """Store the next `count` bars without announcing them (the ticks are called by hand)."""
    from apps.marketdata.storage import candles_write

    bars = next_bars(count)
    candles_write(instrument=market, timeframe="1m", frame=bars, source="test")
    return bars


def test_the_same_tick_twice_makes_one_order_and_one_signal(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    store(market, 1)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        first = tick_of(running, market, HISTORY_BARS)
        second = tick_of(running, market, HISTORY_BARS)
    assert (first, second) == ("order", "duplicate")
    assert Order.objects.filter(deployment=running).count() == 1
    assert Signal.objects.filter(deployment=running).count() == 1
    assert TickRun.objects.filter(deployment=running).count() == 1


def test_a_tick_for_a_bar_older_than_the_last_one_ticked_does_nothing(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    store(market, 2)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tick_of(running, market, HISTORY_BARS + 1) == "no_signal"  # odd minute: flat stays flat
        assert tick_of(running, market, HISTORY_BARS) == "late"
    assert not Order.objects.filter(deployment=running).exists()
    assert not Signal.objects.filter(deployment=running).exists()
    assert TickRun.objects.get(deployment=running, bar_ts=bar_ts(HISTORY_BARS)).outcome == "late"


def test_a_tick_for_an_old_bar_does_not_trade_on_it(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given two newer bars are already stored, a tick for the first (a signal bar) arrives late
    store(market, 2)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        outcome = tick_of(running, market, HISTORY_BARS)
    assert outcome == "old_bar"
    assert not Order.objects.filter(deployment=running).exists()


def test_a_paused_deployment_does_not_order(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    services.deployment_pause(deployment=running)
    store(market, 1)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tick_of(running, market, HISTORY_BARS) == "not_running"
    assert not Order.objects.filter(deployment=running).exists()
    assert not Signal.objects.filter(deployment=running).exists()


def test_a_refused_order_is_recorded_on_the_order_the_signal_and_the_tick(
    market: Any, paper_account: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(
        **deployment_kwargs(market, paper_account, risk={"max_order_notional": "10"})
    )
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    store(market, 1)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        outcome = tick_of(deployment, market, HISTORY_BARS)
    order = Order.objects.get(deployment=deployment)
    assert order.status == Order.Status.REJECTED and order.status_reason
    assert outcome.startswith("refused:")
    signal = Signal.objects.get(deployment=deployment)
    assert signal.details["refusal"]["message"]
    assert TickRun.objects.get(deployment=deployment).outcome == outcome
    assert RiskEvent.objects.filter(order=order).exists()
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.PAPER  # a refusal does not stop the deployment


def test_an_entry_carries_its_bracket_and_the_venue_places_stop_and_target(
    market: Any, paper_account: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(
        **deployment_kwargs(
            market,
            paper_account,
            strategy_key="test_always_long",
            settings={"exits": {"stop_loss": 0.05, "take_profit": 0.1}},
        )
    )
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    bars = next_bars(2)
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    entry = Order.objects.get(deployment=deployment, leg="entry")
    assert entry.bracket is not None
    assert entry.bracket["stop_loss"] == 0.05 and entry.bracket["take_profit"] == 0.1
    feed_bar(market, bars.iloc[1:2], django_capture_on_commit_callbacks)
    entry.refresh_from_db()
    assert entry.status == Order.Status.FILLED
    legs = dict(Order.objects.filter(deployment=deployment, reduce_only=True).values_list("leg", "stop_price"))
    assert set(legs) == {"stop", "target"}
    fill_price = Fill.objects.get(order=entry).price
    assert legs["stop"] is not None
    assert abs(legs["stop"] - fill_price * Decimal("0.95")) < Decimal("0.02")
    # no pyramiding: still wanting long while long adds nothing
    assert Order.objects.filter(deployment=deployment, leg="entry").count() == 1


def test_a_time_exit_closes_the_position_after_its_bars(
    market: Any, paper_account: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = services.deployment_create(
        **deployment_kwargs(
            market, paper_account, strategy_key="test_always_long", settings={"exits": {"time_exit_bars": 2}}
        )
    )
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    bars = next_bars(4)
    for i in range(4):
        feed_bar(market, bars.iloc[i : i + 1], django_capture_on_commit_callbacks)
    # entry decided at bar 0, filled at bar 1's open; held 2 bars -> closed at bar 3's open
    exit_order = Order.objects.get(deployment=deployment, leg="exit")
    assert exit_order.bar_ts == bars.index[2].to_pydatetime()
    assert exit_order.status == Order.Status.FILLED
    assert Signal.objects.get(deployment=deployment, bar_ts=bars.index[2]).action == Signal.Action.STOP


def test_a_strategy_that_raises_is_recorded_as_an_error(
    market: Any, paper_account: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.backtests.platform_support import ExplodingStrategy

    assert ExplodingStrategy.key == "test_exploding"
    deployment = services.deployment_create(**deployment_kwargs(market, paper_account, strategy_key="test_exploding"))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    store(market, 1)
    ticks.caches_clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tick_of(deployment, market, HISTORY_BARS) == "error"
        assert tick_of(deployment, market, HISTORY_BARS) == "duplicate"
    assert TickRun.objects.get(deployment=deployment).outcome == "error"
    assert not Order.objects.filter(deployment=deployment).exists()


def test_a_daily_loss_limit_pauses_the_deployment_with_the_reason(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.strategies.services.ticks import loss_check

    Deployment.objects.filter(pk=running.pk).update(risk={"daily_loss_limit": 0.05})
    running.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert loss_check(deployment=running, equity=Decimal("10000")) is None
        reason = loss_check(deployment=running, equity=Decimal("9400"))
    assert reason and "Daily loss" in reason
    running.refresh_from_db()
    assert running.status == Deployment.Status.PAUSED and "Daily loss" in running.status_reason
    # its owner is told, as a "daily loss reached" notification
    from apps.notifications.models import Event, Notification

    notice = Notification.objects.get(user=running.owner, event=Event.DAILY_LOSS)
    assert notice.title == f"{running.name} paused" and "Daily loss" in notice.body


def test_a_max_drawdown_halts_the_deployment(
    running: Deployment, market: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.strategies.services.ticks import loss_check

    Deployment.objects.filter(pk=running.pk).update(risk={"max_drawdown": 0.1})
    running.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        loss_check(deployment=running, equity=Decimal("12000"))
        running.refresh_from_db()
        loss_check(deployment=running, equity=Decimal("10500"))
    running.refresh_from_db()
    assert running.status == Deployment.Status.HALTED and "drawdown" in running.status_reason.lower()


def test_ticks_are_queued_for_running_deployments_of_the_series_only(
    running: Deployment, market: Any, paper_account: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    other_tf = services.deployment_create(**deployment_kwargs(market, paper_account, timeframe="5m", name="5m"))
    services.deployment_start(deployment=other_tf, mode="paper")
    draft = services.deployment_create(**deployment_kwargs(market, paper_account, name="draft"))
    feed_bar(market, next_bars(1), django_capture_on_commit_callbacks)
    assert [args[0] for args in ticks_inline] == [running.pk]
    assert not TickRun.objects.filter(deployment=draft).exists()
    assert ticks_inline[0][2] == bar_ts(HISTORY_BARS).isoformat()
    assert ticks_inline[0][3] is not None  # announced_at
    run = TickRun.objects.get(deployment=running)
    assert run.announced_at is not None
    assert timedelta(0) <= run.started_at - run.announced_at


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_overlapping_deliveries_of_one_tick_make_one_order(market: Any, paper_account: Any) -> None:
    """Two threads (as two worker processes would) run the same tick at once on PostgreSQL: the
    TickRun insert lets one through and the other waits, then returns ``duplicate``."""
    import threading

    from django.db import connections

    deployment = services.deployment_create(**deployment_kwargs(market, paper_account))
    deployment = services.deployment_start(deployment=deployment, mode="paper")
    store(market, 1)
    ticks.caches_clear()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            outcomes.append(tick_of(deployment, market, HISTORY_BARS))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["duplicate", "order"]
    assert Order.objects.filter(deployment=deployment, leg="entry").count() == 1
    assert Signal.objects.filter(deployment=deployment).count() == 1
