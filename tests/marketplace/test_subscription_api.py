"""The subscriptions API: owner-scoped (mallory gets 404 and changes nothing), refusals name the
field and create nothing, unknown fields (status, follower, high_water_mark) are a 400."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from apps.marketplace.models import CopyTrade, Subscription
from apps.marketplace.services.fees import fees_accrue
from apps.strategies.models import Deployment
from tests.marketplace.test_subscription_views import (
    approved_listing,
    btc_market,
    copy,
    leader_fill,
    move_price,
    subscribe,
)
from tests.trades.execution_support import make_paper_account

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(alice: Any, staff: Any) -> Any:
    return approved_listing(alice, staff, btc_market(), min_allocation=D("1000"), monthly_fee=D("30"))


def _as(api_client: Any, user: Any) -> Any:
    api_client.force_authenticate(user)
    return api_client


def test_create_list_and_retrieve(api_client, bob, listing):
    account = make_paper_account(bob, name="Bob paper", usdt="50000")
    client = _as(api_client, bob)
    body = {
        "listing": listing.pk,
        "account": account.pk,
        "allocation": "5000",
        "sizing_mode": "fixed_notional",
        "fixed_notional": "500",
        "max_loss": "400",
        "max_price_deviation_pct": "1.25",
        "show_identity": True,
    }
    response = client.post(reverse("api:subscription-list"), body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    subscription = Subscription.objects.get(follower=bob)
    assert data["id"] == subscription.pk and response["Location"].endswith(f"/subscriptions/{subscription.pk}/")
    assert data["status"] == "active" and D(data["allocation"]) == D("5000")
    assert data["sizing_mode"] == "fixed_notional" and D(data["fixed_notional"]) == D("500")
    assert D(data["pnl"]["equity"]) == D("5000")
    listed = client.get(reverse("api:subscription-list")).json()
    assert [row["id"] for row in listed["results"]] == [subscription.pk]
    assert (
        client.get(reverse("api:subscription-detail", args=[subscription.pk])).json()["listing_title"] == "Steady BTC"
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"allocation": "10"}, "allocation"),
        ({"allocation": "999999"}, "allocation"),
        ({"account": "theirs"}, "account_id"),
        ({"sizing_mode": "fixed_notional"}, "fixed_notional"),
    ],
)
def test_create_refusals_name_the_field_and_create_nothing(api_client, bob, mallory, listing, change, field):
    mine = make_paper_account(bob, name="Bob paper", usdt="50000")
    theirs = make_paper_account(mallory, name="Mallory paper")
    body = {"listing": listing.pk, "account": mine.pk, "allocation": "2000", **change}
    if body["account"] == "theirs":
        body["account"] = theirs.pk
    response = _as(api_client, bob).post(reverse("api:subscription-list"), body, format="json")
    assert response.status_code == 400
    assert field in str(response.json())
    assert not Subscription.objects.exists()
    assert not Deployment.objects.filter(kind=Deployment.Kind.COPY).exists()


def test_create_refuses_own_and_unapproved_listings(api_client, alice, bob, staff, listing):
    from apps.marketplace.services import listings as listing_services

    own = make_paper_account(alice, name="Alice 2")
    response = _as(api_client, alice).post(
        reverse("api:subscription-list"),
        {"listing": listing.pk, "account": own.pk, "allocation": "2000"},
        format="json",
    )
    assert response.status_code == 400 and "own listing" in str(response.json())
    listing_services.listing_suspend(listing=listing, actor=staff, reason="Checking the track record.")
    account = make_paper_account(bob, name="Bob paper")
    response = _as(api_client, bob).post(
        reverse("api:subscription-list"),
        {"listing": listing.pk, "account": account.pk, "allocation": "2000"},
        format="json",
    )
    assert response.status_code == 400 and "not open to subscribers" in str(response.json())
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("field", ["status", "follower", "high_water_mark", "started_at"])
def test_mass_assignment_is_refused(api_client, bob, listing, field):
    account = make_paper_account(bob, name="Bob paper")
    client = _as(api_client, bob)
    body = {"listing": listing.pk, "account": account.pk, "allocation": "2000", field: "1"}
    assert client.post(reverse("api:subscription-list"), body, format="json").status_code == 400
    assert not Subscription.objects.exists()
    subscription = subscribe(bob, listing)
    response = client.patch(reverse("api:subscription-detail", args=[subscription.pk]), {field: "1"}, format="json")
    assert response.status_code == 400
    fresh = Subscription.objects.get(pk=subscription.pk)
    assert (fresh.status, fresh.follower_id, fresh.high_water_mark) == ("active", bob.pk, D("10000"))


def test_patch_limits_and_actions(api_client, bob, listing):
    subscription = subscribe(bob, listing)
    client = _as(api_client, bob)
    url = reverse("api:subscription-detail", args=[subscription.pk])
    response = client.patch(url, {"max_loss": "250", "show_identity": True}, format="json")
    assert response.status_code == 200 and D(response.json()["max_loss"]) == D("250")
    assert response.json()["show_identity"] is True
    assert client.patch(url, {"allocation": "5"}, format="json").status_code == 400
    assert Subscription.objects.get(pk=subscription.pk).allocation == D("10000")
    assert client.post(reverse("api:subscription-pause", args=[subscription.pk])).json()["status"] == "paused"
    assert client.post(reverse("api:subscription-resume", args=[subscription.pk])).json()["status"] == "active"
    ended = client.post(
        reverse("api:subscription-unsubscribe", args=[subscription.pk]), {"close_positions": True}, format="json"
    )
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert client.post(reverse("api:subscription-resume", args=[subscription.pk])).status_code == 409


def test_copies_and_fees(api_client, bob, listing):
    subscription = subscribe(bob, listing, sizing_mode="multiplier", multiplier=D("1"))
    fill = leader_fill(listing, quantity="1")
    move_price(listing.deployment.instruments.get(), 100.5)
    [copy_trade] = copy(fill)
    client = _as(api_client, bob)
    rows = client.get(reverse("api:subscription-copies", args=[subscription.pk])).json()["results"]
    assert [r["id"] for r in rows] == [copy_trade.pk]
    row = rows[0]
    assert row["status"] == CopyTrade.Status.ORDERED and D(row["leader_price"]) == D("100")
    assert D(row["average_price"]) == copy_trade.order.average_price
    assert D(row["slippage_bps"]) == ((copy_trade.order.average_price - 100) / 100 * 10000).quantize(D("0.01"))
    Subscription.objects.filter(pk=subscription.pk).update(started_at=datetime(2024, 1, 1, tzinfo=UTC))
    fees_accrue(now=datetime(2024, 2, 1, 1, tzinfo=UTC))
    statement = client.get(reverse("api:subscription-fees", args=[subscription.pk])).json()
    assert D(statement["total"]) == D("30") and statement["currency"] == "USDT"
    assert [(e["kind"], e["period_start"]) for e in statement["entries"]] == [("monthly", "2024-01-01")]


def test_outsider_gets_404_everywhere_and_changes_nothing(api_client, bob, mallory, listing):
    subscription = subscribe(bob, listing)
    client = _as(api_client, mallory)
    pk = subscription.pk
    for name in ("api:subscription-detail", "api:subscription-copies", "api:subscription-fees"):
        assert client.get(reverse(name, args=[pk])).status_code == 404
    assert (
        client.patch(reverse("api:subscription-detail", args=[pk]), {"max_loss": "1"}, format="json").status_code == 404
    )
    for name in ("api:subscription-pause", "api:subscription-resume", "api:subscription-unsubscribe"):
        assert client.post(reverse(name, args=[pk]), {}, format="json").status_code == 404
    assert client.get(reverse("api:subscription-list")).json()["results"] == []
    fresh = Subscription.objects.get(pk=pk)
    assert fresh.status == "active" and fresh.max_loss is None


def test_list_is_bounded_in_queries(api_client, bob, listing, django_assert_max_num_queries):
    for n in range(3):
        subscribe(bob, listing, account=make_paper_account(bob, name=f"Bob {n}"), allocation=D("2000"))
    client = _as(api_client, bob)
    with django_assert_max_num_queries(8):
        assert len(client.get(reverse("api:subscription-list")).json()["results"]) == 3
