"""Portal pages of listings (Django test client) and the listing admin's actions."""

from typing import Any

import pytest
from django.test import Client

from apps.marketplace.models import Listing, Review

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_marketplace_lists_approved_listings_with_filters(approved_listing, make_listing, bob, alice, paper_btc):
    from tests.trades.execution_support import make_deployment

    make_listing(make_deployment(approved_listing.deployment.account, paper_btc, name="Hidden"), title="Secret draft")
    client = signed_in(bob)

    page = client.get("/marketplace/")
    filtered = client.get("/marketplace/", {"asset_class": "stocks"})
    searched = client.get("/marketplace/", {"q": "trend", "sort": "sharpe"})

    assert page.status_code == 200
    html = page.content.decode()
    assert "BTC trend follower" in html and "Secret draft" not in html
    assert 'data-label="paper"' in html and "-0.03%" in html  # return, with sign and 2 decimals
    assert "BTC trend follower" not in filtered.content.decode()
    assert "BTC trend follower" in searched.content.decode()


def test_marketplace_needs_sign_in():
    assert Client().get("/marketplace/").status_code == 302


def test_listing_page_shows_the_verified_record(approved_listing, bob):
    response = signed_in(bob).get(f"/marketplace/{approved_listing.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="equity-chart"' in html and 'id="listing-chart-config"' in html
    assert 'id="track-label" data-label="paper"' in html
    assert "Backtest (hypothetical)" in html
    assert f'href="/marketplace/{approved_listing.pk}/subscribe/"' in html
    assert 'id="trade-delay"' in html  # bob does not subscribe: trades are delayed


def test_the_leader_never_sees_who_follows_or_reviews(approved_listing, alice, bob, make_subscriber):
    from apps.marketplace.services.reviews import review_save
    from apps.marketplace.services.track_record import listing_stats_refresh

    make_subscriber(bob, approved_listing, allocation="1234")
    review_save(author=bob, listing=approved_listing, rating=5, text="Nice")
    listing_stats_refresh(listing_id=approved_listing.pk)

    html = signed_in(alice).get(f"/marketplace/{approved_listing.pk}/").content.decode()

    assert "bob@example.com" not in html and "verified subscriber" in html
    assert '<strong id="stat-followers">1</strong>' in html and "1234.00 USDT" in html


def test_drafts_are_404_except_for_owner_and_staff(make_listing, alice, mallory, staff):
    listing = make_listing()

    assert signed_in(mallory).get(f"/marketplace/{listing.pk}/").status_code == 404
    assert signed_in(mallory).get(f"/marketplace/{listing.pk}/edit/").status_code == 404
    assert signed_in(mallory).post(f"/marketplace/{listing.pk}/submit/").status_code == 404
    assert signed_in(alice).get(f"/marketplace/{listing.pk}/").status_code == 200
    assert signed_in(staff).get(f"/marketplace/{listing.pk}/").status_code == 200
    listing.refresh_from_db()
    assert listing.status == "draft"


def test_publish_edit_and_submit_through_the_pages(alice, leader_deployment):
    client = signed_in(alice)
    assert client.get("/marketplace/publish/").status_code == 200

    response = client.post(
        "/marketplace/publish/",
        {
            "deployment_id": leader_deployment.pk,
            "title": "Page listing",
            "description": "# Hello",
            "tags": "trend, btc",
            "asset_class": "crypto",
            "risk_level": "medium",
            "min_allocation": "100",
            "monthly_fee": "0",
            "performance_fee_pct": "10",
            "trade_delay_minutes": "15",
        },
    )
    listing = Listing.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/marketplace/{listing.pk}/"
    assert listing.tags == ["trend", "btc"] and "<h1>Hello</h1>" in listing.description_html

    edited = client.post(
        f"/marketplace/{listing.pk}/edit/",
        {
            "title": "Renamed",
            "tags": "",
            "asset_class": "crypto",
            "risk_level": "high",
            "min_allocation": "100",
            "monthly_fee": "0",
            "performance_fee_pct": "10",
            "trade_delay_minutes": "15",
        },
    )
    assert edited.status_code == 302
    client.post(f"/marketplace/{listing.pk}/submit/")
    listing.refresh_from_db()
    assert (listing.title, listing.risk_level, listing.status) == ("Renamed", "high", "pending")
    assert "Renamed" in client.get("/marketplace/mine/").content.decode()


def test_publish_form_shows_errors_and_keeps_input(alice, leader_deployment):
    response = signed_in(alice).post(
        "/marketplace/publish/",
        {
            "deployment_id": leader_deployment.pk,
            "title": "Kept title",
            "tags": "<b>",
            "asset_class": "crypto",
            "risk_level": "medium",
            "min_allocation": "0",
            "monthly_fee": "0",
            "performance_fee_pct": "0",
            "trade_delay_minutes": "0",
        },
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="form-errors"' in html and "Kept title" in html and "is not a tag" in html
    assert not Listing.objects.exists()


def test_review_form_for_subscribers_only(approved_listing, bob, mallory, make_subscriber):
    make_subscriber(bob, approved_listing)
    assert 'id="review-form"' in signed_in(bob).get(f"/marketplace/{approved_listing.pk}/").content.decode()
    assert 'id="review-form"' not in signed_in(mallory).get(f"/marketplace/{approved_listing.pk}/").content.decode()

    signed_in(bob).post(f"/marketplace/{approved_listing.pk}/review/", {"rating": "4", "text": "Solid"})
    refused = signed_in(mallory).post(
        f"/marketplace/{approved_listing.pk}/review/", {"rating": "1", "text": "x"}, follow=True
    )

    assert Review.objects.get().author == bob
    assert "Only people who subscribe" in refused.content.decode()
    page = signed_in(mallory).get("/marketplace/").content.decode()
    assert "★ 4.0 (1 review)" in page


# --- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(staff: Any) -> Client:
    from django_otp.plugins.otp_static.models import StaticDevice

    client = Client()
    client.force_login(staff)
    device = StaticDevice.objects.create(user=staff, name="backup", confirmed=True)
    session = client.session
    from django_otp import DEVICE_ID_SESSION_KEY

    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def admin_action(client: Client, model: str, action: str, ids: list[int], reason: str = "") -> Any:
    return client.post(
        f"/admin/marketplace/{model}/",
        {"action": action, "_selected_action": [str(i) for i in ids], "reason": reason, "index": 0},
        follow=True,
    )


def test_admin_review_queue_actions(make_listing, admin_client):
    listing = make_listing()
    from apps.marketplace.services.listings import listing_submit

    listing_submit(listing=listing, actor=listing.owner)

    assert admin_client.get("/admin/marketplace/listing/?status__exact=pending").status_code == 200
    refused = admin_action(admin_client, "listing", "reject", [listing.pk])
    listing.refresh_from_db()
    assert listing.status == "pending" and "Type the reason" in refused.content.decode()

    admin_action(admin_client, "listing", "reject", [listing.pk], reason="Needs a risk section.")
    listing.refresh_from_db()
    assert (listing.status, listing.status_reason) == ("rejected", "Needs a risk section.")

    listing_submit(listing=listing, actor=listing.owner)
    admin_action(admin_client, "listing", "approve", [listing.pk])
    listing.refresh_from_db()
    assert listing.status == "approved"
    admin_action(admin_client, "listing", "suspend", [listing.pk], reason="Complaints.")
    listing.refresh_from_db()
    assert listing.status == "suspended"
    admin_action(admin_client, "listing", "reinstate", [listing.pk])
    listing.refresh_from_db()
    assert listing.status == "approved"
    assert admin_client.get(f"/admin/marketplace/listing/{listing.pk}/change/").status_code == 200
    assert admin_client.get("/admin/marketplace/listing/", {"q": "alice@example.com"}).status_code == 200


def test_admin_hides_and_shows_reviews(approved_listing, bob, make_subscriber, admin_client):
    from apps.marketplace.services.reviews import review_save

    make_subscriber(bob, approved_listing)
    review = review_save(author=bob, listing=approved_listing, rating=2, text="meh")

    admin_action(admin_client, "review", "hide", [review.pk], reason="Off-topic")
    review.refresh_from_db()
    assert review.is_hidden and review.moderation_note == "Off-topic"
    admin_action(admin_client, "review", "show", [review.pk])
    review.refresh_from_db()
    assert not review.is_hidden
