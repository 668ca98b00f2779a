"""Fixtures of the copy fan-out tests: a leader (alice) with a running paper deployment listed
and approved, followers with funded paper accounts, and leader fills made by the real paper
venue (an order submitted, then the next bar closed and synced), never written by hand."""

from decimal import Decimal
from typing import Any

from apps.accounts.models import TradingAccount
from apps.marketplace.models import Listing, Subscription
from apps.marketplace.services.subscriptions import subscription_create
from apps.strategies.models import Deployment
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill
from apps.trades.services.orders import order_submit, orders_sync_for_account
from tests.factories import UserFactory
from tests.trades.execution_support import close_bar, make_deployment, make_paper_account

D = Decimal


def make_listing(deployment: Deployment, **extra: Any) -> Listing:
    values: dict[str, Any] = {
        "owner": deployment.owner,
        "deployment": deployment,
        "title": f"Listing of {deployment.name}",
        "status": Listing.Status.APPROVED,
        "currency": "USDT",
    }
    values.update(extra)
    return Listing.objects.create(**values)


def make_leader(alice: Any, instrument: Any, *, capital: str = "10000") -> tuple[TradingAccount, Deployment, Listing]:
    account = make_paper_account(alice, name=f"Leader paper {TradingAccount.objects.count() + 1}", costs={"fee": 0.001})
    deployment = make_deployment(account, instrument, capital=D(capital))
    return account, deployment, make_listing(deployment)


def make_follower(
    listing: Listing, n: int, *, usdt: str = "10000", allocation: str = "1000", **limits: Any
) -> Subscription:
    user = UserFactory(email=f"follower{n}@example.com")
    account = make_paper_account(user, name=f"Follower {n}", usdt=usdt, costs={"fee": 0.001})
    values: dict[str, Any] = {"sizing_mode": "multiplier", "multiplier": D("0.1")}
    values.update(limits)
    return subscription_create(follower=user, listing=listing, account_id=account.pk, allocation=allocation, **values)


def leader_fill(deployment: Deployment, instrument: Any, *, side: str, quantity: str, bar: int, price: float) -> Fill:
    """A real leader fill: a market order of the deployment, filled by the paper venue at the
    open of bar ``bar`` (which closes at ``price``), synced into a Fill."""
    order = order_submit(
        intent=OrderIntent(
            account_id=deployment.account_id,
            instrument_id=instrument.pk,
            deployment_id=deployment.pk,
            side=side,
            quantity=D(quantity),
            client_order_id=f"leader-{bar}-{side}",
            timeframe="1h",
        )
    )
    close_bar(instrument, bar, price, price + 1, price - 1, price)
    orders_sync_for_account(account_id=deployment.account_id, client_order_ids=[order.client_order_id])
    return Fill.objects.get(order=order)
