"""Demo trading for `make run` (called by the `seed_demo` command after the demo markets):
Alice gets a paper account and a running paper deployment of a pre-built strategy on the demo
replay market, so the deployment page shows signals, orders, fills and P&L arriving live.

The replay (apps.marketdata.demo) closes one 1m bar every few seconds; a fast SMA cross (3/8)
on it crosses every few minutes of replayed time, so the first signal comes within a minute or
two of starting. Idempotent: an existing demo account or deployment is left alone.
"""

import logging
from collections.abc import Callable
from decimal import Decimal

from django.db import transaction

from apps.accounts.models import TradingAccount
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.users.models import User

logger = logging.getLogger(__name__)
Log = Callable[[str], None]

DEMO_OWNER = "alice@demo.local"
ACCOUNT_NAME = "Demo paper"
DEPLOYMENT_NAME = "Demo: SMA cross 3/8 on the replay"
REPLAY_VENUE = "replay"
SYMBOL = "BTC/USDT"


def demo_deployments_seed(*, log: Log | None = None) -> Deployment | None:
    """Create (once) the demo paper account and start the demo deployment. Returns it, or None
    when the demo user or the replay market is missing."""
    say: Log = log or logger.info
    owner = User.objects.filter(email=DEMO_OWNER).first()
    instrument = Instrument.objects.filter(venue=REPLAY_VENUE, symbol=SYMBOL).first()
    if owner is None or instrument is None:
        say("  no demo deployment: the demo user or the replay market is missing")
        return None
    with transaction.atomic():
        existing = Deployment.objects.filter(owner=owner, name=DEPLOYMENT_NAME).first()
        if existing is not None:
            return existing
        account = _account(owner)
        deployment = _deployment(owner, account, instrument)
    say(f"  {owner.email}: paper account '{account.name}', deployment '{deployment.name}' ({deployment.status})")
    return deployment


def _account(owner: User) -> TradingAccount:
    from apps.accounts.services import account_connect_paper

    account = TradingAccount.objects.filter(owner=owner, name=ACCOUNT_NAME).first()
    if account is not None:
        return account
    return account_connect_paper(
        owner=owner,
        name=ACCOUNT_NAME,
        balances={"USDT": Decimal("100000"), "BTC": Decimal("0")},
        costs={"fee": 0.001},
    )


def _deployment(owner: User, account: TradingAccount, instrument: Instrument) -> Deployment:
    from apps.strategies.services.deployments import deployment_create, deployment_start

    deployment = deployment_create(
        owner=owner,
        account_id=account.pk,
        instrument_ids=[instrument.pk],
        timeframe="1m",
        capital=Decimal("10000"),
        strategy_key="sma_cross",
        params={"fast": 3, "slow": 8, "short": False},
        settings={
            "sizing": {"mode": "fixed_fraction", "fraction": 0.5},
            "exits": {"stop_loss": 0.01, "take_profit": 0.02},
        },
        risk={"max_drawdown": 0.5},
        name=DEPLOYMENT_NAME,
    )
    return deployment_start(deployment=deployment, mode="paper")
