"""`seed_demo` (what `make run` starts with): Alice's demo deployment listed and approved, Bob
copying it with a paper account, and a fill of hers copied to him."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from apps.accounts.paper import paper_bar_closed
from apps.marketdata.models import CandleSeries
from apps.marketdata.storage import candles_write
from apps.marketplace.models import CopyTrade, Listing, Subscription
from apps.marketplace.services.fanout import copy_fanout_run
from apps.strategies.demo import DEPLOYMENT_NAME
from apps.strategies.models import Deployment
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill
from apps.trades.services.orders import order_submit, orders_sync_for_account
from tests.marketdata.test_demo import small_markets  # noqa: F401  (fixture)
from tests.trades.execution_support import bar_frame

pytestmark = pytest.mark.django_db


def test_demo_has_an_approved_listing_copied_by_bob(settings: Any, small_markets: None) -> None:  # noqa: F811
    settings.DEMO_CANDLES_DIR = ""
    with open("/dev/null", "w") as sink:
        call_command("seed_demo", stdout=sink)
        call_command("seed_demo", stdout=sink)  # idempotent
    leader = Deployment.objects.get(name=DEPLOYMENT_NAME)
    listing = Listing.objects.get(deployment=leader)
    assert listing.status == Listing.Status.APPROVED and listing.owner.email == "alice@demo.local"
    sub = Subscription.objects.get(listing=listing)
    assert sub.follower.email == "bob@demo.local" and sub.status == "active"
    assert sub.account.kind == "paper" and sub.deployment.kind == "copy"

    # Alice's deployment buys; the next bar fills it; Bob's copy follows.
    instrument = leader.instruments.get()
    series = CandleSeries.objects.get(instrument=instrument, timeframe="1m")
    order = order_submit(
        intent=OrderIntent(
            account_id=leader.account_id,
            instrument_id=instrument.pk,
            deployment_id=leader.pk,
            side="buy",
            quantity=Decimal("0.1"),
            client_order_id="demo-leader-1",
            timeframe="1m",
        )
    )
    ts = series.last_ts + timedelta(minutes=1)
    price = float(order.expected_price)
    candles_write(instrument=instrument, timeframe="1m", frame=bar_frame(ts, price, price, price, price))
    bar = {"open": price, "high": price, "low": price, "close": price}
    paper_bar_closed(instrument_id=instrument.pk, timeframe="1m", ts=ts, bar=bar)
    orders_sync_for_account(account_id=leader.account_id, client_order_ids=[order.client_order_id])
    fill = Fill.objects.get(order=order)
    assert copy_fanout_run(leader_fill_id=fill.pk) == 1
    copy = CopyTrade.objects.get(subscription=sub, leader_fill=fill)
    assert copy.status == "ordered" and copy.order.status == "filled"
