"""Listings API and selectors: visibility (only approved ones for everyone; drafts for nobody but
the owner and staff), search / filter / sort / pages, publishing and editing through the API,
outsiders, mass assignment, delayed trades and reviews."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.common.errors import NotFound
from apps.marketplace.models import Listing, Review
from apps.marketplace.selectors import listings as selectors
from apps.trades.models import Fill
from tests.marketplace.conftest import approve
from tests.trades.execution_support import make_deployment, make_paper_account

pytestmark = pytest.mark.django_db
LIST = "/api/v1/listings/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def published(alice: Any, paper_btc: Any, staff: Any, n: int, status: str = "approved", **fields: Any) -> Listing:
    """Another approved listing of alice's, with stats written as the track record would."""
    from apps.marketplace.services.listings import listing_create

    account = make_paper_account(alice, name=f"P{n}")
    deployment = make_deployment(account, paper_btc, name=f"D{n}")
    stats = {k: fields.pop(k) for k in list(fields) if k.startswith("stats_") or k == "is_live"}
    listing = listing_create(
        owner=alice, deployment_id=deployment.pk, title=fields.pop("title", f"Listing {n}"), **fields
    )
    if status == "approved":
        listing = approve(listing, staff)
    Listing.objects.filter(pk=listing.pk).update(**stats)
    return listing


# --- selectors ----------------------------------------------------------------------------------


def test_outsider_sees_nothing_of_drafts(make_listing, alice, mallory):
    draft = make_listing()

    assert list(selectors.listing_list_public()) == []
    assert list(selectors.listing_list_for_owner(user=mallory)) == []
    with pytest.raises(NotFound):
        selectors.listing_get_for_user(user=mallory, listing_id=draft.pk)
    with pytest.raises(NotFound):
        selectors.listing_get_owned(user=mallory, listing_id=draft.pk)
    assert selectors.listing_get_for_user(user=alice, listing_id=draft.pk) == draft
    assert list(selectors.listing_list_for_owner(user=alice)) == [draft]


def test_staff_see_any_listing(make_listing, staff):
    draft = make_listing()
    assert selectors.listing_get_for_user(user=staff, listing_id=draft.pk) == draft


def test_suspended_listings_leave_the_marketplace(approved_listing, staff, bob):
    from apps.marketplace.services.listings import listing_suspend

    listing_suspend(listing=approved_listing, actor=staff, reason="Checking.")

    assert list(selectors.listing_list_public()) == []
    with pytest.raises(NotFound):
        selectors.listing_get_for_user(user=bob, listing_id=approved_listing.pk)


# --- list: filters, sorts, pages ----------------------------------------------------------------


def test_list_shows_approved_listings_only(approved_listing, make_listing, alice, paper_btc, staff, mallory):
    published(alice, paper_btc, staff, 1, status="draft", title="Secret draft")

    response = client_for(mallory).get(LIST)

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [approved_listing.pk]
    row = response.json()["results"][0]
    assert row["label"] == "paper" and row["deployment"] is None
    assert row["stats_trades"] == 1


def test_list_search_filters_and_sorts(alice, paper_btc, staff, bob):
    a = published(
        alice,
        paper_btc,
        staff,
        1,
        title="Momentum ETH",
        tags=["eth"],
        asset_class="crypto",
        risk_level="high",
        monthly_fee="10",
        stats_return=0.30,
        stats_max_drawdown=0.20,
        stats_sharpe=1.0,
        stats_followers=5,
        is_live=True,
    )
    b = published(
        alice,
        paper_btc,
        staff,
        2,
        title="Calm stocks",
        description="Mean reversion on stocks",
        asset_class="stocks",
        risk_level="low",
        stats_return=0.10,
        stats_max_drawdown=0.05,
        stats_sharpe=2.0,
        stats_followers=50,
    )
    c = published(
        alice,
        paper_btc,
        staff,
        3,
        title="Carry",
        tags=["forex", "carry"],
        asset_class="forex",
        performance_fee_pct="20",
        stats_return=None,
        stats_followers=0,
    )
    client = client_for(bob)

    def ids(**params: Any) -> list[int]:
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [a.pk, b.pk, c.pk]  # return, best first, none last
    assert ids(sort="drawdown") == [b.pk, a.pk, c.pk]
    assert ids(sort="sharpe") == [b.pk, a.pk, c.pk]
    assert ids(sort="followers") == [b.pk, a.pk, c.pk]
    assert ids(q="reversion") == [b.pk]
    assert ids(q="CARRY") == [c.pk]
    assert ids(q="eth") == [a.pk]
    assert ids(asset_class="stocks") == [b.pk]
    assert ids(risk_level="high") == [a.pk]
    assert ids(pricing="free") == [b.pk]
    assert ids(pricing="paid") == [a.pk, c.pk]
    assert ids(live_only="true") == [a.pk]
    assert client.get(LIST, {"sort": "luck"}).status_code == 400
    assert client.get(LIST, {"pricing": "cheap"}).status_code == 400


def test_list_paginates_in_few_queries(alice, paper_btc, staff, bob, django_assert_max_num_queries):
    for n in range(5):
        published(alice, paper_btc, staff, n)
    client = client_for(bob)

    with django_assert_max_num_queries(6):
        response = client.get(LIST, {"limit": 2, "offset": 2})

    body = response.json()
    assert body["count"] == 5 and len(body["results"]) == 2 and body["next"] and body["previous"]


def test_age_sort_puts_the_oldest_record_first(alice, paper_btc, staff, bob):
    now = timezone.now()
    young = published(alice, paper_btc, staff, 1, stats_since=now - timedelta(days=2))
    old = published(alice, paper_btc, staff, 2, stats_since=now - timedelta(days=200))

    response = client_for(bob).get(LIST, {"sort": "age"})

    assert [row["id"] for row in response.json()["results"]] == [old.pk, young.pk]


# --- create / update / submit -------------------------------------------------------------------


def test_publish_through_the_api(alice, leader_deployment):
    response = client_for(alice).post(
        LIST,
        {"deployment": leader_deployment.pk, "title": "API listing", "tags": ["api"], "performance_fee_pct": "10"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["deployment"] == leader_deployment.pk
    assert response["Location"].endswith(f"/api/v1/listings/{body['id']}/")
    mine = client_for(alice).get(f"{LIST}mine/").json()["results"]
    assert [row["id"] for row in mine] == [body["id"]]


@pytest.mark.parametrize("field", ["status", "stats_return", "stats_followers", "is_live", "owner", "currency"])
def test_mass_assignment_is_refused(alice, leader_deployment, make_listing, field):
    client = client_for(alice)
    value: Any = "approved" if field == "status" else 99

    created = client.post(LIST, {"deployment": leader_deployment.pk, "title": "x", field: value}, format="json")
    assert created.status_code == 400 and field in created.json()["error"]["fields"]
    assert not Listing.objects.exists()
    listing = make_listing()
    patched = client.patch(f"{LIST}{listing.pk}/", {field: value}, format="json")
    assert patched.status_code == 400
    listing.refresh_from_db()
    assert listing.status == "draft" and listing.stats_return is None and listing.stats_followers == 0


def test_bad_input_is_a_400_naming_the_field(alice, leader_deployment):
    response = client_for(alice).post(
        LIST, {"deployment": leader_deployment.pk, "title": "x", "performance_fee_pct": "75"}, format="json"
    )
    assert response.status_code == 400
    assert "performance_fee_pct" in response.json()["error"]["fields"]
    assert not Listing.objects.exists()


def test_update_and_submit_by_the_owner(alice, make_listing):
    listing = make_listing()
    client = client_for(alice)

    patched = client.patch(f"{LIST}{listing.pk}/", {"title": "Better title", "tags": ["a", "b"]}, format="json")
    submitted = client.post(f"{LIST}{listing.pk}/submit/")

    assert patched.status_code == 200 and patched.json()["title"] == "Better title"
    assert submitted.status_code == 200 and submitted.json()["status"] == "pending"


def test_outsider_gets_404_everywhere_and_changes_nothing(make_listing, mallory):
    listing = make_listing(title="Alice's")
    client = client_for(mallory)
    base = f"{LIST}{listing.pk}/"

    assert client.get(base).status_code == 404
    assert client.patch(base, {"title": "Mine"}, format="json").status_code == 404
    assert client.post(f"{base}submit/").status_code == 404
    assert client.get(f"{base}track-record/").status_code == 404
    assert client.get(f"{base}trades/").status_code == 404
    assert client.get(f"{base}reviews/").status_code == 404
    assert client.post(f"{base}reviews/", {"rating": 5}, format="json").status_code == 404
    assert str(listing.pk) not in str(client.get(f"{LIST}mine/").json())
    listing.refresh_from_db()
    assert (listing.title, listing.status) == ("Alice's", "draft")


def test_outsider_cannot_edit_an_approved_listing(approved_listing, mallory):
    client = client_for(mallory)

    assert client.get(f"{LIST}{approved_listing.pk}/").status_code == 200
    assert client.patch(f"{LIST}{approved_listing.pk}/", {"title": "Mine"}, format="json").status_code == 404
    assert client.post(f"{LIST}{approved_listing.pk}/submit/").status_code == 404
    approved_listing.refresh_from_db()
    assert approved_listing.title == "BTC trend follower"


def test_anonymous_is_refused(approved_listing):
    assert APIClient().get(LIST).status_code in (401, 403)


# --- track record, trades ------------------------------------------------------------------------


def test_track_record_is_labelled_and_backtests_are_apart(approved_listing, bob, alice):
    from apps.backtests.models import Backtest

    deployment = approved_listing.deployment
    Backtest.objects.create(
        owner=alice,
        strategy_key=deployment.strategy_key,
        params=deployment.params,
        instrument=deployment.instruments.get(),
        timeframe=deployment.timeframe,
        status="succeeded",
        metrics={"total_return": 0.5},
    )

    body = client_for(bob).get(f"{LIST}{approved_listing.pk}/track-record/").json()

    assert body["verified"]["label"] == "paper"
    assert body["verified"]["fills"] == 3 and len(body["verified"]["curve"]) >= 4
    assert [b["metrics"] for b in body["backtests_hypothetical"]] == [{"total_return": 0.5}]
    assert body["backtests_hypothetical"][0]["id"] is None  # bob does not learn alice's ids


def test_recent_trades_are_delayed_for_non_subscribers(approved_listing, bob, alice, make_subscriber):
    newest = Fill.objects.filter(deployment=approved_listing.deployment).order_by("-filled_at").first()
    Fill.objects.filter(pk=newest.pk).update(filled_at=timezone.now() - timedelta(minutes=10))  # a fresh trade
    url = f"{LIST}{approved_listing.pk}/trades/"

    outsider = client_for(bob).get(url).json()
    owner = client_for(alice).get(url).json()
    assert outsider["delay_minutes"] == 60 and len(outsider["results"]) == 2
    assert newest.pk not in [t["id"] for t in outsider["results"]]
    assert len(owner["results"]) == 3 and owner["delay_minutes"] == 0
    assert set(owner["results"][0]) == {"id", "side", "symbol", "quantity", "price", "filled_at"}

    make_subscriber(bob, approved_listing)
    subscriber = client_for(bob).get(url).json()
    assert subscriber["delay_minutes"] == 0 and len(subscriber["results"]) == 3


# --- reviews --------------------------------------------------------------------------------------


def test_a_subscriber_reviews_once_and_edits(approved_listing, bob, make_subscriber):
    make_subscriber(bob, approved_listing)
    client = client_for(bob)
    url = f"{LIST}{approved_listing.pk}/reviews/"

    first = client.post(url, {"rating": 4, "text": "Steady."}, format="json")
    second = client.post(url, {"rating": 5, "text": "Even better."}, format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert Review.objects.get().rating == 5
    listed = client.get(url).json()["results"]
    assert [(r["rating"], r["text"], r["is_own"]) for r in listed] == [(5, "Even better.", True)]
    detail = client.get(f"{LIST}{approved_listing.pk}/").json()
    assert (detail["rating_avg"], detail["rating_count"]) == (5.0, 1)


def test_reviewing_without_subscribing_is_refused(approved_listing, mallory, alice):
    for user in (mallory, alice):
        response = client_for(user).post(f"{LIST}{approved_listing.pk}/reviews/", {"rating": 1}, format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "not_a_subscriber"
    assert not Review.objects.exists()


def test_a_bad_rating_is_a_400(approved_listing, bob, make_subscriber):
    make_subscriber(bob, approved_listing)
    for rating in (0, 6, "five"):
        response = client_for(bob).post(f"{LIST}{approved_listing.pk}/reviews/", {"rating": rating}, format="json")
        assert response.status_code == 400
    assert not Review.objects.exists()


def test_hidden_reviews_are_neither_shown_nor_counted(approved_listing, bob, mallory, make_subscriber, staff):
    from apps.marketplace.services.reviews import review_moderate, review_save

    make_subscriber(bob, approved_listing)
    make_subscriber(mallory, approved_listing)
    review_save(author=bob, listing=approved_listing, rating=5, text="Great")
    rude = review_save(author=mallory, listing=approved_listing, rating=1, text="spam spam")
    review_moderate(review=rude, actor=staff, hidden=True, note="spam")

    body = client_for(bob).get(f"{LIST}{approved_listing.pk}/").json()
    reviews = client_for(bob).get(f"{LIST}{approved_listing.pk}/reviews/").json()["results"]

    assert (body["rating_avg"], body["rating_count"]) == (5.0, 1)
    assert [r["text"] for r in reviews] == ["Great"]
    rude.refresh_from_db()
    assert rude.moderation_note == "spam"
