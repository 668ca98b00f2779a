"""The subscription pages: subscribe (the form and every refusal: nothing is created), my
subscriptions, a subscription's page (copy book P&L, copied trades beside the leader's fills with
slippage, fee statement), and pause / resume / unsubscribe / edit through the services.

The helpers at the top (a leader with an approved listing, a leader fill, a subscription) are
shared by the other copy-trading test files; they use the real services: the listing service and
staff approval, the paper venue's batch execution for the leader's fill, the subscription service
and the fan-out.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils.html import escape

from apps.accounts.models import TradingAccount
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.marketplace.models import CopyTrade, FeeEntry, Listing, Subscription
from apps.marketplace.services import listings as listing_services
from apps.marketplace.services import subscriptions as subscription_services
from apps.marketplace.services.fanout import copy_fanout_run
from apps.strategies.models import Deployment
from apps.trades import client_ids
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill
from apps.trades.services.batch import orders_execute_paper_batch
from tests.trades.execution_support import HOUR, T0, bar_frame, make_deployment, make_paper_account

D = Decimal
pytestmark = pytest.mark.django_db


# --- shared helpers (imported by the other copy-trading test files) -------------------------------


def btc_market(price: float = 100.0) -> Instrument:
    instrument, _ = Instrument.objects.get_or_create(
        venue="papertest",
        symbol="BTC/USDT",
        defaults={"base": "BTC", "quote": "USDT", "tick_size": D("0.01"), "lot_size": D("0.001")},
    )
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(T0, price, price, price, price))
    return instrument


def move_price(instrument: Instrument, price: float, bar: int = 1) -> None:
    """A newer closed bar: the newest price (what copies are sized and filled at) moves."""
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(T0 + bar * HOUR, price, price, price, price))


def approved_listing(leader: Any, staff: Any, instrument: Instrument, **terms: Any) -> Listing:
    """``leader``'s running paper deployment, listed, submitted and approved by ``staff``."""
    account = make_paper_account(leader, name="Leader paper", usdt="100000")
    deployment = make_deployment(account, instrument)
    listing = listing_services.listing_create(
        owner=leader, deployment_id=deployment.pk, title=terms.pop("title", "Steady BTC"), **terms
    )
    listing = listing_services.listing_submit(listing=listing, actor=leader)
    return listing_services.listing_approve(listing=listing, actor=staff)


def leader_fill(listing: Listing, *, side: str = "buy", quantity: str = "1", price: float = 100.0) -> Fill:
    """A fill of the leader's deployment on the paper venue (at the newest price)."""
    deployment = listing.deployment
    instrument = deployment.instruments.get()
    intent = OrderIntent(
        account_id=deployment.account_id,
        instrument_id=instrument.pk,
        side=side,
        type="market",
        quantity=D(quantity),
        deployment_id=deployment.pk,
        client_order_id=client_ids.manual_order_id(),
        expected_price=D(str(price)),
        source="strategy",
    )
    outcome = orders_execute_paper_batch(intents=[intent], instrument=instrument)[0]
    assert outcome.refusal is None, outcome.refusal
    return Fill.objects.get(order=outcome.order)


def subscribe(follower: Any, listing: Listing, *, account: TradingAccount | None = None, **terms: Any) -> Subscription:
    account = account or make_paper_account(follower, name=f"{follower.email} paper", usdt="50000")
    terms.setdefault("allocation", D("10000"))
    return subscription_services.subscription_create(follower=follower, listing=listing, account_id=account.pk, **terms)


def copy(fill: Fill) -> list[CopyTrade]:
    copy_fanout_run(leader_fill_id=fill.pk)
    return list(CopyTrade.objects.filter(leader_fill=fill).order_by("pk"))


@pytest.fixture
def market(db: Any) -> Instrument:
    return btc_market()


@pytest.fixture
def listing(alice: Any, staff: Any, market: Instrument) -> Listing:
    return approved_listing(alice, staff, market, min_allocation=D("1000"), monthly_fee=D("30"))


@pytest.fixture
def bob_paper(bob: Any) -> TradingAccount:
    return make_paper_account(bob, name="Bob paper", usdt="50000")


def _post(client: Any, url: str, **data: Any) -> Any:
    body = {"sizing_mode": "equity_ratio", "multiplier": "1", **data}
    return client.post(url, {k: v for k, v in body.items() if v is not None})


def _assert_nothing_created(bob: Any) -> None:
    assert not Subscription.objects.filter(follower=bob).exists()
    assert not Deployment.objects.filter(owner=bob, kind=Deployment.Kind.COPY).exists()


# --- subscribe -------------------------------------------------------------------------------------


def test_subscribe_page_lists_only_own_active_accounts(client, bob, mallory, listing, bob_paper):
    # given: mallory's account and a disabled account of bob's
    make_paper_account(mallory, name="Mallory paper")
    disabled = make_paper_account(bob, name="Bob old")
    disabled.status = TradingAccount.Status.DISABLED
    disabled.save()
    client.force_login(bob)
    # when
    response = client.get(reverse("marketplace:subscribe", args=[listing.pk]))
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "Bob paper" in html
    assert "Mallory paper" not in html and "Bob old" not in html
    assert "Steady BTC" in html


def test_subscribe_form_creates_the_subscription(client, bob, listing, bob_paper):
    client.force_login(bob)
    response = _post(
        client,
        reverse("marketplace:subscribe", args=[listing.pk]),
        account=bob_paper.pk,
        allocation="5000",
        sizing_mode="multiplier",
        multiplier="0.5",
        max_loss="500",
        max_position_notional="2000",
        max_price_deviation_pct="1.5",
        show_identity="on",
    )
    subscription = Subscription.objects.get(follower=bob)
    assert response.status_code == 302
    assert response["Location"] == reverse("marketplace:subscription-detail", args=[subscription.pk])
    assert subscription.account == bob_paper and subscription.listing == listing
    assert subscription.allocation == D("5000") and subscription.sizing_mode == "multiplier"
    assert subscription.multiplier == D("0.5") and subscription.max_loss == D("500")
    assert subscription.max_position_notional == D("2000") and subscription.max_price_deviation_pct == D("1.5")
    assert subscription.show_identity is True and subscription.open_existing is False
    assert subscription.deployment.kind == Deployment.Kind.COPY and subscription.deployment.owner == bob


def test_subscribe_with_someone_elses_account_is_refused(client, bob, mallory, listing, bob_paper):
    theirs = make_paper_account(mallory, name="Mallory paper")
    client.force_login(bob)
    response = _post(client, reverse("marketplace:subscribe", args=[listing.pk]), account=theirs.pk, allocation="2000")
    assert response.status_code == 200
    assert "Select a valid choice" in response.context["form"].errors["account"][0]
    _assert_nothing_created(bob)


@pytest.mark.parametrize(
    ("allocation", "message"),
    [("500", "The minimum allocation is 1000"), ("60000", "above what the account has free")],
)
def test_subscribe_with_a_bad_allocation_shows_it_at_the_allocation(
    client, bob, listing, bob_paper, allocation, message
):
    client.force_login(bob)
    response = _post(
        client, reverse("marketplace:subscribe", args=[listing.pk]), account=bob_paper.pk, allocation=allocation
    )
    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors["allocation"])
    assert message in response.content.decode()
    _assert_nothing_created(bob)


def test_subscribe_to_ones_own_listing_is_refused(client, alice, listing):
    account = make_paper_account(alice, name="Alice second")
    client.force_login(alice)
    page = client.get(reverse("marketplace:subscribe", args=[listing.pk]))
    assert "your own listing" in page.content.decode()
    response = _post(client, reverse("marketplace:subscribe", args=[listing.pk]), account=account.pk, allocation="2000")
    assert response.status_code == 200
    assert "You cannot subscribe to your own listing." in response.context["form"].non_field_errors()
    assert not Subscription.objects.exists()


def test_subscribe_to_an_unapproved_listing_is_refused(client, bob, listing, bob_paper, staff):
    listing_services.listing_suspend(listing=listing, actor=staff, reason="Under review.")
    client.force_login(bob)
    response = _post(
        client, reverse("marketplace:subscribe", args=[listing.pk]), account=bob_paper.pk, allocation="2000"
    )
    assert response.status_code == 200
    assert "not open to subscribers" in " ".join(response.context["form"].non_field_errors())
    _assert_nothing_created(bob)


def test_subscribe_to_someone_elses_draft_is_404(client, bob, mallory, market, bob_paper):
    account = make_paper_account(mallory, name="Mallory paper")
    draft = listing_services.listing_create(
        owner=mallory, deployment_id=make_deployment(account, market).pk, title="Secret"
    )
    client.force_login(bob)
    assert client.get(reverse("marketplace:subscribe", args=[draft.pk])).status_code == 404
    response = _post(client, reverse("marketplace:subscribe", args=[draft.pk]), account=bob_paper.pk, allocation="2000")
    assert response.status_code == 404
    _assert_nothing_created(bob)


def test_fixed_notional_without_the_notional_is_shown_at_that_field(client, bob, listing, bob_paper):
    client.force_login(bob)
    response = _post(
        client,
        reverse("marketplace:subscribe", args=[listing.pk]),
        account=bob_paper.pk,
        allocation="2000",
        sizing_mode="fixed_notional",
    )
    assert response.status_code == 200
    assert response.context["form"].errors["fixed_notional"]
    _assert_nothing_created(bob)


def test_subscribe_requires_login(client, listing):
    response = client.get(reverse("marketplace:subscribe", args=[listing.pk]))
    assert response.status_code == 302 and "login" in response["Location"]


# --- my subscriptions and a subscription's page ------------------------------------------------------


def test_subscription_list_shows_only_mine(client, bob, mallory, listing):
    mine = subscribe(bob, listing)
    theirs = subscribe(mallory, listing, allocation=D("2000"))
    client.force_login(bob)
    html = client.get(reverse("marketplace:subscription-list")).content.decode()
    assert f'data-subscription-id="{mine.pk}"' in html
    assert f'data-subscription-id="{theirs.pk}"' not in html


def test_subscription_page_is_404_for_an_outsider(client, bob, mallory, listing):
    subscription = subscribe(bob, listing)
    client.force_login(mallory)
    assert client.get(reverse("marketplace:subscription-detail", args=[subscription.pk])).status_code == 404
    for action in ("pause", "resume", "unsubscribe"):
        url = reverse("marketplace:subscription-action", args=[subscription.pk, action])
        assert client.post(url, {"close_positions": "1"}).status_code == 404
    edit = reverse("marketplace:subscription-edit", args=[subscription.pk])
    assert client.post(edit, {"allocation": "1", "sizing_mode": "equity_ratio"}).status_code == 404
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE and subscription.allocation == D("10000")


def test_subscription_page_shows_copied_trades_beside_the_leaders_with_slippage(client, bob, listing, market):
    # given: bob copies; the leader buys at 100, and the price is 101 when the copy is placed
    subscription = subscribe(bob, listing, sizing_mode="multiplier", multiplier=D("0.5"))
    fill = leader_fill(listing, quantity="2")
    move_price(market, 101.0)
    [copy_trade] = copy(fill)
    assert copy_trade.status == CopyTrade.Status.ORDERED
    client.force_login(bob)
    # when
    response = client.get(reverse("marketplace:subscription-detail", args=[subscription.pk]))
    # then
    html = response.content.decode()
    row = response.context["copies"][0]
    assert row.copy == copy_trade
    assert row.copy.leader_price == fill.price == D("100")
    assert row.average_price == copy_trade.order.average_price
    expected = ((row.average_price - D(100)) / D(100) * 10000).quantize(D("0.01"))
    assert row.slippage_bps == expected and expected > 0  # bought higher than the leader: worse
    assert f'data-copy="{copy_trade.pk}"' in html
    assert str(expected) in html
    assert response.context["pnl"]["fills"] == 1
    assert len(response.context["positions"]) == 1


def test_subscription_page_shows_a_skipped_copy_with_its_reason(client, bob, listing, market):
    subscription = subscribe(bob, listing, max_price_deviation_pct=D("0.5"))
    fill = leader_fill(listing, quantity="1")
    move_price(market, 105.0)  # 5 % away from the leader's fill: the guard skips the copy
    [copy_trade] = copy(fill)
    assert copy_trade.status == CopyTrade.Status.SKIPPED
    client.force_login(bob)
    html = client.get(reverse("marketplace:subscription-detail", args=[subscription.pk])).content.decode()
    assert copy_trade.reason and escape(copy_trade.reason) in html
    assert "Skipped" in html


def test_pause_resume_and_unsubscribe_from_the_page(client, bob, listing):
    subscription = subscribe(bob, listing)
    client.force_login(bob)
    url = lambda action: reverse("marketplace:subscription-action", args=[subscription.pk, action])  # noqa: E731
    client.post(url("pause"))
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAUSED
    client.post(url("resume"))
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    response = client.post(url("unsubscribe"), {"close_positions": "1"})
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ENDED and subscription.ended_at is not None
    assert response.status_code == 302
    page = client.get(reverse("marketplace:subscription-detail", args=[subscription.pk])).content.decode()
    assert 'id="pause-subscription"' not in page and 'id="unsubscribe"' not in page


def test_a_refused_action_shows_the_reason(client, bob, listing):
    subscription = subscribe(bob, listing)
    subscription_services.subscription_unsubscribe(subscription=subscription, actor=bob, close_positions=False)
    client.force_login(bob)
    response = client.post(reverse("marketplace:subscription-action", args=[subscription.pk, "resume"]), follow=True)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ENDED
    messages = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert messages and messages[0][0] == "error" and "Resumed" not in messages[0][1]


def test_edit_limits_through_the_form(client, bob, listing):
    subscription = subscribe(bob, listing)
    client.force_login(bob)
    url = reverse("marketplace:subscription-edit", args=[subscription.pk])
    assert client.get(url).status_code == 200
    response = _post(client, url, allocation="4000", max_loss="300", max_price_deviation_pct="2")
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.allocation == D("4000") and subscription.max_loss == D("300")
    assert subscription.max_price_deviation_pct == D("2")


def test_edit_with_a_bad_allocation_changes_nothing(client, bob, listing):
    subscription = subscribe(bob, listing)
    client.force_login(bob)
    response = _post(client, reverse("marketplace:subscription-edit", args=[subscription.pk]), allocation="10")
    assert response.status_code == 200
    assert response.context["form"].errors["allocation"]
    subscription.refresh_from_db()
    assert subscription.allocation == D("10000")


def test_subscription_page_shows_the_fee_statement(client, bob, listing):
    subscription = subscribe(bob, listing)
    Subscription.objects.filter(pk=subscription.pk).update(started_at=datetime(2024, 1, 1, tzinfo=UTC))
    from apps.marketplace.services.fees import fees_accrue

    fees_accrue(now=datetime(2024, 3, 1, 1, tzinfo=UTC))
    client.force_login(bob)
    response = client.get(reverse("marketplace:subscription-detail", args=[subscription.pk]))
    statement = response.context["statement"]
    assert [e.period_start.month for e in statement.entries] == [2, 1]
    assert statement.total == D("60")
    html = response.content.decode()
    assert 'id="fee-statement"' in html and "60.00 USDT" in html
    assert FeeEntry.objects.filter(subscription=subscription).count() == 2


def _listen(user_id: int) -> Any:
    """A channel in the user's group, as a websocket connection of theirs joins it."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from apps.common.broadcast import user_group

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user_id), channel)

    def received(until: Any) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []

        async def drain() -> None:
            import asyncio

            while not until(events):
                try:
                    message = await asyncio.wait_for(layer.receive(channel), 5)
                except TimeoutError:
                    return
                events.append((message["event"], message["data"]))

        async_to_sync(drain)()
        return events

    return received


def test_the_page_scripts_events_reach_the_follower(bob, listing, market, django_capture_on_commit_callbacks):
    """What static/marketplace/subscription.js listens to: ``copy.trade`` for this subscription
    (the payload of services.events.copy_trade_payload) and ``trade.fill`` / ``trade.order`` of
    this copy book, sent to the follower's connections after commit."""
    from apps.common.presence import presence_change

    subscription = subscribe(bob, listing, sizing_mode="multiplier", multiplier=D("1"))
    fill = leader_fill(listing, quantity="1")
    received = _listen(bob.pk)
    presence_change(bob.pk, +1)  # bob's page is open: live events go to open connections only
    try:
        with django_capture_on_commit_callbacks(execute=True):
            [copy_trade] = copy(fill)
        book = subscription.deployment_id

        def complete(events: list[tuple[str, dict[str, Any]]]) -> bool:
            names = {(name, data.get("deployment_id")) for name, data in events}
            return any(name == "copy.trade" for name, _ in events) and ("trade.fill", book) in names

        events = received(complete)
    finally:
        presence_change(bob.pk, -1)
    copies = [data for name, data in events if name == "copy.trade"]
    assert copies and copies[-1]["subscription_id"] == subscription.pk and copies[-1]["id"] == copy_trade.pk
    assert D(copies[-1]["leader_price"]) == fill.price and copies[-1]["order_status"] == "filled"
    assert copies[-1]["slippage_bps"] is not None
    assert ("trade.fill", book) in {(name, data.get("deployment_id")) for name, data in events}


# --- admin ------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(staff: Any, enable_2fa: Any) -> Any:
    from tests.users.steps import verified_client

    return verified_client(staff, enable_2fa(staff))


def test_admin_subscriptions_search_read_only_and_pause_resume_actions(staff_client, bob, mallory, listing):
    mine = subscribe(bob, listing)
    subscribe(mallory, listing, allocation=D("2000"))
    page = staff_client.get("/admin/marketplace/subscription/", {"q": "bob@example.com"}).content.decode()
    assert f"/admin/marketplace/subscription/{mine.pk}/change/" in page and "mallory@example.com" not in page
    assert (
        "bob@example.com" in staff_client.get("/admin/marketplace/subscription/", {"q": str(mine.pk)}).content.decode()
    )
    assert staff_client.get("/admin/marketplace/subscription/", {"q": "Steady"}).status_code == 200
    detail = staff_client.get(f"/admin/marketplace/subscription/{mine.pk}/change/").content.decode()
    assert 'name="allocation"' not in detail
    staff_client.post(
        "/admin/marketplace/subscription/", {"action": "pause", "_selected_action": [mine.pk], "note": ""}
    )
    mine.refresh_from_db()
    assert mine.status == Subscription.Status.PAUSED and "operator" in mine.status_reason
    staff_client.post("/admin/marketplace/subscription/", {"action": "resume", "_selected_action": [mine.pk]})
    mine.refresh_from_db()
    assert mine.status == Subscription.Status.ACTIVE


def test_admin_copy_trades_are_read_only_facts(staff_client, bob, listing):
    subscribe(bob, listing)
    [copy_trade] = copy(leader_fill(listing))
    assert staff_client.get("/admin/marketplace/copytrade/", {"q": str(copy_trade.pk)}).status_code == 200
    detail = staff_client.get(f"/admin/marketplace/copytrade/{copy_trade.pk}/change/").content.decode()
    assert 'name="quantity"' not in detail
    assert staff_client.get("/admin/marketplace/copytrade/add/").status_code == 403
