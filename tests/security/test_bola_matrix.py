"""The BOLA matrix (RELIABILITY 30): every path of the OpenAPI schema is listed here with who may
see what, and an outsider (mallory) calling every method of every object route with the owner's
ids gets 404, while every list she reads holds none of the owner's ids.

A new path in the schema that is missing from OWNERSHIP fails the test: whoever adds an endpoint
must decide, here, whether it is public, the caller's own, or an owned object.
"""

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from knox.models import get_token_model
from rest_framework.test import APIClient

from apps.backtests.models import Backtest, MonteCarlo, Optimisation, WalkForward
from apps.marketdata.models import Instrument
from apps.strategies.models import RuleSet

pytestmark = pytest.mark.django_db

RULES = {"version": 1, "enter_long": {"left": {"column": "close"}, "op": ">", "right": {"value": 1}}}


def _instrument() -> Instrument:
    return Instrument.objects.get_or_create(venue="binance", symbol="BTC/USDT")[0]


def _run(model: type, owner: Any, **extra: Any) -> Any:
    return model.objects.create(
        owner=owner, strategy_key="sma_cross", instrument=_instrument(), timeframe="1h", **extra
    )


def _backtest(owner: Any) -> str:
    return str(_run(Backtest, owner).pk)


def _optimisation(owner: Any) -> str:
    return str(_run(Optimisation, owner).pk)


def _walk_forward(owner: Any) -> str:
    return str(_run(WalkForward, owner).pk)


def _monte_carlo(owner: Any) -> str:
    backtest = _run(Backtest, owner, status="succeeded")
    return str(MonteCarlo.objects.create(owner=owner, backtest=backtest).pk)


def _rule_set(owner: Any) -> str:
    return str(RuleSet.objects.create(owner=owner, name="mine", rules=RULES).pk)


def _notification(owner: Any) -> str:
    from apps.notifications.services import notify

    return str(notify(user_id=owner.pk, event="order_filled", title="owner's fill", body="").pk)


def _alert_rule(owner: Any) -> str:
    from apps.notifications.models import AlertRule

    return str(AlertRule.objects.create(user=owner, events=["order_filled"], channels=["email"]).pk)


def _delivery(owner: Any) -> str:
    from apps.notifications.models import AlertRule, Delivery
    from apps.notifications.services import notify

    AlertRule.objects.get_or_create(user=owner, events=["security"], channels=["email"])
    notification = notify(user_id=owner.pk, event="security", title="owner's login", body="")
    return str(Delivery.objects.filter(notification=notification).first().pk)


def _token(owner: Any) -> str:
    token, _ = get_token_model().objects.create(user=owner, name="bot")
    return str(token.public_id)


def _account_row(owner: Any) -> Any:
    from apps.accounts.models import TradingAccount

    name = f"mine {TradingAccount.objects.filter(owner=owner).count()}"
    return TradingAccount.objects.create(owner=owner, name=name, kind="paper", exchange_id="paper")


def _account(owner: Any) -> str:
    return str(_account_row(owner).pk)


def _order_row(owner: Any) -> Any:
    from apps.trades import client_ids
    from apps.trades.models import Order

    return Order.objects.create(
        account=_account_row(owner),
        instrument=_instrument(),
        symbol="BTC/USDT",
        client_order_id=client_ids.manual_order_id(),
        source="manual",
        side="buy",
        type="limit",
        quantity="0.5",
        price="100",
        status="open",
    )


def _order(owner: Any) -> str:
    return str(_order_row(owner).pk)


def _fill(owner: Any) -> str:
    from django.utils import timezone

    from apps.trades.models import Fill

    order = _order_row(owner)
    fill = Fill.objects.create(
        order=order,
        account=order.account,
        instrument=order.instrument,
        trade_id=f"T{order.pk}",
        side="buy",
        quantity="0.5",
        price="100",
        filled_at=timezone.now(),
    )
    return str(fill.pk)


def _position(owner: Any) -> str:
    from apps.trades.models import Position

    account = _account_row(owner)
    position = Position.objects.create(
        account=account, instrument=_instrument(), symbol="BTC/USDT", quantity="0.5", average_price="100"
    )
    return str(position.pk)


def _risk_event(owner: Any) -> str:
    from apps.trades.models import RiskEvent

    event = RiskEvent.objects.create(account=_account_row(owner), code="max_position", message="too big")
    return str(event.pk)


def _deployment(owner: Any) -> str:
    from apps.strategies.models import Deployment

    deployment = Deployment.objects.create(
        owner=owner,
        account=_account_row(owner),
        name="mine",
        strategy_key="sma_cross",
        timeframe="1h",
        capital="1000",
    )
    deployment.instruments.add(_instrument())
    return str(deployment.pk)


def _listing_row(owner: Any) -> Any:
    from apps.marketplace.models import Listing

    return Listing.objects.create(
        owner=owner, deployment_id=int(_deployment(owner)), title="mine", status=Listing.Status.APPROVED
    )


def _leader_listing(owner: Any) -> str:
    return str(_listing_row(owner).pk)


def _draft_listing(owner: Any) -> str:
    """A listing still in draft: it does not exist for anyone but its owner (and staff)."""
    from apps.marketplace.models import Listing

    listing = _listing_row(owner)
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.DRAFT)
    return str(listing.pk)


def _subscription(owner: Any) -> str:
    """``owner`` follows another user's listing (the follower owns the subscription)."""
    from django.utils import timezone

    from apps.marketplace.models import Subscription
    from apps.strategies.models import Deployment
    from tests.factories import UserFactory

    listing = _listing_row(UserFactory())
    book = Deployment.objects.create(
        owner=owner,
        account=_account_row(owner),
        name="copy",
        kind=Deployment.Kind.COPY,
        strategy_key="copy",
        timeframe="1h",
        capital="1000",
    )
    subscription = Subscription.objects.create(
        listing=listing,
        follower=owner,
        account=book.account,
        deployment=book,
        allocation="1000",
        started_at=timezone.now(),
    )
    return str(subscription.pk)


def _ml_strategy_row(owner: Any) -> Any:
    from apps.ml.models import MLStrategy

    name = f"mine {MLStrategy.objects.filter(owner=owner).count()}"
    ml_strategy = MLStrategy.objects.create(owner=owner, name=name, timeframe="1h", features=["ret_1"])
    ml_strategy.instruments.add(_instrument())
    return ml_strategy


def _ml_strategy(owner: Any) -> str:
    return str(_ml_strategy_row(owner).pk)


def _ml_version(owner: Any) -> tuple[str, str]:
    """(ML strategy id, version number): a retired version with a model file, which the owner
    could promote or roll back to, and a queued training the owner could cancel."""
    from apps.ml.models import ModelVersion

    ml_strategy = _ml_strategy_row(owner)
    old = ModelVersion.objects.create(
        ml_strategy=ml_strategy, owner=owner, number=1, status="retired", artifact=b"x", artifact_sha256="0" * 64
    )
    current = ModelVersion.objects.create(
        ml_strategy=ml_strategy,
        owner=owner,
        number=2,
        status="promoted",
        artifact=b"y",
        artifact_sha256="1" * 64,
        replaced=old,
    )
    ModelVersion.objects.create(ml_strategy=ml_strategy, owner=owner, number=3, status="queued")
    type(ml_strategy).objects.filter(pk=ml_strategy.pk).update(promoted_version=current)
    return str(ml_strategy.pk), "1"


Maker = Callable[[Any], str | tuple[str, ...]]

# path -> ("public" | "self" | "list" | maker of the owner's object id for the path's one parameter)
OWNERSHIP: dict[str, str | Maker] = {
    "/api/v1/me/": "self",
    "/api/v1/tokens/": "list",
    "/api/v1/tokens/{public_id}/": _token,
    "/api/v1/instruments/": "public",
    "/api/v1/instruments/{instrument_id}/": "public",
    "/api/v1/instruments/{instrument_id}/candles/": "public",
    "/api/v1/instruments/{instrument_id}/structure/": "public",
    "/api/v1/strategies/": "public",
    "/api/v1/strategies/{key}/": "public",
    "/api/v1/rule-sets/": "list",
    "/api/v1/rule-sets/indicators/": "public",
    "/api/v1/rule-sets/validate/": "public",
    "/api/v1/rule-sets/{rule_set_id}/": _rule_set,
    "/api/v1/backtests/": "list",
    "/api/v1/backtests/{backtest_id}/": _backtest,
    "/api/v1/backtests/{backtest_id}/cancel/": _backtest,
    "/api/v1/backtests/{backtest_id}/rerun/": _backtest,
    "/api/v1/backtests/{backtest_id}/trades/": _backtest,
    "/api/v1/backtests/{backtest_id}/equity/": _backtest,
    "/api/v1/optimisations/": "list",
    "/api/v1/optimisations/{optimisation_id}/": _optimisation,
    "/api/v1/optimisations/{optimisation_id}/cancel/": _optimisation,
    "/api/v1/optimisations/{optimisation_id}/trials/": _optimisation,
    "/api/v1/optimisations/{optimisation_id}/heatmap/": _optimisation,
    "/api/v1/walk-forwards/": "list",
    "/api/v1/walk-forwards/{walk_forward_id}/": _walk_forward,
    "/api/v1/walk-forwards/{walk_forward_id}/cancel/": _walk_forward,
    "/api/v1/monte-carlos/": "list",
    "/api/v1/monte-carlos/{monte_carlo_id}/": _monte_carlo,
    "/api/v1/monte-carlos/{monte_carlo_id}/cancel/": _monte_carlo,
    "/api/v1/accounts/": "list",
    "/api/v1/accounts/{account_id}/": _account,
    "/api/v1/accounts/{account_id}/test/": _account,
    "/api/v1/accounts/{account_id}/balances/": _account,
    "/api/v1/accounts/{account_id}/reconnect/": _account,
    "/api/v1/orders/": "list",
    "/api/v1/orders/{order_id}/": _order,
    "/api/v1/orders/{order_id}/cancel/": _order,
    "/api/v1/fills/": "list",
    "/api/v1/positions/": "list",
    "/api/v1/risk-events/": "list",
    "/api/v1/deployments/": "list",
    "/api/v1/deployments/{deployment_id}/": _deployment,
    "/api/v1/deployments/{deployment_id}/start/": _deployment,
    "/api/v1/deployments/{deployment_id}/pause/": _deployment,
    "/api/v1/deployments/{deployment_id}/resume/": _deployment,
    "/api/v1/deployments/{deployment_id}/stop/": _deployment,
    "/api/v1/deployments/{deployment_id}/signals/": _deployment,
    "/api/v1/deployments/{deployment_id}/orders/": _deployment,
    "/api/v1/deployments/{deployment_id}/fills/": _deployment,
    "/api/v1/deployments/{deployment_id}/equity/": _deployment,
    "/api/v1/deployments/{deployment_id}/chart/": _deployment,
    "/api/v1/deployments/{deployment_id}/webhook/": _deployment,
    "/api/v1/deployments/{deployment_id}/webhook/enable/": _deployment,
    "/api/v1/deployments/{deployment_id}/webhook/disable/": _deployment,
    "/api/v1/deployments/{deployment_id}/webhook/rotate/": _deployment,
    "/api/v1/deployments/{deployment_id}/webhook/signals/": _deployment,
    "/api/v1/subscriptions/": "list",
    "/api/v1/subscriptions/{subscription_id}/": _subscription,
    "/api/v1/subscriptions/{subscription_id}/pause/": _subscription,
    "/api/v1/subscriptions/{subscription_id}/resume/": _subscription,
    "/api/v1/subscriptions/{subscription_id}/unsubscribe/": _subscription,
    "/api/v1/subscriptions/{subscription_id}/copies/": _subscription,
    "/api/v1/subscriptions/{subscription_id}/fees/": _subscription,
    "/api/v1/leader/listings/{listing_id}/followers/": _leader_listing,
    "/api/v1/listings/": "list",
    "/api/v1/listings/mine/": "list",
    "/api/v1/listings/{listing_id}/": _draft_listing,
    "/api/v1/listings/{listing_id}/submit/": _draft_listing,
    "/api/v1/listings/{listing_id}/track-record/": _draft_listing,
    "/api/v1/listings/{listing_id}/trades/": _draft_listing,
    "/api/v1/listings/{listing_id}/reviews/": _draft_listing,
    "/api/v1/ml/features/": "public",
    "/api/v1/ml/strategies/": "list",
    "/api/v1/ml/strategies/{ml_strategy_id}/": _ml_strategy,
    "/api/v1/ml/strategies/{ml_strategy_id}/train/": _ml_strategy,
    "/api/v1/ml/strategies/{ml_strategy_id}/rollback/": lambda owner: _ml_version(owner)[0],
    "/api/v1/ml/strategies/{ml_strategy_id}/versions/": _ml_strategy,
    "/api/v1/ml/strategies/{ml_strategy_id}/versions/{number}/": _ml_version,
    "/api/v1/ml/strategies/{ml_strategy_id}/versions/{number}/promote/": _ml_version,
    "/api/v1/ml/strategies/{ml_strategy_id}/versions/{number}/cancel/": lambda owner: (_ml_version(owner)[0], "3"),
    "/api/v1/ml/strategies/{ml_strategy_id}/drift/": _ml_strategy,
    "/api/v1/ml/strategies/{ml_strategy_id}/backtest/": _ml_strategy,
    "/api/v1/ml/strategies/{ml_strategy_id}/deploy/": _ml_strategy,
    "/api/v1/notifications/": "list",
    "/api/v1/notifications/read-all/": "self",
    "/api/v1/notifications/{notification_id}/": _notification,
    "/api/v1/notifications/{notification_id}/read/": _notification,
    "/api/v1/notification-settings/": "self",
    "/api/v1/notification-settings/webhook-secret/": "self",
    "/api/v1/notification-settings/telegram-link/": "self",
    "/api/v1/alert-rules/": "list",
    "/api/v1/alert-rules/{rule_id}/": _alert_rule,
    "/api/v1/deliveries/": "list",
}

# list path -> maker of an owner's object whose id must not appear in an outsider's list
LIST_OBJECTS: dict[str, Maker] = {
    "/api/v1/tokens/": _token,
    "/api/v1/rule-sets/": _rule_set,
    "/api/v1/backtests/": _backtest,
    "/api/v1/optimisations/": _optimisation,
    "/api/v1/walk-forwards/": _walk_forward,
    "/api/v1/monte-carlos/": _monte_carlo,
    "/api/v1/accounts/": _account,
    "/api/v1/orders/": _order,
    "/api/v1/fills/": _fill,
    "/api/v1/positions/": _position,
    "/api/v1/risk-events/": _risk_event,
    "/api/v1/deployments/": _deployment,
    # Before the subscriptions: their maker approves a listing, which the public list then shows
    # (with timestamps, where a small id's digits would be found).
    "/api/v1/listings/": _draft_listing,
    "/api/v1/listings/mine/": _draft_listing,
    "/api/v1/subscriptions/": _subscription,
    "/api/v1/ml/strategies/": _ml_strategy,
    "/api/v1/notifications/": _notification,
    "/api/v1/alert-rules/": _alert_rule,
    "/api/v1/deliveries/": _delivery,
}


def _schema_paths(tmp_path: Any) -> dict[str, list[str]]:
    out = tmp_path / "schema.json"
    call_command("spectacular", "--format", "openapi-json", "--file", str(out))
    paths = json.loads(out.read_text())["paths"]
    return {
        path: [method for method in ops if method in {"get", "post", "put", "patch", "delete"}]
        for path, ops in paths.items()
    }


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_every_schema_path_has_an_ownership_rule(tmp_path):
    paths = _schema_paths(tmp_path)
    missing = sorted(set(paths) - set(OWNERSHIP))
    assert not missing, f"add these paths to OWNERSHIP with their rule: {missing}"
    assert sorted(set(OWNERSHIP) - set(paths)) == [], "OWNERSHIP lists paths the schema no longer has"


def test_outsider_gets_404_on_every_method_of_every_owned_object_route(tmp_path, alice, mallory):
    paths = _schema_paths(tmp_path)
    client = _client(mallory)
    checked = 0
    for path, rule in OWNERSHIP.items():
        if isinstance(rule, str):
            continue
        object_ids = rule(alice)
        # Each {parameter} of the path in turn (an ML version is named by its strategy and number).
        url = path
        for object_id in (object_ids,) if isinstance(object_ids, str) else object_ids:
            url = re.sub(r"\{[^}]+\}", object_id, url, count=1)
        for method in paths[path]:
            response = getattr(client, method)(url, data={}, format="json")
            assert response.status_code in (403, 404), f"{method.upper()} {url} -> {response.status_code}"
            checked += 1
    # and nothing of alice's changed: none of her jobs was cancelled or rerun, her rule set is intact
    for model in (Backtest, Optimisation, WalkForward, MonteCarlo):
        assert not model.objects.filter(owner=alice, status="cancelled").exists(), model
    assert Backtest.objects.filter(owner=mallory).count() == 0
    assert RuleSet.objects.filter(owner=alice, rules=RULES).count() == RuleSet.objects.filter(owner=alice).count()
    # none of her accounts was disabled or renamed, none of her orders cancelled
    from apps.accounts.models import TradingAccount
    from apps.trades.models import Order

    assert not TradingAccount.objects.filter(owner=alice).exclude(status="active").exists()
    assert not TradingAccount.objects.filter(owner=alice).exclude(name__startswith="mine ").exists()
    assert not Order.objects.filter(account__owner=alice, status="cancelled").exists()
    from apps.strategies.models import Deployment

    assert set(Deployment.objects.filter(owner=alice).values_list("status", flat=True)) == {"draft"}
    # none of her ML strategies changed hands, trained, promoted or rolled back, none was deleted
    from apps.ml.models import MLStrategy, ModelVersion

    assert MLStrategy.objects.filter(owner=alice).count() == MLStrategy.objects.count() > 0
    assert not ModelVersion.objects.filter(number__gt=3).exists()
    assert set(ModelVersion.objects.filter(number=1).values_list("status", flat=True)) == {"retired"}
    assert set(ModelVersion.objects.filter(number=3).values_list("status", flat=True)) == {"queued"}
    assert Deployment.objects.filter(owner=mallory).count() == 0
    assert checked >= 19


def test_outsider_lists_hold_none_of_the_owners_ids(alice, mallory):
    client = _client(mallory)
    for path, maker in LIST_OBJECTS.items():
        object_id = maker(alice)
        response = client.get(path)
        assert response.status_code == 200, path
        assert object_id not in json.dumps(response.json()), f"{path} shows alice's {object_id} to mallory"
