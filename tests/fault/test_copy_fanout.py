"""Issue 6 and RELIABILITY 7 / 8: the copy fan-out with real worker processes.

- A worker is killed (SIGKILL to the worker and its pool processes) while a fan-out chunk holds
  its followers' copies placed and filled but not committed, with other chunks committed and
  others still queued. After a restart (the late-acked messages come back after the test
  visibility timeout; the worker's start-up sweep re-queues what has no copy yet), every follower
  has exactly one order, one venue order and one fill for the leader's fill.
- Isolation: among the followers, one whose key the venue revoked (HTTP 401) and one without
  the cash. The others are filled; the revoked one is REJECTED after a single POST (no retry
  after an authentication error) and its subscription paused with the reason; the broke one's
  copy failed with the venue's reason; no one else is affected.
"""

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

D = Decimal
FOLLOWERS = 24
CHUNK = 6


def _candles(instrument: Any, closes: list[float], start: str = "2024-01-01") -> pd.DatetimeIndex:
    from apps.marketdata.storage import candles_write

    index = pd.date_range(start, periods=len(closes), freq="1min", tz="UTC")
    frame = pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": [100.0] * len(closes)}, index=index
    )
    candles_write(instrument=instrument, timeframe="1m", frame=frame)
    return index


def _leader(alice: Any, instrument: Any) -> tuple[Any, Any]:
    from apps.accounts.models import TradingAccount
    from apps.accounts.paper import paper_account_fund
    from apps.marketplace.models import Listing
    from apps.strategies.models import Deployment

    account = TradingAccount.objects.create(owner=alice, name="Leader", kind="paper", exchange_id="paper")
    paper_account_fund(account=account, balances={"USDT": D("1000000")})
    deployment = Deployment.objects.create(
        owner=alice, account=account, name="leader", strategy_key="sma_cross", timeframe="1m", capital=D("100000"),
        status=Deployment.Status.PAPER,
    )  # fmt: skip
    deployment.instruments.add(instrument)
    listing = Listing.objects.create(
        owner=alice, deployment=deployment, title="Leader", status=Listing.Status.APPROVED, currency="USDT"
    )
    return deployment, listing


def _paper_follower(listing: Any, n: int, usdt: str = "100000") -> Any:
    from apps.accounts.models import TradingAccount
    from apps.accounts.paper import paper_account_fund
    from apps.marketplace.services.subscriptions import subscription_create
    from tests.factories import UserFactory

    user = UserFactory(email=f"copier{n}@example.com")
    account = TradingAccount.objects.create(owner=user, name="Paper", kind="paper", exchange_id="paper")
    paper_account_fund(account=account, balances={"USDT": D(usdt)})
    return subscription_create(
        follower=user,
        listing=listing,
        account_id=account.pk,
        allocation="50000",
        sizing_mode="multiplier",
        multiplier="0.1",
    )


def _leader_fill(deployment: Any, instrument: Any, index: pd.DatetimeIndex, close: float) -> Any:
    """The leader buys 1 at the next bar's open: a real paper fill, recorded and announced (the
    announcement queues the fan-out to the workers)."""
    from apps.accounts.paper import paper_bar_closed
    from apps.trades.intents import OrderIntent
    from apps.trades.models import Fill
    from apps.trades.services.orders import order_submit, orders_sync_for_account

    order = order_submit(
        intent=OrderIntent(
            account_id=deployment.account_id, instrument_id=instrument.pk, deployment_id=deployment.pk, side="buy",
            quantity=D("1"), client_order_id="leader-buy-1", timeframe="1m",
        )
    )  # fmt: skip
    ts = index[-1] + pd.Timedelta(minutes=1)
    _candles(instrument, [close], start=str(ts))
    bar = {"open": close, "high": close, "low": close, "close": close, "volume": 100.0}
    paper_bar_closed(instrument_id=instrument.pk, timeframe="1m", ts=ts.to_pydatetime(), bar=bar)
    orders_sync_for_account(account_id=deployment.account_id, client_order_ids=[order.client_order_id])
    return Fill.objects.get(order=order)


def _copies_done(fill_id: int) -> int:
    from apps.marketplace.models import CopyTrade

    return CopyTrade.objects.filter(leader_fill_id=fill_id).count()


def test_worker_killed_mid_fanout_leaves_exactly_one_copy_per_follower(
    start_worker: Callable[..., CeleryWorker], worker_settings: dict[str, Any], fault_dir: Path, alice: Any, btc: Any
) -> None:
    from apps.accounts.models import PaperFill, PaperOrder
    from apps.marketplace.models import CopyTrade
    from apps.trades.models import Fill, Order, Position

    # given: a leader with 24 paper followers, fanned out 6 per chunk, and a worker whose first
    # chunk to place its copies then stalls inside its transaction
    worker_settings["MARKETPLACE_FANOUT_CHUNK"] = CHUNK
    index = _candles(btc, [100.0] * 30)
    deployment, listing = _leader(alice, btc)
    subs = [_paper_follower(listing, n) for n in range(FOLLOWERS)]
    once = fault_dir / "once"
    once.mkdir()
    first = start_worker(
        "first",
        queues="orders",
        extra_env={"TP_FAULT_POINTS": "copy_fanout.batched=sleep:60", "TP_FAULT_ONCE_DIR": str(once)},
    )

    # when: the leader's fill is announced, and the worker is killed while one chunk has placed
    # and filled its copies without committing them
    fill = _leader_fill(deployment, btc, index, 100.0)
    wait_until(lambda: (once / "copy_fanout.batched").exists(), timeout=60, what="a chunk inside its transaction")
    in_flight_seen = _copies_done(fill.pk)
    first.terminate(timeout=0)  # SIGKILL to the worker and its pool processes
    assert in_flight_seen < FOLLOWERS
    start_worker("second", queues="orders")

    # then: every follower has its copy, exactly once
    wait_until(lambda: _copies_done(fill.pk) >= FOLLOWERS, timeout=90, what="every follower's copy")
    for sub in subs:
        orders = Order.objects.filter(account_id=sub.account_id)
        assert orders.count() == 1, f"subscription {sub.pk}: {list(orders.values('client_order_id', 'status'))}"
        order = orders.get()
        assert order.status == "filled" and order.filled_quantity == D("0.1")
        assert PaperOrder.objects.filter(account_id=sub.account_id).count() == 1
        assert PaperFill.objects.filter(order__account_id=sub.account_id).count() == 1
        assert Fill.objects.filter(account_id=sub.account_id).count() == 1
        assert Position.objects.get(deployment_id=sub.deployment_id).quantity == D("0.1")
        assert CopyTrade.objects.get(subscription=sub, leader_fill=fill).order_id == order.pk


def test_one_followers_revoked_key_or_empty_account_affects_no_one_else(
    start_worker: Callable[..., CeleryWorker], venue: Any, alice: Any, btc: Any, enable_2fa: Any
) -> None:
    from apps.accounts.crypto import encrypt_credentials
    from apps.accounts.models import TradingAccount
    from apps.marketplace.models import CopyTrade, Subscription
    from apps.marketplace.services.subscriptions import subscription_create
    from apps.trades.models import Order
    from tests.factories import UserFactory

    # given: 18 healthy paper followers, one paper follower without the cash, and one on the
    # venue whose key has been revoked since it subscribed
    index = _candles(btc, [100.0] * 30)
    deployment, listing = _leader(alice, btc)
    healthy = [_paper_follower(listing, n) for n in range(18)]
    broke = _paper_follower(listing, 99, usdt="50000")
    from apps.accounts.models import PaperBalance

    PaperBalance.objects.filter(account_id=broke.account_id, asset="USDT").update(free=D("3"))
    revoked_user = UserFactory(email="revoked@example.com")
    revoked_account = TradingAccount.objects.create(
        owner=revoked_user, name="Binance", kind="ccxt", exchange_id="binance", base_currency="USDT",
        credentials_encrypted=encrypt_credentials({"apiKey": venue.api_key, "secret": venue.api_secret}),
        last_test={"balances": {"USDT": {"free": "100000"}}},
    )  # fmt: skip
    verified = _fresh_second_factor(revoked_user, enable_2fa(revoked_user))
    revoked = subscription_create(
        follower=revoked_user, listing=listing, account_id=revoked_account.pk, allocation="50000",
        sizing_mode="multiplier", multiplier="0.1", request=verified,
    )  # fmt: skip
    venue.revoked_key = True
    start_worker("worker", queues="orders")

    # when: the leader buys
    fill = _leader_fill(deployment, btc, index, 100.0)

    # then: the healthy ones are filled, each exactly once
    wait_until(lambda: _copies_done(fill.pk) >= 20, timeout=60, what="all 20 copies")
    for sub in healthy:
        assert Order.objects.get(account_id=sub.account_id).status == "filled"
    failed = CopyTrade.objects.get(subscription=broke, leader_fill=fill)
    assert failed.status == "failed" and "insufficient USDT" in failed.reason
    # the revoked one: rejected after one POST, its account to reconnect, its subscription paused
    order = CopyTrade.objects.get(subscription=revoked, leader_fill=fill).order
    wait_until(lambda: Order.objects.get(pk=order.pk).status == "rejected", timeout=30, what="the rejection")
    wait_until(
        lambda: Subscription.objects.get(pk=revoked.pk).status == "paused", timeout=30, what="the subscription paused"
    )
    assert venue.post_count(order.client_order_id) == 1  # sent once, never retried after the 401
    assert TradingAccount.objects.get(pk=revoked_account.pk).status == "needs_reconnect"
    assert "needs attention" in Subscription.objects.get(pk=revoked.pk).status_reason


def _fresh_second_factor(user: Any, device: Any) -> Any:
    """A request whose session verified ``user``'s second factor just now (live accounts need it)."""
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    from apps.users.second_factor import session_mark_verified

    request = RequestFactory().post("/")
    request.session = SessionStore()
    request.session[SESSION_KEY] = str(user.pk)
    request.user = user
    session_mark_verified(request=request, device=device)
    return request
