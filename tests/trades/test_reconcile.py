"""Reconciliation against FakeVenue (ccxt over HTTP) and the paper venue: RELIABILITY scenarios 9
(start-up reconciliation) and 10 (a missing position report is not flat), plus mismatches."""

# ruff: noqa: F811 - fixtures are imported from tests.trades.execution_support

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.brokers.base import OrderRequest
from apps.accounts.models import PaperBalance, TradingAccount
from apps.audit.models import AuditEvent
from apps.strategies.models import Deployment
from apps.trades import signals
from apps.trades.models import Fill, Order, Position, RiskEvent
from apps.trades.services.orders import order_send, order_submit
from apps.trades.services.reconcile import account_reconcile
from tests.fakes.fake_venue import fake_venue_broker
from tests.trades.execution_support import (  # noqa: F401 - fixtures
    D,
    btc,
    exchange,
    fernet,
    intent,
    make_deployment,
    paper,
    paper_btc,
    queued,
    venue,
)

pytestmark = pytest.mark.django_db


def resting_limit(capture: Any, account: TradingAccount, instrument: Any, price: str) -> Order:
    with capture(execute=True):
        order = order_submit(intent=intent(account, instrument, type="limit", price=D(price), quantity=D("0.01")))
    order_send(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN
    return order


def snapshot(account: TradingAccount) -> Any:
    return (
        sorted(Order.objects.filter(account=account).values_list("client_order_id", "status", "filled_quantity")),
        sorted(Fill.objects.filter(account=account).values_list("trade_id", "quantity", "price", "fee")),
        sorted(Position.objects.filter(account=account).values_list("symbol", "quantity")),
        RiskEvent.objects.filter(account=account).count(),
        AuditEvent.objects.filter(action="order.adopted").count(),
        TradingAccount.objects.values_list("trading_state", flat=True).get(pk=account.pk),
    )


def test_startup_reconciliation_adopts_the_venues_truth_and_a_second_run_changes_nothing(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks, capsys
):
    # given three open orders of ours
    first, second, third = (
        resting_limit(django_capture_on_commit_callbacks, exchange, btc, p) for p in ("30000", "31000", "32000")
    )
    # and, while we were down: the venue filled #1, cancelled #2, kept #3, and holds an order of
    # ours we never recorded
    venue.fill(first.client_order_id)
    venue.cancel_order(second.client_order_id)
    stray = fake_venue_broker(venue)
    stray.submit(
        OrderRequest(
            client_order_id="tpm00aa11bb22cc",
            symbol="BTC/USDT",
            side="buy",
            type="limit",
            quantity=D("0.01"),
            price=D("33000"),
        )
    )
    stray.close()

    # when reconciling from the command line
    call_command("reconcile", "--account", str(exchange.pk))

    # then our statuses are the venue's, #1's fills are the venue's, the stray order is adopted
    statuses = dict(Order.objects.filter(account=exchange).values_list("client_order_id", "status"))
    assert statuses[first.client_order_id] == Order.Status.FILLED
    assert statuses[second.client_order_id] == Order.Status.CANCELLED
    assert statuses[third.client_order_id] == Order.Status.OPEN
    assert statuses["tpm00aa11bb22cc"] == Order.Status.OPEN
    [venue_first] = venue.orders_for(first.client_order_id)
    venue_fills = sorted(
        (str(t["id"]), D(str(t["qty"])), D(str(t["price"])), D(str(t["commission"])))
        for t in venue.trades
        if str(t["orderId"]) == str(venue_first.order_id)
    )
    assert sorted(Fill.objects.filter(order=first).values_list("trade_id", "quantity", "price", "fee")) == venue_fills
    adopted = Order.objects.get(account=exchange, client_order_id="tpm00aa11bb22cc")
    assert adopted.source == Order.Source.MANUAL
    assert adopted.instrument == btc
    assert AuditEvent.objects.filter(action="order.adopted", target_id=str(adopted.pk)).exists()
    assert RiskEvent.objects.filter(account=exchange, kind=RiskEvent.Kind.ALERT, code="unknown_order").count() == 1
    # positions equal the venue's balance exactly (the fee was taken in BTC)
    position = Position.objects.get(account=exchange, instrument=btc)
    assert position.quantity == venue.balances["BTC"] + venue.locked.get("BTC", Decimal(0))
    assert "1 adopted" in capsys.readouterr().out

    # and a second run changes nothing
    before = snapshot(exchange)
    report = account_reconcile(account_id=exchange.pk)
    assert not report.changed
    assert snapshot(exchange) == before
    assert venue.post_count(first.client_order_id) == 1


def test_a_positions_endpoint_error_halts_the_account_and_touches_no_position(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    # given a position of ours, and a venue whose positions endpoint fails
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(intent=intent(exchange, btc))
    order_send(order_id=order.pk)
    held = Position.objects.get(account=exchange).quantity
    venue.positions_error = True
    halted: list[dict[str, Any]] = []
    signals.trading_halted.connect(lambda sender, **kw: halted.append(kw), weak=False, dispatch_uid="t10")

    try:
        with django_capture_on_commit_callbacks(execute=True):
            report = account_reconcile(account_id=exchange.pk)
    finally:
        signals.trading_halted.disconnect(dispatch_uid="t10")

    exchange.refresh_from_db()
    assert report.account_halted
    assert exchange.trading_state == TradingAccount.TradingState.HALTED
    assert Position.objects.get(account=exchange).quantity == held
    assert (
        RiskEvent.objects.filter(account=exchange, kind=RiskEvent.Kind.ALERT, code="positions_unavailable").count() == 1
    )
    assert halted and halted[0]["account_id"] == exchange.pk

    # then the next order makes no POST
    posts = len(venue.requests_for(method="POST"))
    with django_capture_on_commit_callbacks(execute=True):
        refused = order_submit(intent=intent(exchange, btc), raise_refusal=False)
    assert refused.status == Order.Status.REJECTED
    assert len(venue.requests_for(method="POST")) == posts

    # and reconciling again raises no second alert
    account_reconcile(account_id=exchange.pk)
    assert RiskEvent.objects.filter(account=exchange, code="positions_unavailable").count() == 1


def test_an_order_accepted_before_the_halt_is_not_sent_after_it(
    exchange, btc, venue, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(intent=intent(exchange, btc))
    venue.positions_error = True
    account_reconcile(account_id=exchange.pk)

    order_send(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Order.Status.REJECTED
    assert venue.requests_for(method="POST") == []


def test_an_empty_answer_while_we_hold_a_position_is_not_flat(paper, paper_btc):
    deployment = make_deployment(paper, paper_btc)
    Position.objects.create(
        account=paper, deployment=deployment, instrument=paper_btc, symbol="BTC/USDT", quantity=D("1")
    )

    report = account_reconcile(account_id=paper.pk)

    paper.refresh_from_db()
    assert report.account_halted
    assert paper.trading_state == TradingAccount.TradingState.HALTED
    assert Position.objects.get(account=paper).quantity == D("1")


def test_a_position_the_venue_does_not_have_halts_the_deployments_never_zeroes_it(paper, paper_btc):
    deployment = make_deployment(paper, paper_btc)
    Position.objects.create(
        account=paper, deployment=deployment, instrument=paper_btc, symbol="BTC/USDT", quantity=D("1")
    )
    PaperBalance.objects.create(account=paper, asset="BTC", free=D("0.5"))

    report = account_reconcile(account_id=paper.pk)
    again = account_reconcile(account_id=paper.pk)

    deployment.refresh_from_db()
    assert report.mismatches == {"BTC": {"ours": "1.0000000000", "venue": "0.5000000000"}}
    assert report.deployments_halted == [deployment.pk]
    assert deployment.status == Deployment.Status.HALTED
    assert "differ" in deployment.status_reason
    assert Position.objects.get(account=paper).quantity == D("1")
    assert not again.deployments_halted
    assert RiskEvent.objects.filter(account=paper, code="position_mismatch", kind=RiskEvent.Kind.ALERT).count() == 1


def test_the_owners_own_coins_on_a_spot_account_are_not_a_mismatch(paper, paper_btc):
    deployment = make_deployment(paper, paper_btc)
    Position.objects.create(
        account=paper, deployment=deployment, instrument=paper_btc, symbol="BTC/USDT", quantity=D("1")
    )
    PaperBalance.objects.create(account=paper, asset="BTC", free=D("3"))

    report = account_reconcile(account_id=paper.pk)

    assert report.mismatches == {}
    assert report.external_holdings == {"BTC": "2.0000000000"}
    assert Deployment.objects.get(pk=deployment.pk).status == Deployment.Status.PAPER


def test_reconcile_command_refuses_an_unknown_account_with_exit_code_2(db):
    with pytest.raises(CommandError) as error:
        call_command("reconcile", "--account", "987654")

    assert error.value.returncode == 2
    assert "987654" in str(error.value)


def test_worker_start_queues_a_reconciliation(monkeypatch):
    from celery.signals import worker_ready

    from apps.trades import tasks

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.accounts_reconcile, "delay", lambda *args: sent.append(args))

    worker_ready.send(sender=None)

    assert sent == [()]


def test_the_beat_skips_quiet_paper_accounts_and_never_venue_accounts(
    paper, paper_btc, exchange, django_capture_on_commit_callbacks
):
    from apps.trades.services.reconcile import accounts_to_reconcile

    # given a paper account never reconciled, and a venue account: both are due
    assert accounts_to_reconcile() == sorted([paper.pk, exchange.pk])
    # when the paper account is reconciled and nothing happens at its venue
    account_reconcile(account_id=paper.pk)
    # then the beat leaves it out (the operator's "reconcile everything" still includes it)
    assert accounts_to_reconcile() == [exchange.pk]
    assert accounts_to_reconcile(include_quiet_paper=True) == sorted([paper.pk, exchange.pk])

    # when an order reaches the paper venue, it is due again
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(intent=intent(paper, paper_btc))
    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN
    assert accounts_to_reconcile() == sorted([paper.pk, exchange.pk])
    account_reconcile(account_id=paper.pk)
    assert accounts_to_reconcile() == [exchange.pk]

    # an immediate-or-cancel order (a copy) is final when written, ours and the venue's together:
    # it does not make the account due
    with django_capture_on_commit_callbacks(execute=True):
        copy = order_submit(intent=intent(paper, paper_btc, source="copy", client_order_id="tpc1.1"))
    assert Order.objects.get(pk=copy.pk).status == Order.Status.FILLED
    assert accounts_to_reconcile() == [exchange.pk]

    # when one of our orders is still on its way (its outcome unknown), it is due
    Order.objects.filter(pk=order.pk).update(status=Order.Status.UNKNOWN)
    assert accounts_to_reconcile() == sorted([paper.pk, exchange.pk])
