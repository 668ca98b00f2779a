"""Listing services: publishing (validation, sanitising, the leader's second factor), the review
workflow (every transition and refusal, audited and announced), and editing rules."""

import time
from decimal import Decimal
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import NotFound, PermissionRefused, ReauthenticationRequired, ValidationFailed
from apps.marketplace.models import Listing
from apps.marketplace.services import listings as services
from apps.strategies.models import Deployment, LookaheadVerdict
from apps.strategies.services.deployments import deployment_strategy
from apps.strategies.services.rule_sets import LookaheadBiasedError
from tests.trades.execution_support import make_deployment, make_paper_account

pytestmark = pytest.mark.django_db


def fields_of(exc: ValidationFailed) -> set[str]:
    return set(exc.extra.get("fields", {}))


def fresh_request(rf: Any, user: Any, device: Any, age: float = 0.0) -> Any:
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django_otp import DEVICE_ID_SESSION_KEY

    from apps.users.second_factor import VERIFIED_AT_SESSION_KEY

    request = rf.post("/")
    request.session = SessionStore()
    request.user = user
    request.session[SESSION_KEY] = str(user.pk)
    request.session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    request.session[VERIFIED_AT_SESSION_KEY] = time.time() - age
    return request


def actions() -> list[str]:
    return list(
        AuditEvent.objects.filter(action__startswith="listing.").order_by("pk").values_list("action", flat=True)
    )


# --- publishing ---------------------------------------------------------------------------------


def test_publish_creates_a_draft_in_the_accounts_currency(make_listing, leader_deployment):
    listing = make_listing(tags="Trend, BTC, trend", monthly_fee="9.5", performance_fee_pct="20", min_allocation="500")

    assert listing.status == Listing.Status.DRAFT
    assert listing.deployment_id == leader_deployment.pk and listing.owner_id == leader_deployment.owner_id
    assert listing.currency == "USDT"
    assert listing.tags == ["trend", "btc"]
    assert (listing.monthly_fee, listing.performance_fee_pct, listing.min_allocation) == (
        Decimal("9.5"),
        Decimal("20"),
        Decimal("500"),
    )
    assert listing.stats_return is None and listing.is_live is False
    assert actions() == ["listing.created"]


def test_description_is_rendered_and_sanitised(make_listing):
    listing = make_listing(
        description=(
            "**Bold** [site](https://example.com)\n\n"
            "<script>alert('x')</script>\n\n"
            '<img src="x" onerror="alert(1)">\n\n'
            "[click](javascript:alert(1))\n\n"
            '<a href="javascript:alert(2)" onclick="alert(3)">evil</a>'
        )
    )

    html = listing.description_html.lower()
    assert "<strong>bold</strong>" in html
    assert 'href="https://example.com"' in html
    assert "<script" not in html and "alert('x')" not in html
    assert "onerror" not in html and "onclick" not in html and "<img" not in html
    assert "javascript:" not in html


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "  "}, "title"),
        ({"title": "x" * 121}, "title"),
        ({"tags": ["<b>bold</b>"]}, "tags"),
        ({"tags": [f"t{i}" for i in range(9)]}, "tags"),
        ({"tags": ["x" * 25]}, "tags"),
        ({"performance_fee_pct": "50.01"}, "performance_fee_pct"),
        ({"monthly_fee": "-1"}, "monthly_fee"),
        ({"min_allocation": "lots"}, "min_allocation"),
        ({"trade_delay_minutes": -5}, "trade_delay_minutes"),
        ({"asset_class": "tulips"}, "asset_class"),
        ({"risk_level": "yolo"}, "risk_level"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(make_listing, fields, field):
    with pytest.raises(ValidationFailed) as caught:
        make_listing(**fields)

    assert field in fields_of(caught.value)
    assert not Listing.objects.exists()


def test_only_ones_own_running_strategy_deployment_is_listed(alice, mallory, leader_deployment, paper_btc):
    outsider = make_deployment(make_paper_account(mallory), paper_btc)
    draft = make_deployment(leader_deployment.account, paper_btc, status=Deployment.Status.DRAFT)
    stopped = make_deployment(leader_deployment.account, paper_btc, status=Deployment.Status.STOPPED)
    copy_book = make_deployment(leader_deployment.account, paper_btc, kind=Deployment.Kind.COPY)

    for deployment in (outsider, draft, stopped, copy_book):
        with pytest.raises(ValidationFailed) as caught:
            services.listing_create(owner=alice, deployment_id=deployment.pk, title="Mine")
        assert "deployment_id" in fields_of(caught.value)
    assert not Listing.objects.exists()


def test_one_listing_per_deployment(make_listing):
    make_listing()

    with pytest.raises(ValidationFailed) as caught:
        make_listing(title="Again")

    assert caught.value.code == "already_listed"
    assert Listing.objects.count() == 1


def test_a_user_with_2fa_needs_a_fresh_second_factor_to_publish(alice, leader_deployment, enable_2fa, rf):
    device = enable_2fa(alice)

    with pytest.raises(ReauthenticationRequired):
        services.listing_create(owner=alice, deployment_id=leader_deployment.pk, title="Mine")
    with pytest.raises(ReauthenticationRequired):
        services.listing_create(
            owner=alice,
            deployment_id=leader_deployment.pk,
            title="Mine",
            request=fresh_request(rf, alice, device, 16 * 60),
        )
    assert not Listing.objects.exists()

    listing = services.listing_create(
        owner=alice, deployment_id=leader_deployment.pk, title="Mine", request=fresh_request(rf, alice, device)
    )
    assert listing.status == Listing.Status.DRAFT


def test_a_live_deployment_needs_2fa_set_up(alice, paper_btc, settings):
    from tests.trades.execution_support import make_exchange_account

    settings.FIELD_ENCRYPTION_KEYS = []
    live = make_deployment(make_exchange_account(alice), paper_btc)

    with pytest.raises(ReauthenticationRequired) as caught:
        services.listing_create(owner=alice, deployment_id=live.pk, title="Live one")

    assert caught.value.extra["reauth_url"] == "/2fa/setup/"
    assert not Listing.objects.exists()


# --- review workflow ----------------------------------------------------------------------------


def test_the_whole_review_workflow(make_listing, staff, django_capture_on_commit_callbacks, monkeypatch):
    from apps.marketplace.services import listings as module

    sent: list[tuple[int, str, dict[str, Any]]] = []
    monkeypatch.setattr(module, "broadcast", lambda user_id, event, data: sent.append((user_id, event, data)))
    listing = make_listing()

    listing = services.listing_submit(listing=listing, actor=listing.owner)
    assert listing.status == Listing.Status.PENDING and listing.submitted_at is not None
    listing = services.listing_reject(listing=listing, actor=staff, reason="Describe the risk.")
    assert (listing.status, listing.status_reason, listing.reviewed_by) == ("rejected", "Describe the risk.", staff)
    listing = services.listing_update(listing=listing, actor=listing.owner, description="Risky: 3x leverage.")
    listing = services.listing_submit(listing=listing, actor=listing.owner)
    listing = services.listing_approve(listing=listing, actor=staff)
    assert listing.status == Listing.Status.APPROVED and listing.approved_at is not None
    assert listing.status_reason == ""
    listing = services.listing_suspend(listing=listing, actor=staff, reason="Under investigation.")
    assert (listing.status, listing.status_reason) == ("suspended", "Under investigation.")
    listing = services.listing_reinstate(listing=listing, actor=staff)
    assert listing.status == Listing.Status.APPROVED

    assert actions() == [
        "listing.created",
        "listing.submitted",
        "listing.rejected",
        "listing.updated",
        "listing.submitted",
        "listing.approved",
        "listing.suspended",
        "listing.reinstated",
    ]
    statuses = [data["status"] for user_id, event, data in sent if event == "listing.status"]
    assert statuses == ["pending", "rejected", "pending", "approved", "suspended", "approved"]
    assert {user_id for user_id, _, _ in sent} == {listing.owner_id}
    event = AuditEvent.objects.get(action="listing.rejected")
    assert event.details["reason"] == "Describe the risk." and event.actor_id == staff.pk


def test_reject_and_suspend_need_a_reason(make_listing, staff):
    listing = make_listing()
    listing = services.listing_submit(listing=listing, actor=listing.owner)

    with pytest.raises(ValidationFailed) as caught:
        services.listing_reject(listing=listing, actor=staff, reason="  ")
    assert "reason" in fields_of(caught.value)
    listing = services.listing_approve(listing=listing, actor=staff)
    with pytest.raises(ValidationFailed):
        services.listing_suspend(listing=listing, actor=staff, reason="")
    listing.refresh_from_db()
    assert listing.status == Listing.Status.APPROVED


def test_transitions_from_the_wrong_state_are_refused(make_listing, staff):
    listing = make_listing()

    for call in (
        lambda: services.listing_approve(listing=listing, actor=staff),
        lambda: services.listing_reject(listing=listing, actor=staff, reason="no"),
        lambda: services.listing_suspend(listing=listing, actor=staff, reason="no"),
        lambda: services.listing_reinstate(listing=listing, actor=staff),
    ):
        with pytest.raises(services.ListingStateError):
            call()
    services.listing_submit(listing=listing, actor=listing.owner)
    with pytest.raises(services.ListingStateError):
        services.listing_submit(listing=listing, actor=listing.owner)
    listing.refresh_from_db()
    assert listing.status == Listing.Status.PENDING


def test_only_staff_review(make_listing, alice, mallory):
    listing = make_listing()
    listing = services.listing_submit(listing=listing, actor=alice)

    for actor in (alice, mallory):
        with pytest.raises(PermissionRefused):
            services.listing_approve(listing=listing, actor=actor)
        with pytest.raises(PermissionRefused):
            services.listing_reject(listing=listing, actor=actor, reason="meh")
    listing.refresh_from_db()
    assert listing.status == Listing.Status.PENDING


def test_a_look_ahead_biased_strategy_cannot_be_submitted(make_listing, leader_deployment):
    from apps.strategies.lookahead import fingerprint

    listing = make_listing()
    strategy = deployment_strategy(deployment=leader_deployment)
    LookaheadVerdict.objects.create(
        fingerprint=fingerprint(strategy),
        strategy_key=strategy.key,
        params=strategy.params.as_dict(),
        is_biased=True,
        details={"message": "close shifted by -1"},
        checked_at=leader_deployment.created_at,
    )

    with pytest.raises(LookaheadBiasedError):
        services.listing_submit(listing=listing, actor=listing.owner)

    listing.refresh_from_db()
    assert listing.status == Listing.Status.DRAFT


def test_a_stopped_deployment_cannot_be_submitted(make_listing, leader_deployment):
    listing = make_listing()
    Deployment.objects.filter(pk=leader_deployment.pk).update(status=Deployment.Status.STOPPED)

    with pytest.raises(services.ListingStateError):
        services.listing_submit(listing=listing, actor=listing.owner)


def test_submitting_needs_a_fresh_second_factor_with_2fa(make_listing, alice, enable_2fa, rf):
    listing = make_listing()
    device = enable_2fa(alice)

    with pytest.raises(ReauthenticationRequired):
        services.listing_submit(listing=listing, actor=alice)
    listing.refresh_from_db()
    assert listing.status == Listing.Status.DRAFT
    assert services.listing_submit(listing=listing, actor=alice, request=fresh_request(rf, alice, device)).status == (
        "pending"
    )


# --- editing ------------------------------------------------------------------------------------


def test_editing_someone_elses_listing_is_not_found_and_changes_nothing(make_listing, mallory):
    listing = make_listing(title="Alice's")

    with pytest.raises(NotFound):
        services.listing_update(listing=listing, actor=mallory, title="Mallory's now")
    with pytest.raises(NotFound):
        services.listing_submit(listing=listing, actor=mallory)

    listing.refresh_from_db()
    assert (listing.title, listing.status) == ("Alice's", "draft")


def test_an_approved_listings_new_pricing_goes_back_to_review(approved_listing):
    listing = services.listing_update(listing=approved_listing, actor=approved_listing.owner, title="Renamed")
    assert (listing.status, listing.title) == ("approved", "Renamed")

    listing = services.listing_update(listing=listing, actor=listing.owner, monthly_fee="25")

    assert listing.status == Listing.Status.PENDING
    assert listing.status_reason.startswith("Terms changed")
    assert listing.monthly_fee == Decimal("25")


def test_a_suspended_listing_cannot_be_edited(approved_listing, staff):
    listing = services.listing_suspend(listing=approved_listing, actor=staff, reason="Checking.")

    with pytest.raises(services.ListingStateError):
        services.listing_update(listing=listing, actor=listing.owner, title="Sneaky")


def test_status_and_stats_are_not_updatable(make_listing):
    listing = make_listing()

    for field in ("status", "stats_return", "owner", "deployment", "is_live"):
        with pytest.raises(ValidationFailed):
            services.listing_update(listing=listing, actor=listing.owner, **{field: "x"})

    listing.refresh_from_db()
    assert listing.status == Listing.Status.DRAFT and listing.stats_return is None


def test_too_many_decimal_places_are_a_field_error_not_a_crash(alice: Any, leader_deployment: Any) -> None:
    from apps.common.errors import ValidationFailed
    from apps.marketplace.services import listings as listing_services

    for field, value in (("performance_fee_pct", "10.555"), ("min_allocation", "0.00000000001")):
        with pytest.raises(ValidationFailed) as caught:
            listing_services.listing_create(
                owner=alice, deployment_id=leader_deployment.pk, title="Too precise", **{field: value}
            )
        assert list(caught.value.extra["fields"]) == [field] and "decimal places" in caught.value.message
