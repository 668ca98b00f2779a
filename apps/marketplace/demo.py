"""Demo copy trading for `make run` (called by `seed_demo` after the demo deployment): Alice's
demo deployment is published as a listing and approved by the operator, and Bob copies it with
a paper account, so every fill of Alice's deployment shows up on Bob's subscription page as a
copied trade beside hers. Idempotent: an existing listing or subscription is left alone.
"""

import logging
from collections.abc import Callable
from decimal import Decimal

from apps.accounts.models import TradingAccount
from apps.marketplace.models import Listing, Subscription
from apps.strategies.models import Deployment
from apps.users.models import User

logger = logging.getLogger(__name__)
Log = Callable[[str], None]

OPERATOR = "admin@demo.local"
FOLLOWER = "bob@demo.local"
FOLLOWER_ACCOUNT = "Copy paper"
TITLE = "Fast SMA cross on BTC (demo)"
DESCRIPTION = """A fast **3/8 SMA cross** on the demo BTC/USDT replay, long only, half the
capital per entry with a 1 % stop and a 2 % target.

- Verified record: every number on this page comes from the deployment's own fills.
- Copy it with a paper account to watch copied trades arrive next to the leader's.
"""


def demo_marketplace_seed(*, leader: Deployment | None, log: Log | None = None) -> Subscription | None:
    """Publish and approve the demo listing, and subscribe Bob's paper account to it."""
    say: Log = log or logger.info
    operator = User.objects.filter(email=OPERATOR).first()
    follower = User.objects.filter(email=FOLLOWER).first()
    if leader is None or operator is None or follower is None:
        say("  no demo listing: the demo deployment or users are missing")
        return None
    listing = Listing.objects.filter(deployment=leader).first() or _listing(leader, operator)
    existing = Subscription.objects.filter(listing=listing, follower=follower).first()
    if existing is not None:
        return existing
    from apps.marketplace.services.subscriptions import subscription_create

    subscription = subscription_create(
        follower=follower,
        listing=listing,
        account_id=_follower_account(follower).pk,
        allocation=Decimal("5000"),
        sizing_mode=Subscription.Sizing.EQUITY_RATIO,
        max_loss=Decimal("1000"),
        max_price_deviation_pct=Decimal("2"),
    )
    say(f"  {listing.owner.email}: listing '{listing.title}' ({listing.status}); {follower.email} copies it")
    return subscription


def _listing(leader: Deployment, operator: User) -> Listing:
    from apps.marketplace.services.listings import listing_approve, listing_create, listing_submit

    listing = listing_create(
        owner=leader.owner,
        deployment_id=leader.pk,
        title=TITLE,
        description=DESCRIPTION,
        tags=["trend", "sma", "btc"],
        asset_class=Listing.AssetClass.CRYPTO,
        risk_level=Listing.Risk.MEDIUM,
        min_allocation=Decimal("100"),
        monthly_fee=Decimal("0"),
        performance_fee_pct=Decimal("10"),
    )
    listing = listing_submit(listing=listing, actor=leader.owner)
    return listing_approve(listing=listing, actor=operator)


def _follower_account(follower: User) -> TradingAccount:
    from apps.accounts.services import account_connect_paper

    account = TradingAccount.objects.filter(owner=follower, name=FOLLOWER_ACCOUNT).first()
    if account is not None:
        return account
    return account_connect_paper(
        owner=follower,
        name=FOLLOWER_ACCOUNT,
        balances={"USDT": Decimal("20000"), "BTC": Decimal("0")},
        costs={"fee": 0.001},
    )
