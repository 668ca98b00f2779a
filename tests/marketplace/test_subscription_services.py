"""subscription_create / update / pause / resume / unsubscribe: what they refuse (with the field
and a clear message, nothing written) and what they set up (the copy book)."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import TradingAccount
from apps.common.errors import ReauthenticationRequired, ValidationFailed
from apps.marketplace.models import Listing, Subscription
from apps.marketplace.services.subscriptions import (
    SubscriptionStateError,
    subscription_create,
    subscription_pause,
    subscription_resume,
    subscription_unsubscribe,
    subscription_update,
)
from apps.strategies.models import Deployment
from tests.marketplace.fanout_support import make_leader
from tests.trades.execution_support import make_exchange_account, make_paper_account

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(alice: Any, paper_btc: Any) -> Listing:
    return make_leader(alice, paper_btc)[2]


@pytest.fixture
def bob_paper(bob: Any) -> TradingAccount:
    return make_paper_account(bob, usdt="2000")


def _refused(field: str, code: str, **kwargs: Any) -> ValidationFailed:
    before = (Subscription.objects.count(), Deployment.objects.count())
    with pytest.raises(ValidationFailed) as caught:
        subscription_create(**kwargs)
    assert (Subscription.objects.count(), Deployment.objects.count()) == before
    assert list(caught.value.extra["fields"]) == [field]
    assert caught.value.code == code
    return caught.value


def test_subscribe_creates_a_running_copy_book(bob: Any, bob_paper: TradingAccount, listing: Listing) -> None:
    sub = subscription_create(
        follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1500", max_position_notional="800"
    )
    book = sub.deployment
    assert (book.kind, book.owner, book.account, book.status) == ("copy", bob, bob_paper, "paper")
    assert book.capital == D("1500") and book.risk == {"max_position_notional": "800"}
    assert set(book.instruments.all()) == set(listing.deployment.instruments.all())
    assert sub.high_water_mark == D("1500") and sub.status == "active"


def test_someone_elses_account_is_refused(bob: Any, mallory: Any, listing: Listing) -> None:
    mallory_account = make_paper_account(mallory)
    error = _refused(
        "account_id", "not_found", follower=bob, listing=listing, account_id=mallory_account.pk, allocation="100"
    )
    assert "No such trading account" in error.message


def test_own_listing_is_refused(alice: Any, listing: Listing) -> None:
    account = make_paper_account(alice, name="Another")
    error = _refused("listing", "own_listing", follower=alice, listing=listing, account_id=account.pk, allocation="100")
    assert "your own listing" in error.message


@pytest.mark.parametrize("status", ["draft", "pending", "rejected", "suspended"])
def test_unapproved_listing_is_refused(bob: Any, bob_paper: TradingAccount, listing: Listing, status: str) -> None:
    Listing.objects.filter(pk=listing.pk).update(status=status)
    listing.refresh_from_db()
    _refused(
        "listing", "listing_not_approved", follower=bob, listing=listing, account_id=bob_paper.pk, allocation="100"
    )


def test_allocation_below_minimum_or_above_balance_is_refused(
    bob: Any, bob_paper: TradingAccount, listing: Listing
) -> None:
    Listing.objects.filter(pk=listing.pk).update(min_allocation=D("500"))
    listing.refresh_from_db()
    low = _refused(
        "allocation", "below_minimum", follower=bob, listing=listing, account_id=bob_paper.pk, allocation="499"
    )
    assert "500 USDT" in low.message
    high = _refused(
        "allocation", "above_balance", follower=bob, listing=listing, account_id=bob_paper.pk, allocation="2000.01"
    )
    assert "2000 USDT" in high.message
    for bad in ("", "abc", "-5", "0", "NaN"):
        _refused(
            "allocation",
            "required" if bad == "" else "invalid",
            follower=bob,
            listing=listing,
            account_id=bob_paper.pk,
            allocation=bad,
        )


def test_other_subscriptions_allocations_count_against_the_balance(
    bob: Any, bob_paper: TradingAccount, listing: Listing, alice: Any, paper_btc: Any
) -> None:
    subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1500")
    other = make_leader(alice, paper_btc)[2]
    error = _refused(
        "allocation", "above_balance", follower=bob, listing=other, account_id=bob_paper.pk, allocation="600"
    )
    assert "500 USDT after its other subscriptions" in error.message
    _refused(
        "account_id", "already_subscribed", follower=bob, listing=listing, account_id=bob_paper.pk, allocation="100"
    )


def test_sizing_inputs_are_checked(bob: Any, bob_paper: TradingAccount, listing: Listing) -> None:
    common = {"follower": bob, "listing": listing, "account_id": bob_paper.pk, "allocation": "1000"}
    _refused("sizing_mode", "invalid", sizing_mode="martingale", **common)
    _refused("fixed_notional", "required", sizing_mode="fixed_notional", **common)
    _refused("fixed_notional", "invalid", sizing_mode="fixed_notional", fixed_notional="1001", **common)
    _refused("multiplier", "invalid", sizing_mode="multiplier", multiplier="101", **common)
    _refused("max_price_deviation_pct", "invalid", max_price_deviation_pct="150", **common)


def test_a_live_account_needs_a_fresh_second_factor(bob: Any, listing: Listing) -> None:
    live = make_exchange_account(bob)
    live.last_test = {"balances": {"USDT": {"free": "5000"}}}
    live.save()
    listing.deployment.instruments.update(venue="binance")
    with pytest.raises(ReauthenticationRequired):
        subscription_create(follower=bob, listing=listing, account_id=live.pk, allocation="100")
    assert not Subscription.objects.exists()


def test_pause_resume_unsubscribe_follow_the_copy_book(bob: Any, bob_paper: TradingAccount, listing: Listing) -> None:
    sub = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    subscription_pause(subscription=sub, actor=bob)
    sub.refresh_from_db()
    assert sub.status == "paused" and sub.deployment.status == "paused"
    subscription_resume(subscription=sub, actor=bob)
    sub.refresh_from_db()
    assert sub.status == "active" and Deployment.objects.get(pk=sub.deployment_id).status == "paper"
    subscription_update(subscription=sub, actor=bob, allocation="1200", max_position_notional="300")
    book = Deployment.objects.get(pk=sub.deployment_id)
    assert book.capital == D("1200") and book.risk == {"max_position_notional": "300"}
    with pytest.raises(ValidationFailed):
        subscription_update(subscription=sub, actor=bob, status="active")
    subscription_unsubscribe(subscription=sub, actor=bob, close_positions=False)
    sub.refresh_from_db()
    assert sub.status == "ended" and sub.ended_at is not None
    assert Deployment.objects.get(pk=sub.deployment_id).status == "stopped"
    with pytest.raises(SubscriptionStateError):
        subscription_resume(subscription=sub, actor=bob)
    # ended: the account may subscribe to the listing again
    again = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    assert again.pk != sub.pk


def test_resume_refused_when_the_listing_is_suspended(bob: Any, bob_paper: TradingAccount, listing: Listing) -> None:
    sub = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    subscription_pause(subscription=sub, actor=bob)
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.SUSPENDED)
    with pytest.raises(SubscriptionStateError, match="suspended"):
        subscription_resume(subscription=sub, actor=bob)


def test_a_revoked_key_stops_the_accounts_subscriptions(
    bob: Any, bob_paper: TradingAccount, listing: Listing, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.accounts.services import account_mark_needs_reconnect

    sub = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    with django_capture_on_commit_callbacks(execute=True):
        account_mark_needs_reconnect(account_id=bob_paper.pk, reason="The venue refused the API key (revoked).")
    sub.refresh_from_db()
    assert sub.status == "paused" and "needs attention" in sub.status_reason
    assert "revoked" in sub.status_reason


def test_a_leaders_new_terms_apply_to_new_subscribers_only(
    bob: Any, bob_paper: TradingAccount, listing: Listing, mallory: Any
) -> None:
    Listing.objects.filter(pk=listing.pk).update(monthly_fee=D("10"), performance_fee_pct=D("5"))
    listing.refresh_from_db()
    early = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    Listing.objects.filter(pk=listing.pk).update(monthly_fee=D("99"), performance_fee_pct=D("50"))
    listing.refresh_from_db()
    late = subscription_create(
        follower=mallory, listing=listing, account_id=make_paper_account(mallory).pk, allocation="1000"
    )
    assert (early.monthly_fee, early.performance_fee_pct) == (D("10"), D("5"))
    assert (late.monthly_fee, late.performance_fee_pct) == (D("99"), D("50"))


def test_the_high_water_mark_moves_with_the_allocation(bob: Any, bob_paper: TradingAccount, listing: Listing) -> None:
    sub = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="1000")
    Subscription.objects.filter(pk=sub.pk).update(high_water_mark=D("1100"))  # a high reached by trading
    sub.refresh_from_db()
    subscription_update(subscription=sub, actor=bob, allocation="1500")
    sub.refresh_from_db()
    assert sub.high_water_mark == D("1600")  # the 500 added is not performance
    subscription_update(subscription=sub, actor=bob, allocation="900")
    sub.refresh_from_db()
    assert sub.high_water_mark == D("1000")


def test_only_an_increase_of_the_allocation_needs_free_cash(
    bob: Any, bob_paper: TradingAccount, listing: Listing
) -> None:
    from apps.accounts.models import PaperBalance

    sub = subscription_create(follower=bob, listing=listing, account_id=bob_paper.pk, allocation="2000")
    # the copies have bought with most of the cash: 150 left free
    PaperBalance.objects.filter(account=bob_paper, asset="USDT").update(free=D("150"))
    subscription_update(subscription=sub, actor=bob, allocation="2000", max_loss="300")  # unchanged: fine
    subscription_update(subscription=sub, actor=bob, allocation="2100")  # +100 of the 150 free
    with pytest.raises(ValidationFailed, match="grow by at most 150"):
        subscription_update(subscription=sub, actor=bob, allocation="2300")
    sub.refresh_from_db()
    assert sub.allocation == D("2100") and sub.max_loss == D("300")


def test_a_listed_deployments_track_record_inputs_cannot_change(alice: Any, listing: Listing) -> None:
    from apps.strategies.services.deployments import deployment_pause, deployment_update

    deployment = deployment_pause(deployment=listing.deployment, actor=alice)
    with pytest.raises(ValidationFailed) as caught:
        deployment_update(deployment=deployment, actor=alice, capital="600")
    assert caught.value.code == "listed" and list(caught.value.extra["fields"]) == ["capital"]
    assert Deployment.objects.get(pk=deployment.pk).capital == D("10000")
    deployment_update(deployment=deployment, actor=alice, name="Renamed")  # presentation may change


def test_the_subscribe_page_does_not_show_someone_elses_unpublished_listing(bob: Any, listing: Listing) -> None:
    from apps.common.errors import NotFound
    from apps.marketplace.selectors.subscriptions import listing_get_for_subscribe

    for status in ("draft", "pending", "rejected"):
        Listing.objects.filter(pk=listing.pk).update(status=status)
        with pytest.raises(NotFound):
            listing_get_for_subscribe(user=bob, listing_id=listing.pk)
    Listing.objects.filter(pk=listing.pk).update(status="suspended")
    assert listing_get_for_subscribe(user=bob, listing_id=listing.pk) == listing
