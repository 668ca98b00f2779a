"""The copy fan-out against the real paper venue: sizing, exactly once, isolation, guards,
proportional reduction and closing. Leader fills are made by the venue (fanout_support)."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import PaperBalance, PaperOrder, TradingAccount
from apps.marketdata.storage import candles_write
from apps.marketplace.models import CopyTrade, Listing, Subscription
from apps.marketplace.services import fanout
from apps.marketplace.services.subscriptions import (
    subscription_pause,
    subscription_resume,
    subscription_unsubscribe,
)
from apps.strategies.models import Deployment
from apps.trades.client_ids import copy_order_id
from apps.trades.models import Fill, Order, Position
from tests.marketplace.fanout_support import leader_fill, make_follower, make_leader
from tests.trades.execution_support import HOUR, T0, bar_frame

D = Decimal
pytestmark = pytest.mark.django_db


def _position(sub: Subscription) -> Decimal:
    row = Position.objects.filter(deployment_id=sub.deployment_id).first()
    return row.quantity if row is not None else D(0)


def _set_price(instrument: Any, bar: int, close: float) -> None:
    """A newer candle (the price now) without matching the book."""
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(T0 + bar * HOUR, close, close, close, close))


def test_copy_is_the_leader_quantity_times_the_multiplier_floored_to_the_lot(alice: Any, paper_btc: Any) -> None:
    # given a leader and three followers copying at 0.1x, 0.25x and 0.3337x (lot 0.001)
    _, deployment, listing = make_leader(alice, paper_btc)
    subs = [
        make_follower(listing, n, multiplier=m, allocation="5000")
        for n, m in enumerate([D("0.1"), D("0.25"), D("0.3337")])
    ]
    # when the leader buys 3 BTC at 100 and the fan-out runs
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="3", bar=1, price=100)
    assert fanout.copy_fanout_run(leader_fill_id=fill.pk) == 3
    # then each follower bought floor(3 * m, 0.001) at once, through its own copy book
    expected = [D("0.3"), D("0.75"), D("1.001")]
    for sub, quantity in zip(subs, expected, strict=True):
        order = Order.objects.get(deployment_id=sub.deployment_id)
        assert order.client_order_id == copy_order_id(leader_fill_id=fill.pk, subscription_id=sub.pk)
        assert (order.source, order.side, order.status) == ("copy", "buy", "filled")
        assert order.filled_quantity == quantity
        assert _position(sub) == quantity
        copy = CopyTrade.objects.get(subscription=sub, leader_fill=fill)
        assert (copy.status, copy.order_id, copy.quantity) == ("ordered", order.pk, quantity)
        assert copy.leader_price == D("100") and copy.leader_quantity == D("3")
        # the venue took the cash: quantity * 100 plus the 0.1 % fee
        usdt = PaperBalance.objects.get(account_id=sub.account_id, asset="USDT")
        assert usdt.free == D("10000") - quantity * 100 * D("1.001")


def test_fanout_delivered_twice_places_each_copy_once(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    subs = [make_follower(listing, n) for n in range(5)]
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100)
    ids = [s.pk for s in subs]
    # a chunk, the same chunk redelivered, overlapping chunks, then the whole run and the sweep
    fanout.copy_fanout_chunk(leader_fill_id=fill.pk, subscription_ids=ids[:3])
    fanout.copy_fanout_chunk(leader_fill_id=fill.pk, subscription_ids=ids[:3])
    fanout.copy_fanout_chunk(leader_fill_id=fill.pk, subscription_ids=ids[2:])
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    fanout.copy_fanout_sweep()
    for sub in subs:
        assert Order.objects.filter(account_id=sub.account_id).count() == 1
        assert PaperOrder.objects.filter(account_id=sub.account_id).count() == 1
        assert Fill.objects.filter(account_id=sub.account_id).count() == 1
        assert CopyTrade.objects.filter(subscription=sub).count() == 1
        assert _position(sub) == D("0.2")


def test_a_duplicate_order_row_is_found_not_doubled_when_its_copy_row_is_missing(alice: Any, paper_btc: Any) -> None:
    # a worker died after the orders committed and before... (they commit together; simulate a
    # lost CopyTrade row by deleting it): the rerun finds the order by its client id
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1)
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    CopyTrade.objects.filter(subscription=sub).delete()
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    assert Order.objects.filter(account_id=sub.account_id).count() == 1
    copy = CopyTrade.objects.get(subscription=sub)
    assert copy.order == Order.objects.get(account_id=sub.account_id)


def test_one_followers_failure_is_its_own(alice: Any, paper_btc: Any) -> None:
    # given three followers: one whose cash is gone since subscribing, one whose account needs
    # reconnecting, and a healthy one
    _, deployment, listing = make_leader(alice, paper_btc)
    broke, unavailable, healthy = (make_follower(listing, n, multiplier=D("1")) for n in range(3))
    PaperBalance.objects.filter(account_id=broke.account_id, asset="USDT").update(free=D("5"))
    TradingAccount.objects.filter(pk=unavailable.account_id).update(status=TradingAccount.Status.NEEDS_RECONNECT)
    # when the leader buys 1 BTC
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    # then the broke one failed at the venue, the unavailable one was refused, the healthy one filled
    failed = CopyTrade.objects.get(subscription=broke)
    assert failed.status == "failed" and "insufficient USDT" in failed.reason
    assert failed.order.status == "expired"
    refused = CopyTrade.objects.get(subscription=unavailable)
    assert (refused.status, refused.code) == ("refused", "account_unavailable")
    assert refused.order.status == "rejected"
    assert CopyTrade.objects.get(subscription=healthy).order.status == "filled"
    assert _position(healthy) == D("1") and _position(broke) == D("0")


def test_leader_reducing_and_closing_are_copied_in_proportion(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("0.5"), allocation="5000")
    buy = leader_fill(deployment, paper_btc, side="buy", quantity="4", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=buy.pk)
    assert _position(sub) == D("2")
    # the leader sells a quarter of its 4: the follower sells a quarter of its 2
    sell = leader_fill(deployment, paper_btc, side="sell", quantity="1", bar=2, price=110)
    fanout.copy_fanout_run(leader_fill_id=sell.pk)
    assert _position(sub) == D("1.5")
    reduce = CopyTrade.objects.get(subscription=sub, leader_fill=sell).order
    assert reduce.reduce_only and reduce.side == "sell" and reduce.quantity == D("0.5")
    # the leader closes the rest: the follower closes everything
    close = leader_fill(deployment, paper_btc, side="sell", quantity="3", bar=3, price=120)
    fanout.copy_fanout_run(leader_fill_id=close.pk)
    assert _position(sub) == D("0")


def test_leader_reversal_closes_and_opens(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("0.5"), allocation="5000")
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100).pk
    )
    flip = leader_fill(deployment, paper_btc, side="sell", quantity="6", bar=2, price=100)  # long 2 -> short 4
    fanout.copy_fanout_run(leader_fill_id=flip.pk)
    assert _position(sub) == D("-2")  # closed 1, opened 0.5 x 4


def test_price_deviation_guard_skips_an_opening_copy_but_never_a_reduction(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), max_price_deviation_pct="2", allocation="5000")
    buy = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=buy.pk)
    assert _position(sub) == D("1")
    # the leader adds at 100, but the price is 103 by the time the copy is sized: skipped
    add = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    _set_price(paper_btc, 3, 103)
    fanout.copy_fanout_run(leader_fill_id=add.pk)
    skipped = CopyTrade.objects.get(subscription=sub, leader_fill=add)
    assert (skipped.status, skipped.code, skipped.order) == ("skipped", "price_deviation", None)
    assert "3.00%" in skipped.reason
    # the leader closes at 103 while the price is 110: the follower still closes
    close = leader_fill(deployment, paper_btc, side="sell", quantity="2", bar=4, price=103)
    _set_price(paper_btc, 5, 110)
    fanout.copy_fanout_run(leader_fill_id=close.pk)
    assert _position(sub) == D("0")


def test_allocation_and_maximum_position_cap_the_copy(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    capped_by_allocation = make_follower(listing, 1, multiplier=D("1"), allocation="250")
    capped_by_position = make_follower(listing, 2, multiplier=D("1"), allocation="5000", max_position_notional="150")
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="10", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    assert _position(capped_by_allocation) == D("2.5")
    assert _position(capped_by_position) == D("1.5")
    # full: the next buy is skipped with the reason
    more = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_fanout_run(leader_fill_id=more.pk)
    assert CopyTrade.objects.get(subscription=capped_by_allocation, leader_fill=more).code == "allocation_full"


def test_equity_ratio_sizes_by_copy_book_equity_over_leader_equity(alice: Any, paper_btc: Any) -> None:
    # the leader's deployment has 10,000 of capital, the follower allocates 2,500: a quarter
    _, deployment, listing = make_leader(alice, paper_btc, capital="10000")
    sub = make_follower(listing, 1, sizing_mode="equity_ratio", allocation="2500")
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="8", bar=1, price=100)
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    # leader equity after its fill: 10,000 - 0.8 fee = 9,999.2; follower 2,500 * 8 / 9,999.2
    assert _position(sub) == D("2.000")
    assert CopyTrade.objects.get(subscription=sub).quantity == D("2")


def test_fixed_notional_copies_the_same_value_every_trade(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, sizing_mode="fixed_notional", fixed_notional="300", allocation="5000")
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="5", bar=1, price=120).pk
    )
    assert _position(sub) == D("2.5")


def test_maximum_loss_stops_copying_and_closes_the_copies(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="1000", max_loss="50")
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="5", bar=1, price=100).pk
    )
    assert _position(sub) == D("5")
    # the price falls to 85: the copy book lost 75 + fees > 50; the leader's next trade stops it
    add = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=85)
    fanout.copy_fanout_run(leader_fill_id=add.pk)
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.STOPPED and "maximum" in sub.status_reason
    assert CopyTrade.objects.get(subscription=sub, leader_fill=add).code == "max_loss"
    assert _position(sub) == D("0")  # closed at once (a copy's close is an IOC order)
    assert Deployment.objects.get(pk=sub.deployment_id).status == Deployment.Status.PAUSED


def test_paused_and_ended_subscriptions_copy_nothing_and_resume_copies_later_trades(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    paused = make_follower(listing, 1)
    subscription_pause(subscription=paused, actor=paused.follower)
    first = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    assert fanout.copy_fanout_run(leader_fill_id=first.pk) == 0
    assert not CopyTrade.objects.filter(subscription=paused).exists()
    subscription_resume(subscription=paused, actor=paused.follower)
    second = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_fanout_run(leader_fill_id=second.pk)
    assert _position(paused) == D("0.1")
    # unsubscribing with close: the copied position is closed at once; later trades are not copied
    subscription_unsubscribe(subscription=paused, actor=paused.follower, close_positions=True)
    assert _position(paused) == D("0")
    third = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=3, price=100)
    assert fanout.copy_fanout_run(leader_fill_id=third.pk) == 0


def test_suspended_listing_copies_reductions_only(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="5000")
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100).pk
    )
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.SUSPENDED)
    add = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_fanout_run(leader_fill_id=add.pk)
    assert CopyTrade.objects.get(subscription=sub, leader_fill=add).code == "listing_suspended"
    cut = leader_fill(deployment, paper_btc, side="sell", quantity="3", bar=3, price=100)
    fanout.copy_fanout_run(leader_fill_id=cut.pk)
    assert _position(sub) == D("0")


def test_a_fill_too_old_is_recorded_as_skipped_not_traded(alice: Any, paper_btc: Any, settings: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1)
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    settings.MARKETPLACE_COPY_MAX_AGE_SECONDS = 0
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    assert CopyTrade.objects.get(subscription=sub).code == "too_late"
    assert not Order.objects.filter(account_id=sub.account_id).exists()


def test_open_existing_copies_the_leaders_current_position_once(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    leader_fill(deployment, paper_btc, side="buy", quantity="3", bar=1, price=100)
    sub = make_follower(listing, 1, multiplier=D("0.5"), allocation="5000", open_existing=True)
    assert fanout.copy_open_existing(subscription_id=sub.pk) == 1
    assert fanout.copy_open_existing(subscription_id=sub.pk) == 1  # the same order, found again
    assert Order.objects.filter(account_id=sub.account_id).count() == 1
    assert _position(sub) == D("1.5")


def test_copy_slippage_is_measured_against_the_leaders_price(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="5000")
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    _set_price(paper_btc, 2, 101)  # the follower buys at 101: 100 bps worse
    fanout.copy_fanout_run(leader_fill_id=fill.pk)
    copy_fill = Fill.objects.get(account_id=sub.account_id)
    assert copy_fill.price == D("101") and copy_fill.expected_price == D("100")
    assert copy_fill.slippage_bps == D("100")


def test_a_later_fill_waits_for_the_copy_of_an_earlier_one(alice: Any, paper_btc: Any) -> None:
    # given: the leader opens (F1) and closes (F2); F1's chunk has not run for the follower yet
    # (its worker was killed, say), and F2's chunk comes first
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="5000")
    opened = leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100)
    closed = leader_fill(deployment, paper_btc, side="sell", quantity="2", bar=2, price=101)
    # when F2's chunk runs first, it puts the follower back instead of copying the close
    assert fanout.copy_fanout_chunk(leader_fill_id=closed.pk, subscription_ids=[sub.pk]) == {}
    assert not CopyTrade.objects.filter(subscription=sub).exists()
    # then, once F1 is copied, F2 is: the follower ends flat, as the leader
    fanout.copy_fanout_chunk(leader_fill_id=opened.pk, subscription_ids=[sub.pk])
    fanout.copy_fanout_chunk(leader_fill_id=closed.pk, subscription_ids=[sub.pk], deferrals=1)
    assert _position(sub) == D("0")
    assert CopyTrade.objects.get(subscription=sub, leader_fill=closed).order.side == "sell"


def test_a_fill_stops_waiting_after_the_last_deferral(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="5000")
    leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)  # never copied
    second = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_fanout_chunk(leader_fill_id=second.pk, subscription_ids=[sub.pk], deferrals=fanout.MAX_DEFERRALS)
    assert _position(sub) == D("1")


def test_the_allocation_counts_the_copies_in_other_instruments(alice: Any, paper_btc: Any) -> None:
    from apps.marketdata.models import Instrument

    eth, _ = Instrument.objects.get_or_create(
        venue="papertest", symbol="ETH/USDT", defaults={"base": "ETH", "quote": "USDT", "lot_size": D("0.001")}
    )
    candles_write(instrument=eth, timeframe="1h", frame=bar_frame(T0, 50, 50, 50, 50))
    _, deployment, listing = make_leader(alice, paper_btc)
    deployment.instruments.add(eth)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="300")
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100).pk
    )
    assert _position(sub) == D("2")  # 200 of the 300
    # the leader buys 4 ETH at 50 (200): only the 100 left of the allocation is copied
    eth_fill = leader_fill(deployment, eth, side="buy", quantity="4", bar=5, price=50)
    fanout.copy_fanout_run(leader_fill_id=eth_fill.pk)
    eth_position = Position.objects.get(deployment_id=sub.deployment_id, instrument=eth)
    assert eth_position.quantity == D("2")


def test_joining_opens_the_position_as_of_subscribing_not_the_later_fills(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    leader_fill(deployment, paper_btc, side="buy", quantity="3", bar=1, price=100)
    sub = make_follower(listing, 1, multiplier=D("0.5"), allocation="5000", open_existing=True)
    # the leader adds 1 after the follower joined and before the joining task ran
    later = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_open_existing(subscription_id=sub.pk)
    fanout.copy_fanout_run(leader_fill_id=later.pk)
    assert _position(sub) == D("2")  # 0.5 x (3 + 1), not 0.5 x (4 + 1)


def test_a_listing_back_in_review_after_new_terms_still_copies(alice: Any, paper_btc: Any) -> None:
    _, deployment, listing = make_leader(alice, paper_btc)
    sub = make_follower(listing, 1, multiplier=D("1"), allocation="5000")
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.PENDING)
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100).pk
    )
    assert _position(sub) == D("1")
    # rejected: what the leader closes is still closed for the follower, nothing new opens
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.REJECTED)
    add = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=2, price=100)
    fanout.copy_fanout_run(leader_fill_id=add.pk)
    assert CopyTrade.objects.get(subscription=sub, leader_fill=add).code == "listing_not_approved"
    fanout.copy_fanout_run(
        leader_fill_id=leader_fill(deployment, paper_btc, side="sell", quantity="2", bar=3, price=100).pk
    )
    assert _position(sub) == D("0")


def test_copies_are_notified_in_one_batch_on_the_default_queue(
    alice: Any, paper_btc: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    from apps.notifications.models import Event, Notification
    from apps.trades import tasks

    # What is published is recorded instead of sent (no worker runs here); the task runs below.
    queued: list[tuple[Any, Any]] = []
    monkeypatch.setattr(tasks.fills_notify, "apply_async", lambda args, **options: queued.append((args, options)))
    _, deployment, listing = make_leader(alice, paper_btc)
    subs = [make_follower(listing, n, multiplier=D("1"), allocation="5000") for n in range(3)]
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="1", bar=1, price=100)
    with django_capture_on_commit_callbacks(execute=True):
        fanout.copy_fanout_run(leader_fill_id=fill.pk)
    # one task for the chunk's three fills, on the default queue, not the orders queue
    ((fill_ids,), options) = queued[0]
    assert len(queued) == 1 and options == {"queue": "default"}
    copies = Fill.objects.filter(account_id__in=[s.account_id for s in subs])
    assert sorted(fill_ids) == sorted(copies.values_list("pk", flat=True))
    # the task writes each follower's "order filled" once, however often it runs
    tasks.fills_notify(fill_ids)
    tasks.fills_notify(fill_ids)
    for sub in subs:
        (notice,) = Notification.objects.filter(user=sub.follower, event=Event.ORDER_FILLED)
        assert notice.title.startswith("BUY 1 BTC/USDT @ 100")
