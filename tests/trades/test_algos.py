"""Execution algorithms: emulated brackets (resting stop, watched target, the other leg
cancelled), trailing stop / break-even with the engine's rules, TWAP and iceberg children with
deterministic ids (a redelivered step makes no second child)."""

from decimal import Decimal
from typing import Any

import pytest

from apps.trades import client_ids
from apps.trades.errors import RiskRefusedError
from apps.trades.intents import OrderIntent
from apps.trades.models import Order, Position
from apps.trades.services import algos
from tests.trades.risk_fixtures import btc_rules, hold, make_account, make_deployment, open_order, paper
from tests.trades.test_api import with_candles

__all__ = ["btc_rules", "paper"]
pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, float]]:
    """Steps the algos queued (the task would run them after the countdown)."""
    calls: list[tuple[int, int, float]] = []
    monkeypatch.setattr(algos, "_schedule", lambda parent_id, n, countdown: calls.append((parent_id, n, countdown)))
    return calls


@pytest.fixture
def exchange(alice: Any) -> Any:
    return make_account(alice, name="Binance", kind="ccxt")


def _fill(order: Order, quantity: str | None = None) -> None:
    Order.objects.filter(pk=order.pk).update(
        status="filled", filled_quantity=D(quantity) if quantity else order.quantity
    )


# --- TWAP / iceberg --------------------------------------------------------------------------------


def test_twap_children_are_deterministic_and_idempotent(
    paper: Any, btc_rules: Any, scheduled: list, alice: Any
) -> None:
    with_candles(btc_rules)
    intent = OrderIntent(account_id=paper.pk, instrument_id=btc_rules.pk, side="buy", quantity=D("3"), source="manual")
    parent = algos.twap_start(intent=intent, slices=3, interval_seconds=60)
    assert (parent.algo, parent.status, parent.quantity) == ("twap", "open", D("3"))
    assert scheduled == [(parent.pk, 0, 0.0)]
    assert algos.algo_step(parent_id=parent.pk, n=0) == 60.0
    assert algos.algo_step(parent_id=parent.pk, n=0) is None  # redelivered: nothing new, next already queued
    children = list(Order.objects.filter(parent=parent).order_by("pk"))
    assert [c.client_order_id for c in children] == [client_ids.child_order_id(parent_id=parent.client_order_id, n=0)]
    assert children[0].quantity == D("1") and children[0].source == "algo"
    algos.algo_step(parent_id=parent.pk, n=1)
    algos.algo_step(parent_id=parent.pk, n=2)
    children = list(Order.objects.filter(parent=parent).order_by("pk"))
    assert [c.quantity for c in children] == [D(1), D(1), D(1)]
    for child in children:
        _fill(child)
    assert algos.algo_step(parent_id=parent.pk, n=3) is None
    parent.refresh_from_db()
    assert (parent.status, parent.filled_quantity) == ("filled", D(3))


def test_twap_is_risk_checked_for_the_whole_quantity(paper: Any, btc_rules: Any, scheduled: list) -> None:
    with_candles(btc_rules)
    paper.risk_limits = {"max_order_notional": "250"}
    paper.save()
    intent = OrderIntent(account_id=paper.pk, instrument_id=btc_rules.pk, side="buy", quantity=D("3"), source="manual")
    with pytest.raises(RiskRefusedError) as caught:
        algos.twap_start(intent=intent, slices=3, interval_seconds=60)
    assert caught.value.code == "max_order_notional"
    parent = Order.objects.get(account=paper)
    assert parent.status == "rejected" and parent.risk_events.get().code == "max_order_notional"
    assert scheduled == []


def test_twap_stops_when_cancelled(paper: Any, btc_rules: Any, scheduled: list) -> None:
    with_candles(btc_rules)
    intent = OrderIntent(account_id=paper.pk, instrument_id=btc_rules.pk, side="sell", quantity=D("2"), source="manual")
    parent = algos.twap_start(intent=intent, slices=4, interval_seconds=10)
    algos.algo_step(parent_id=parent.pk, n=0)
    algos.algo_cancel(order=parent)
    parent.refresh_from_db()
    assert parent.status == "cancelled"
    assert algos.algo_step(parent_id=parent.pk, n=1) is None
    assert Order.objects.filter(parent=parent).count() == 1


def test_iceberg_next_slice_after_the_previous_fills(paper: Any, btc_rules: Any, scheduled: list) -> None:
    with_candles(btc_rules)
    intent = OrderIntent(
        account_id=paper.pk,
        instrument_id=btc_rules.pk,
        side="buy",
        type="limit",
        price=D("100"),
        quantity=D("2.5"),
        source="manual",
    )
    parent = algos.iceberg_start(intent=intent, visible=D("1"))
    algos.algo_step(parent_id=parent.pk, n=0)
    first = Order.objects.get(parent=parent)
    assert (first.quantity, first.type, first.price) == (D(1), "limit", D(100))
    Order.objects.filter(pk=first.pk).update(status="open")
    algos.algo_step(parent_id=parent.pk, n=1)  # the visible slice still works: wait
    assert Order.objects.filter(parent=parent).count() == 1
    _fill(first)
    algos.algo_step(parent_id=parent.pk, n=1)
    second = Order.objects.filter(parent=parent).order_by("-pk").first()
    assert second is not None and second.quantity == D(1)
    _fill(second)
    algos.algo_step(parent_id=parent.pk, n=2)
    third = Order.objects.filter(parent=parent).order_by("-pk").first()
    assert third is not None and third.quantity == D("0.5")
    _fill(third)
    assert algos.algo_step(parent_id=parent.pk, n=3) is None
    parent.refresh_from_db()
    assert (parent.status, parent.filled_quantity) == ("filled", D("2.5"))


def test_algo_input_is_validated(paper: Any, btc_rules: Any) -> None:
    from apps.common.errors import ValidationFailed

    intent = OrderIntent(account_id=paper.pk, instrument_id=btc_rules.pk, side="buy", quantity=D("2"))
    with pytest.raises(ValidationFailed):
        algos.twap_start(intent=intent, slices=1, interval_seconds=60)
    with pytest.raises(ValidationFailed):
        algos.iceberg_start(intent=intent, visible=D("3"))


# --- brackets --------------------------------------------------------------------------------------


def _entry(account: Any, instrument: Any, **extra: Any) -> Order:
    entry = open_order(account, instrument, "buy", "1", status="filled", price=None, **extra)
    Order.objects.filter(pk=entry.pk).update(filled_quantity=D(1), average_price=D(100))
    entry.refresh_from_db()
    return entry


def test_bracket_emulation_rests_the_stop_and_watches_the_target(exchange: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    hold(exchange, btc_rules, "1")
    entry = _entry(exchange, btc_rules, bracket={"stop_loss": 0.05, "take_profit": 0.1})
    stop = algos.bracket_after_fill(order_id=entry.pk)
    assert stop is not None
    assert (stop.type, stop.side, stop.stop_price, stop.reduce_only, stop.parent_id) == (
        "stop",
        "sell",
        D(95),
        True,
        entry.pk,
    )
    assert getattr(algos.bracket_after_fill(order_id=entry.pk), "pk", None) == stop.pk  # idempotent
    position = Position.objects.get(account=exchange)
    assert (position.stop_price, position.target_price) == (D(95), D(110))
    # A bar that does not reach the target changes nothing.
    assert (
        algos.algos_bar_closed(instrument_id=btc_rules.pk, timeframe="1h", ts=None, bar={"high": 109, "low": 99}) == 0
    )
    assert (
        algos.algos_bar_closed(instrument_id=btc_rules.pk, timeframe="1h", ts=None, bar={"high": 111, "low": 105}) == 1
    )
    stop.refresh_from_db()
    assert stop.status == "cancelled"  # the other leg
    target = Order.objects.get(account=exchange, leg="target")
    assert (target.type, target.price, target.side, target.reduce_only, target.quantity) == (
        "limit",
        D(110),
        "sell",
        True,
        D(1),
    )
    position.refresh_from_db()
    assert position.target_price is None


def test_bracket_waits_for_the_entry_to_finish(exchange: Any, btc_rules: Any) -> None:
    entry = open_order(exchange, btc_rules, "buy", "1", status="partially_filled", bracket={"stop_loss": 0.05})
    assert algos.bracket_after_fill(order_id=entry.pk) is None


def test_paper_positions_are_not_watched(paper: Any, btc_rules: Any) -> None:
    hold(paper, btc_rules, "1")
    Position.objects.filter(account=paper).update(target_price=D(110))
    assert algos.algos_bar_closed(instrument_id=btc_rules.pk, timeframe="1h", ts=None, bar={"high": 200, "low": 1}) == 0


# --- trailing / break-even -------------------------------------------------------------------------


def test_trailing_stop_level_follows_the_engine() -> None:
    level = algos.trailing_stop_level(
        side=1, entry=D(100), extreme=D(120), current=D(95), trailing=0.1, breakeven=0.0, tick=D("0.01")
    )
    assert level == D(108)
    assert algos.trailing_stop_level(
        side=1, entry=D(100), extreme=D(104), current=D(95), trailing=0.1, breakeven=0.0, tick=None
    ) == D(95)  # never lowered
    assert algos.trailing_stop_level(
        side=1, entry=D(100), extreme=D(103), current=D(95), trailing=0.0, breakeven=0.03, tick=None
    ) == D(100)  # break-even armed
    assert algos.trailing_stop_level(
        side=-1, entry=D(100), extreme=D(80), current=D(105), trailing=0.1, breakeven=0.0, tick=None
    ) == D(88)


def test_trailing_update_replaces_the_stop_on_a_venue(exchange: Any, btc_rules: Any) -> None:
    with_candles(btc_rules)
    deployment = make_deployment(exchange, btc_rules, settings={"exits": {"trailing_stop": 0.1}})
    position = hold(exchange, btc_rules, "1", deployment=deployment, price="100")
    old = open_order(
        exchange,
        btc_rules,
        "sell",
        "1",
        deployment=deployment,
        status="new",
        reduce_only=True,
        price=None,
        stop_price=D(95),
        leg="stop",
    )
    Order.objects.filter(pk=old.pk).update(type="stop")
    level = algos.trailing_update(deployment=deployment, position=position, bar={"high": 120, "low": 101, "close": 118})
    assert level == D(108)
    old.refresh_from_db()
    assert old.status == "cancelled"
    new = Order.objects.filter(account=exchange, leg="stop").exclude(pk=old.pk).get()
    assert (new.type, new.stop_price, new.reduce_only) == ("stop", D(108), True)
    position.refresh_from_db()
    assert (position.extreme_price, position.stop_price) == (D(120), D(108))
    # A lower bar does not move it back.
    assert algos.trailing_update(deployment=deployment, position=position, bar={"high": 110, "low": 105}) is None


def test_trailing_update_amends_the_paper_stop_in_place(paper: Any, btc_rules: Any, monkeypatch: Any) -> None:
    import apps.accounts.paper as paper_venue

    deployment = make_deployment(paper, btc_rules, settings={"exits": {"trailing_stop": 0.1}})
    position = hold(paper, btc_rules, "1", deployment=deployment, price="100")
    stop = open_order(
        paper, btc_rules, "sell", "1", deployment=deployment, reduce_only=True, price=None, stop_price=D(95), leg="stop"
    )
    Order.objects.filter(pk=stop.pk).update(type="stop")
    moved: list[tuple[str, Decimal]] = []
    monkeypatch.setattr(
        paper_venue,
        "paper_replace_stop",
        lambda *, account_id, client_order_id, stop_price: moved.append((client_order_id, stop_price)),
    )
    assert algos.trailing_update(deployment=deployment, position=position, bar={"high": 130, "low": 110}) == D(117)
    assert moved == [(stop.client_order_id, D(117))]
    stop.refresh_from_db()
    assert stop.stop_price == D(117) and stop.status == "open"
