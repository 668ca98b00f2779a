# ruff: noqa: F811 - paper_btc is a fixture imported from tests.trades.execution_support

"""Shared fixtures of the marketplace tests (listings and copy trading).

- ``leader_account``: alice's funded paper account (100,000 USDT, fee 0.1%).
- ``leader_deployment``: alice's running paper deployment "BTC trend" (capital 10,000) on
  ``paper_btc`` (papertest BTC/USDT, 1h), no fills yet.
- ``leader_trade(deployment, instrument, side=, quantity=, bar=, open_=, close=)``: a real leader
  fill: a market order of the deployment through the execution service, filled by the paper
  venue at the open of bar ``bar`` (open time T0 + bar hours; T0 = 2024-01-01 UTC) and synced.
- ``leader_with_fills``: ``leader_deployment`` after the sequence LEADER_FILLS below (three
  fills over three days, day closes stored), so its track record is known by hand.
- ``make_listing(deployment=None, **fields)``: a draft listing through ``listing_create``
  (alice has no 2FA and the deployment is paper, so no second factor is asked).
- ``approved_listing``: a listing of ``leader_with_fills``, submitted by alice and approved by
  ``staff``, its stats refreshed as of the end of day 3.
- ``make_subscriber(user, listing, allocation="1000")``: ``user`` subscribes a fresh paper
  account to ``listing`` through ``subscription_create``.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import TradingAccount
from apps.marketdata.models import Instrument
from apps.marketplace.models import Listing, Subscription
from apps.marketplace.services import listings as listing_services
from apps.marketplace.services.track_record import listing_stats_refresh
from apps.strategies.models import Deployment
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill
from apps.trades.services.orders import order_submit, orders_sync_for_account
from tests.trades.execution_support import close_bar, make_deployment, make_paper_account, paper_btc  # noqa: F401

D = Decimal
# (bar, side, quantity, open = fill price, close); bars with side None only store the day's close.
LEADER_FILLS: list[tuple[int, str | None, str, float, float]] = [
    (1, "buy", "10", 100.0, 102.0),  # 2024-01-01 01:00, fee 1.0
    (23, None, "0", 104.0, 104.0),  # day 1 closes at 104
    (30, "sell", "10", 110.0, 111.0),  # 2024-01-02 06:00, fee 1.1
    (47, None, "0", 108.0, 108.0),  # day 2 closes at 108 (flat)
    (50, "buy", "5", 120.0, 118.0),  # 2024-01-03 02:00, fee 0.6
    (71, None, "0", 100.0, 100.0),  # day 3 closes at 100
]
END_OF_DAY_3 = datetime(2024, 1, 3, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def leader_account(alice: Any, paper_btc: Instrument) -> TradingAccount:
    return make_paper_account(alice, name="Leader paper", costs={"fee": 0.001})


@pytest.fixture
def leader_deployment(leader_account: TradingAccount, paper_btc: Instrument) -> Deployment:
    return make_deployment(leader_account, paper_btc, name="BTC trend", capital=D("10000"))


def _leader_trade(
    capture: Any,
    deployment: Deployment,
    instrument: Instrument,
    *,
    side: str,
    quantity: str,
    bar: int,
    open_: float,
    close: float | None = None,
) -> Fill:
    close = open_ if close is None else close
    with capture(execute=True):
        order = order_submit(
            intent=OrderIntent(
                account_id=deployment.account_id,
                instrument_id=instrument.pk,
                deployment_id=deployment.pk,
                side=side,
                quantity=D(quantity),
                client_order_id=f"lead-{deployment.pk}-{bar}-{side}",
                timeframe="1h",
            )
        )
    with capture(execute=True):
        close_bar(instrument, bar, open_, max(open_, close) + 1, min(open_, close) - 1, close)
    orders_sync_for_account(account_id=deployment.account_id, client_order_ids=[order.client_order_id])
    return Fill.objects.get(order=order)


@pytest.fixture
def leader_trade(django_capture_on_commit_callbacks: Any) -> Callable[..., Fill]:
    def trade(deployment: Deployment, instrument: Instrument, **kwargs: Any) -> Fill:
        return _leader_trade(django_capture_on_commit_callbacks, deployment, instrument, **kwargs)

    return trade


@pytest.fixture
def leader_with_fills(
    leader_deployment: Deployment, paper_btc: Instrument, django_capture_on_commit_callbacks: Any
) -> Deployment:
    for bar, side, quantity, open_, close in LEADER_FILLS:
        if side is None:
            with django_capture_on_commit_callbacks(execute=True):
                close_bar(paper_btc, bar, open_, open_, close, close)
        else:
            _leader_trade(
                django_capture_on_commit_callbacks,
                leader_deployment,
                paper_btc,
                side=side,
                quantity=quantity,
                bar=bar,
                open_=open_,
                close=close,
            )
    return leader_deployment


@pytest.fixture
def make_listing(leader_deployment: Deployment) -> Callable[..., Listing]:
    def make(deployment: Deployment | None = None, **fields: Any) -> Listing:
        deployment = deployment or leader_deployment
        values: dict[str, Any] = {"title": f"{deployment.name} listed", "description": "Trend following on BTC."}
        values.update(fields)
        return listing_services.listing_create(owner=deployment.owner, deployment_id=deployment.pk, **values)

    return make


def approve(listing: Listing, staff: Any) -> Listing:
    """Submit (as the owner, who has no 2FA here) and approve (as staff)."""
    listing = listing_services.listing_submit(listing=listing, actor=listing.owner)
    return listing_services.listing_approve(listing=listing, actor=staff)


@pytest.fixture
def approved_listing(leader_with_fills: Deployment, make_listing: Callable[..., Listing], staff: Any) -> Listing:
    listing = approve(
        make_listing(leader_with_fills, title="BTC trend follower", tags=["trend", "btc"], trade_delay_minutes=60),
        staff,
    )
    listing_stats_refresh(listing_id=listing.pk, as_of=END_OF_DAY_3)
    listing.refresh_from_db()
    return listing


@pytest.fixture
def make_subscriber() -> Callable[..., Subscription]:
    def subscribe(user: Any, listing: Listing, allocation: str = "1000") -> Subscription:
        from apps.marketplace.services.subscriptions import subscription_create

        account = make_paper_account(
            user, name=f"Copy paper {TradingAccount.objects.count() + 1}", costs={"fee": 0.001}
        )
        return subscription_create(follower=user, listing=listing, account_id=account.pk, allocation=allocation)

    return subscribe
