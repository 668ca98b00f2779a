"""The leader's dashboard and followers API: counts, capital following, the followers' aggregate
copy-book P&L, fee earnings, and identities only where the follower allowed it."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from apps.marketplace.models import Subscription
from apps.marketplace.selectors.subscriptions import copy_books_pnl, leader_listing_summary
from apps.marketplace.services import subscriptions as subscription_services
from apps.marketplace.services.fees import fee_split, fees_accrue
from apps.trades.services.positions import deployment_pnl_summary
from tests.factories import UserFactory
from tests.marketplace.test_subscription_views import (
    approved_listing,
    btc_market,
    copy,
    leader_fill,
    move_price,
    subscribe,
)

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(alice: Any, staff: Any) -> Any:
    return approved_listing(alice, staff, btc_market(), monthly_fee=D("30"))


@pytest.fixture
def followers(listing: Any, bob: Any, mallory: Any) -> dict[str, Subscription]:
    carol = UserFactory(email="carol@example.com", display_name="Carol C")
    shown = subscribe(carol, listing, allocation=D("3000"), show_identity=True, sizing_mode="multiplier")
    hidden = subscribe(bob, listing, allocation=D("5000"), show_identity=False, sizing_mode="multiplier")
    paused = subscribe(mallory, listing, allocation=D("2000"), sizing_mode="multiplier")
    subscription_services.subscription_pause(subscription=paused, actor=mallory)
    return {"shown": shown, "hidden": hidden, "paused": paused}


def test_dashboard_figures(client, alice, listing, followers):
    # given: one copied buy that gained, and a month of fees
    fill = leader_fill(listing, quantity="2")
    copy(fill)
    move_price(listing.deployment.instruments.get(), 104.0)
    Subscription.objects.filter(listing=listing).update(started_at=datetime(2024, 1, 1, tzinfo=UTC))
    fees_accrue(now=datetime(2024, 2, 1, 1, tzinfo=UTC))
    # when
    client.force_login(alice)
    response = client.get(reverse("marketplace:leader-dashboard"))
    # then
    [summary] = response.context["summaries"]
    assert summary.followers == 2 and summary.paused == 1
    assert summary.capital == D("10000")
    expected_pnl = sum((deployment_pnl_summary(deployment=s.deployment)["net_pnl"] for s in followers.values()), D(0))
    assert summary.followers_pnl == expected_pnl and expected_pnl != 0
    assert summary.fees_gross == D("90")
    assert (summary.fees_leader, summary.fees_platform) == fee_split(D("90"))
    html = response.content.decode()
    assert "Carol C" in html and "carol@example.com" in html


def test_copy_books_pnl_matches_the_per_book_summary(listing, followers):
    copy(leader_fill(listing, quantity="3"))
    move_price(listing.deployment.instruments.get(), 97.0)
    books = [s.deployment for s in followers.values()]
    pnl = copy_books_pnl(deployment_ids=[b.pk for b in books])
    for book in books:
        assert pnl[book.pk] == deployment_pnl_summary(deployment=book)["net_pnl"]


def test_a_hidden_identity_never_appears_in_the_page_or_the_api(client, api_client, alice, bob, listing, followers):
    client.force_login(alice)
    html = client.get(reverse("marketplace:leader-dashboard")).content.decode()
    api_client.force_authenticate(alice)
    body = api_client.get(reverse("api:leader-followers", args=[listing.pk])).content.decode()
    for text in (html, body):
        assert "bob@example.com" not in text and "mallory@example.com" not in text
        assert "carol@example.com" in text
    rows = {
        row["number"]: row
        for row in api_client.get(reverse("api:leader-followers", args=[listing.pk])).json()["results"]
    }
    assert rows[1]["email"] == "carol@example.com" and rows[1]["name"] == "Carol C"
    assert rows[2] == {**rows[2], "name": "Follower #2", "email": None}
    assert rows[3]["name"] == "Follower #3" and rows[3]["status"] == "paused"
    assert "Follower #2" in html


def test_followers_api_figures(api_client, alice, listing, followers):
    api_client.force_authenticate(alice)
    data = api_client.get(reverse("api:leader-followers", args=[listing.pk])).json()
    assert data["followers"] == 2 and data["paused"] == 1 and D(data["capital"]) == D("10000")
    assert data["listing"] == listing.pk and len(data["results"]) == 3


def test_followers_of_someone_elses_listing_is_404(api_client, bob, mallory, listing, followers):
    for user in (bob, mallory):
        api_client.force_authenticate(user)
        assert api_client.get(reverse("api:leader-followers", args=[listing.pk])).status_code == 404


def test_an_outsiders_dashboard_shows_nothing_of_alices(client, mallory, listing, followers):
    client.force_login(mallory)
    response = client.get(reverse("marketplace:leader-dashboard"))
    assert response.context["summaries"] == []
    html = response.content.decode()
    assert "Steady BTC" not in html and "carol@example.com" not in html


def test_leader_summary_is_few_queries(listing, followers, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        leader_listing_summary(listing=listing)
