"""Orders on the paper venue (apps.accounts.paper): sent inline after commit, filled when the next
bar closes, synced by the paper_orders_changed receiver, bracket legs adopted."""

# ruff: noqa: F811 - fixtures are imported from tests.trades.execution_support

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import PaperOrder
from apps.trades.models import Fill, LedgerEntry, Order, Position
from apps.trades.services.orders import order_submit
from tests.trades.execution_support import (  # noqa: F401 - fixtures
    T0,
    D,
    close_bar,
    intent,
    make_deployment,
    paper,
    paper_btc,
    queued,
)

pytestmark = pytest.mark.django_db


def submit(capture: Any, account: Any, instrument: Any, **fields: Any) -> Order:
    fields.setdefault("expected_price", D("100"))
    fields.setdefault("quantity", D("1"))
    with capture(execute=True):
        return order_submit(intent=intent(account, instrument, **fields))


def test_paper_order_is_sent_inline_after_commit(paper, paper_btc, queued, django_capture_on_commit_callbacks):
    order = submit(django_capture_on_commit_callbacks, paper, paper_btc)

    order.refresh_from_db()
    assert order.status == Order.Status.OPEN  # a market order rests until the next bar
    assert PaperOrder.objects.filter(account=paper, client_order_id=order.client_order_id).count() == 1
    assert queued.ids("order_send") == []  # no queue hop


def test_paper_send_goes_through_the_queue_when_inline_is_off(
    paper, paper_btc, queued, settings, django_capture_on_commit_callbacks
):
    settings.PAPER_SEND_INLINE = False
    order = submit(django_capture_on_commit_callbacks, paper, paper_btc)

    assert queued.ids("order_send") == [order.pk]
    assert not PaperOrder.objects.filter(account=paper).exists()


def test_the_next_bar_fills_it_and_the_receiver_records_the_fill(
    paper, paper_btc, queued, django_capture_on_commit_callbacks
):
    deployment = make_deployment(paper, paper_btc)
    order = submit(
        django_capture_on_commit_callbacks, paper, paper_btc, deployment_id=deployment.pk, bar_ts=T0, leg="entry"
    )

    with django_capture_on_commit_callbacks(execute=True):
        close_bar(paper_btc, 1, 101, 102, 100, 101)

    order.refresh_from_db()
    fill = Fill.objects.get(order=order)
    paper_fill = PaperOrder.objects.get(client_order_id=order.client_order_id).fills.get()
    position = Position.objects.get(deployment=deployment, instrument=paper_btc)
    assert order.status == Order.Status.FILLED
    assert (fill.trade_id, fill.quantity, fill.price, fill.fee) == (
        paper_fill.trade_id,
        paper_fill.quantity,
        paper_fill.price,
        paper_fill.fee,
    )
    assert fill.slippage_bps == (fill.price - D("100")) / D("100") * 10000
    assert position.quantity == D("1")
    assert position.average_price == fill.price
    cash = sum(e.amount for e in LedgerEntry.objects.filter(deployment=deployment))
    assert cash == -(fill.quantity * fill.price) - fill.fee


def test_bracket_legs_are_adopted_and_a_stop_closes_the_position(
    paper, paper_btc, queued, django_capture_on_commit_callbacks
):
    # given an entry with a bracket, filled at the next bar's open
    deployment = make_deployment(paper, paper_btc)
    entry = submit(
        django_capture_on_commit_callbacks,
        paper,
        paper_btc,
        deployment_id=deployment.pk,
        bar_ts=T0,
        leg="entry",
        bracket={"stop_loss": 0.02, "take_profit": 0.04},
    )
    with django_capture_on_commit_callbacks(execute=True):
        close_bar(paper_btc, 1, 100, 101, 99.5, 100.5)

    # then its stop and target legs exist as child orders of ours
    entry.refresh_from_db()
    children = {o.leg: o for o in Order.objects.filter(parent=entry)}
    assert entry.status == Order.Status.FILLED
    assert set(children) == {"stop", "target"}
    for child in children.values():
        assert child.source == Order.Source.EXIT
        assert child.oco_group == f"oco:{entry.client_order_id}"
        assert child.deployment_id == deployment.pk
        assert child.side == Order.Side.SELL
        assert child.status == Order.Status.OPEN

    # when a later bar hits the stop
    with django_capture_on_commit_callbacks(execute=True):
        close_bar(paper_btc, 2, 99, 99.5, 95, 96)

    stop = Order.objects.get(pk=children["stop"].pk)
    target = Order.objects.get(pk=children["target"].pk)
    position = Position.objects.get(deployment=deployment, instrument=paper_btc)
    assert stop.status == Order.Status.FILLED
    assert target.status == Order.Status.CANCELLED
    assert position.quantity == Decimal(0)
    assert position.realized_pnl < 0
