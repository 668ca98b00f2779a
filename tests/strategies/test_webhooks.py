"""TradingView webhooks through the public endpoint, with real parts: the paper venue, the
execution service, the cache (Redis or local memory) and the database's unique constraint.

Every bad request gets its 4xx, places nothing and is recorded for the owner; an accepted buy
goes through order_submit and the paper venue fills it at the next bar; a nonce acts once; a
rotated secret stops working at once."""

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from apps.strategies.base import Strategy
from apps.strategies.models import Deployment, DeploymentWebhook, WebhookSignal
from apps.strategies.registry import register
from apps.strategies.services import deployments as deployment_services
from apps.strategies.webhooks import services as webhook_services
from apps.trades.client_ids import PATTERN, webhook_order_id
from apps.trades.models import Fill, Order, Position
from tests.strategies.deploy_support import (
    deployment_kwargs,
    feed_bar,
    market,
    next_bars,
    paper_account,
    ticks_inline,
)

__all__ = ["market", "paper_account", "ticks_inline"]


@register
class SilentStrategy(Strategy):
    """Test only: never signals, so every order of these tests comes from the webhook."""

    key = "test_webhook_silent"
    name = "Silent (test)"
    is_public = False

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        return candles.assign(enter_long=False, exit_long=False)


@dataclass
class Hook:
    deployment: Deployment
    webhook: DeploymentWebhook
    secret: str
    url: str


def make_hook(market: Any, account: Any, *, start: bool = True, **overrides: Any) -> Hook:
    spec = deployment_kwargs(market, account, strategy_key="test_webhook_silent", **overrides)
    deployment = deployment_services.deployment_create(**spec)
    if start:
        deployment = deployment_services.deployment_start(deployment=deployment, mode="paper")
    webhook, secret = webhook_services.webhook_enable(deployment=deployment, actor=account.owner)
    assert secret is not None
    return Hook(deployment, webhook, secret, f"/hooks/tradingview/{webhook.token}/")


@pytest.fixture
def hook(market: Any, paper_account: Any) -> Hook:
    return make_hook(market, paper_account)


_counter = iter(range(1, 1_000_000))


def alert(hook: Hook | None = None, **fields: Any) -> dict[str, Any]:
    """A TradingView-style alert: secret in the body, ISO {{timenow}}, a fresh nonce."""
    body: dict[str, Any] = {
        "action": "buy",
        "symbol": "TSTUSDT",
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "nonce": f"n-{next(_counter)}",
    }
    if hook is not None:
        body["secret"] = hook.secret
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def post(url: str, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().generic("POST", url, raw, content_type="text/plain", headers=headers)


def orders_of(hook: Hook) -> list[Order]:
    return list(Order.objects.filter(deployment=hook.deployment))


def refused(hook: Hook) -> list[WebhookSignal]:
    return list(WebhookSignal.objects.filter(deployment=hook.deployment, status="refused"))


# --- accepted -------------------------------------------------------------------------------


def test_an_accepted_buy_places_one_order_through_order_submit_that_the_paper_venue_fills_at_the_next_bar(
    hook: Hook, market: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a running paper deployment with its webhook
    body = alert(hook)
    # when TradingView posts a buy
    with django_capture_on_commit_callbacks(execute=True):
        response = post(hook.url, body)
    # then 200, one webhook order with the id of (deployment, nonce), open at the paper venue
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "accepted" and answer["code"] == "ok"
    (order,) = orders_of(hook)
    assert order.source == Order.Source.WEBHOOK and order.side == "buy" and order.leg == "entry"
    assert order.client_order_id == webhook_order_id(deployment_id=hook.deployment.pk, nonce=body["nonce"], leg="entry")
    assert PATTERN.match(order.client_order_id)
    assert order.status == Order.Status.OPEN and order.sizing and order.sizing["mode"] == "fixed_fraction"
    assert answer["orders"][0]["id"] == order.pk
    signal = WebhookSignal.objects.get(deployment=hook.deployment)
    assert signal.status == "accepted" and signal.order_id == order.pk and signal.order_ids == [order.pk]
    assert signal.action == "buy" and signal.nonce == body["nonce"] and signal.http_status == 200
    # when the next bar closes, the paper venue fills it at its open
    bars = next_bars(1)
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    fill = Fill.objects.get(order=order)
    assert abs(float(fill.price) - bars.iloc[0]["open"]) < 0.011
    position = Position.objects.get(deployment=hook.deployment, instrument=market)
    # fixed fraction 0.5 of 10,000 capital at about 100
    assert Decimal("40") < position.quantity < Decimal("60")


def test_the_same_nonce_twice_places_one_order_and_the_second_is_a_409(hook: Hook) -> None:
    body = alert(hook)
    assert post(hook.url, body).status_code == 200
    second = post(hook.url, body)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "replayed_nonce"
    assert len(orders_of(hook)) == 1
    (attempt,) = refused(hook)
    assert attempt.code == "replayed_nonce" and attempt.nonce == body["nonce"] and attempt.order_id is None


def test_the_database_refuses_a_second_accepted_signal_with_the_same_nonce(hook: Hook) -> None:
    # the guard two simultaneous deliveries meet: UNIQUE(deployment, nonce) among accepted ones
    fields = {"webhook": hook.webhook, "deployment": hook.deployment, "code": "ok", "http_status": 200, "nonce": "x"}
    WebhookSignal.objects.create(status="accepted", **fields)
    WebhookSignal.objects.create(status="refused", **fields)  # refusals may repeat a nonce
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookSignal.objects.create(status="accepted", **fields)


def test_a_replay_after_rotation_is_refused_and_the_new_secret_works(hook: Hook, alice: Any) -> None:
    body = alert(hook)
    assert post(hook.url, body).status_code == 200
    _, new_secret = webhook_services.webhook_rotate(deployment=hook.deployment, actor=alice)
    assert new_secret != hook.secret
    # the captured request again: the old secret no longer opens the door
    again = post(hook.url, body)
    assert again.status_code == 401 and again.json()["error"]["code"] == "bad_secret"
    # a fresh alert with the old secret: refused too
    assert post(hook.url, alert(hook)).status_code == 401
    assert len(orders_of(hook)) == 1
    # the new secret works (a sell exits nothing: flat and no shorts, so no order)
    fresh = post(hook.url, alert(None, secret=new_secret, action="close"))
    assert fresh.status_code == 200 and fresh.json()["code"] == "no_order"


def test_x_signature_authenticates_a_body_without_the_secret(hook: Hook) -> None:
    raw = json.dumps(alert(None)).encode()
    signature = hmac.new(hook.secret.encode(), raw, hashlib.sha256).hexdigest()
    response = post(hook.url, raw, **{"X-Signature": f"sha256={signature}"})
    assert response.status_code == 200, response.content
    assert len(orders_of(hook)) == 1


def test_a_given_size_and_price_make_a_limit_order_of_that_size(hook: Hook) -> None:
    response = post(hook.url, alert(hook, size="0.5", price=95.123, symbol="BINANCE:TSTUSDT"))
    assert response.status_code == 200, response.content
    (order,) = orders_of(hook)
    assert order.type == "limit" and order.quantity == Decimal("0.5") and order.price == Decimal("95.12")
    assert order.sizing is None


def test_close_flattens_the_position_with_a_reduce_only_exit(
    hook: Hook, market: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a filled long
    with django_capture_on_commit_callbacks(execute=True):
        assert post(hook.url, alert(hook, size="2")).status_code == 200
    bars = next_bars(2)
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    assert Position.objects.get(deployment=hook.deployment).quantity == Decimal("2")
    # when the alert says close
    with django_capture_on_commit_callbacks(execute=True):
        response = post(hook.url, alert(hook, action="close"))
    # then a reduce-only market sell of the whole position, filled at the next bar
    assert response.status_code == 200, response.content
    exit_order = Order.objects.get(deployment=hook.deployment, leg="exit")
    assert exit_order.reduce_only and exit_order.side == "sell" and exit_order.quantity == Decimal("2")
    assert exit_order.source == Order.Source.WEBHOOK
    feed_bar(market, bars.iloc[1:2], django_capture_on_commit_callbacks)
    assert Position.objects.get(deployment=hook.deployment).quantity == 0
    # and flat, with shorts allowed (the default), a sell enters short
    assert post(hook.url, alert(hook, action="sell")).json()["code"] == "ok"
    short = Order.objects.filter(deployment=hook.deployment, leg="entry", side="sell").get()
    assert not short.reduce_only


def test_a_sell_while_flat_places_nothing_when_shorts_are_off(market: Any, paper_account: Any) -> None:
    longs = make_hook(
        market, paper_account, settings={"sizing": {"mode": "fixed_fraction", "fraction": 0.5}, "allow_short": False}
    )
    response = post(longs.url, alert(longs, action="sell"))
    assert response.status_code == 200 and response.json()["code"] == "no_order"
    assert "shorting is off" in response.json()["message"]
    assert orders_of(longs) == []


def test_a_buy_while_an_entry_is_working_or_while_long_places_nothing(hook: Hook) -> None:
    assert post(hook.url, alert(hook)).status_code == 200
    # the entry is not filled yet: a second buy is not a second entry
    response = post(hook.url, alert(hook))
    assert response.status_code == 200 and response.json()["code"] == "no_order"
    assert len(orders_of(hook)) == 1
    # long (no pyramiding)
    Order.objects.filter(deployment=hook.deployment).update(status=Order.Status.FILLED)
    Position.objects.create(
        account_id=hook.deployment.account_id,
        deployment=hook.deployment,
        instrument=hook.deployment.instruments.get(),
        symbol="TST/USDT",
        quantity=Decimal("1"),
        average_price=Decimal("100"),
    )
    response = post(hook.url, alert(hook))
    assert response.status_code == 200 and response.json()["message"].startswith("Already long")
    assert len(orders_of(hook)) == 1


# --- refused: 4xx, nothing placed, the attempt recorded ---------------------------------------------


BAD: dict[str, tuple[Callable[[Hook], Any], int, str]] = {
    "wrong secret": (lambda h: alert(None, secret="tvwh_not-it"), 401, "bad_secret"),
    "no secret": (lambda h: alert(None), 401, "missing_secret"),
    "old timestamp": (lambda h: alert(h, timestamp=int(timezone.now().timestamp()) - 600), 422, "stale_timestamp"),
    "future timestamp": (
        lambda h: alert(h, timestamp=(timezone.now() + timedelta(minutes=10)).isoformat()),
        422,
        "stale_timestamp",
    ),
    "not json": (lambda h: b"buy TSTUSDT now", 422, "malformed"),
    "a json list": (lambda h: [alert(h)], 422, "malformed"),
    "unknown action": (lambda h: alert(h, action="moon"), 422, "invalid_payload"),
    "no nonce": (lambda h: {**alert(h), "nonce": ""}, 422, "invalid_payload"),
    "no timestamp": (lambda h: {k: v for k, v in alert(h).items() if k != "timestamp"}, 422, "invalid_payload"),
    "negative size": (lambda h: alert(h, size=-1), 422, "invalid_payload"),
    "size not a number": (lambda h: alert(h, size="lots"), 422, "invalid_payload"),
    "unknown symbol": (lambda h: alert(h, symbol="ETHUSDT"), 422, "unknown_symbol"),
    "body too large": (lambda h: alert(h, note="x" * 11_000), 413, "body_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_request_is_a_4xx_places_nothing_and_is_recorded(hook: Hook, case: str) -> None:
    make, status, code = BAD[case]
    response = post(hook.url, make(hook))
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert orders_of(hook) == []
    (attempt,) = refused(hook)
    assert attempt.code == code and attempt.http_status == status and attempt.message
    assert hook.secret not in json.dumps(attempt.payload) and "secret" not in attempt.payload


def test_a_bad_signature_is_a_401(hook: Hook) -> None:
    raw = json.dumps(alert(None)).encode()
    wrong = hmac.new(b"guess", raw, hashlib.sha256).hexdigest()
    response = post(hook.url, raw, **{"X-Signature": wrong})
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"
    assert orders_of(hook) == [] and refused(hook)[0].code == "bad_signature"


def test_invalid_fields_are_named(hook: Hook) -> None:
    response = post(hook.url, alert(hook, action="moon", size="x"))
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"action", "size"}


def test_an_unknown_token_is_a_404_recorded_nowhere(hook: Hook) -> None:
    response = post("/hooks/tradingview/not-a-token/", alert(hook))
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_webhook"
    assert not WebhookSignal.objects.exists() and not Order.objects.exists()


def test_a_disabled_webhook_is_a_403(hook: Hook, alice: Any) -> None:
    webhook_services.webhook_disable(deployment=hook.deployment, actor=alice)
    response = post(hook.url, alert(hook))
    assert response.status_code == 403 and response.json()["error"]["code"] == "disabled"
    assert orders_of(hook) == [] and refused(hook)[0].code == "disabled"
    # enabled again: the same URL and secret work
    webhook, secret = webhook_services.webhook_enable(deployment=hook.deployment, actor=alice)
    assert secret is None and webhook.token == hook.webhook.token
    assert post(hook.url, alert(hook)).status_code == 200


@pytest.mark.parametrize("action", ["pause", "stop"])
def test_a_deployment_that_is_not_running_is_a_409(hook: Hook, action: str) -> None:
    if action == "pause":
        deployment_services.deployment_pause(deployment=hook.deployment)
    else:
        deployment_services.deployment_stop(deployment=hook.deployment)
    response = post(hook.url, alert(hook))
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_running"
    assert orders_of(hook) == [] and refused(hook)[0].code == "not_running"


def test_a_draft_deployment_takes_no_signal(market: Any, paper_account: Any) -> None:
    draft = make_hook(market, paper_account, start=False)
    assert post(draft.url, alert(draft)).status_code == 409
    assert orders_of(draft) == []


def test_over_the_rate_limit_is_a_429_recorded_once_a_minute(hook: Hook, alice: Any) -> None:
    webhook_services.webhook_enable(deployment=hook.deployment, actor=alice, rate_limit_per_minute=2)
    answers = [post(hook.url, alert(hook)).status_code for _ in range(4)]
    assert answers == [200, 200, 429, 429]
    assert len(orders_of(hook)) == 1  # the second buy: the first entry is still working
    limited = [a for a in refused(hook) if a.code == "rate_limited"]
    assert len(limited) == 1 and limited[0].http_status == 429


def test_a_get_is_a_405(hook: Hook) -> None:
    response = Client().get(hook.url)
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_the_endpoint_needs_no_csrf_token_and_no_session(hook: Hook) -> None:
    client = Client(enforce_csrf_checks=True)
    raw = json.dumps(alert(hook)).encode()
    response = client.generic("POST", hook.url, raw, content_type="application/json")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


def test_the_secret_is_never_echoed_logged_or_stored(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [post(hook.url, alert(hook)).content, post(hook.url, alert(hook, symbol="NOPE")).content]
    bodies.append(post(hook.url, alert(None, secret=hook.secret + "x")).content)
    for body in bodies:
        assert hook.secret.encode() not in body
    assert hook.secret not in caplog.text
    for attempt in WebhookSignal.objects.all():
        assert hook.secret not in json.dumps(attempt.payload) and hook.secret not in attempt.message
    assert hook.secret not in DeploymentWebhook.objects.get(pk=hook.webhook.pk).secret_encrypted


# --- outsiders ------------------------------------------------------------------------------------


def test_a_token_only_ever_acts_on_its_own_deployment(market: Any, paper_account: Any, bob: Any) -> None:
    from apps.accounts.services import account_connect_paper

    mine = make_hook(market, paper_account)
    bobs_account = account_connect_paper(owner=bob, name="Paper", balances={"USDT": Decimal("100000")})
    theirs = make_hook(market, bobs_account)
    # bob's secret on alice's URL: refused, and nothing anywhere
    response = post(mine.url, alert(theirs))
    assert response.status_code == 401
    assert not Order.objects.exists()
    # alice's signal on her URL trades on her deployment only
    assert post(mine.url, alert(mine)).status_code == 200
    assert Order.objects.get().deployment_id == mine.deployment.pk
    assert not WebhookSignal.objects.filter(deployment=theirs.deployment).exists()


def test_the_owner_is_told_live_of_every_attempt(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, str, dict[str, Any]]] = []
    monkeypatch.setattr(webhook_services, "broadcast", lambda user_id, event, data: sent.append((user_id, event, data)))
    post(hook.url, alert(hook))
    post(hook.url, alert(None, secret="wrong"))
    events = [(user, event, data["status"], data["code"]) for user, event, data in sent]
    owner = hook.deployment.owner_id
    assert events == [(owner, "webhook.signal", "accepted", "ok"), (owner, "webhook.signal", "refused", "bad_secret")]


# --- two deliveries at once ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_alert_delivered_twice_at_once_places_one_order(market: Any, paper_account: Any) -> None:
    """Both requests pass the early nonce check; the account lock and UNIQUE(deployment, nonce)
    let one through, the other is a 409. Real threads, each with its own connection."""
    import threading

    from django.db import connections

    hook = make_hook(market, paper_account)
    raw = json.dumps(alert(hook)).encode()
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        try:
            barrier.wait()
            statuses.append(webhook_services.webhook_receive(token=hook.webhook.token, body=raw, signature=None).status)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 409, 409, 409]
    assert len(orders_of(hook)) == 1
    assert WebhookSignal.objects.filter(deployment=hook.deployment, status="accepted").count() == 1
    assert WebhookSignal.objects.filter(deployment=hook.deployment, code="replayed_nonce").count() == 3
