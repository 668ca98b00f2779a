"""Orders / fills / positions / risk events API: owner-scoped (mallory gets 404s and sees
nothing), manual orders pass the same risk checks (422 with the code), bad input is 400 naming
the field, server-owned fields are refused, Idempotency-Key replays the same order, and a manual
market order on a paper account is filled when the next bar closes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import TradingAccount
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.trades.models import Fill, Order, PlatformSwitch, RiskEvent
from tests.trades.risk_fixtures import btc_rules, hold, make_account, make_instrument, open_order, paper

__all__ = ["btc_rules", "paper"]
pytestmark = pytest.mark.django_db
D = Decimal
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def with_candles(instrument: Instrument, *, bars: int = 3, close: float = 100.0) -> datetime:
    """Stored 1h candles up to T0 + bars - 1 hours; returns the newest bar's open time."""
    for i in range(bars):
        Candle.objects.create(
            instrument=instrument,
            timeframe="1h",
            ts=T0 + timedelta(hours=i),
            open=close,
            high=close + 1,
            low=close - 1,
            close=close,
            volume=10,
        )
    last = T0 + timedelta(hours=bars - 1)
    CandleSeries.objects.update_or_create(
        instrument=instrument,
        timeframe="1h",
        defaults={"first_ts": T0, "last_ts": last, "count": bars, "is_live": True},
    )
    return last


@pytest.fixture
def funded(paper: TradingAccount) -> TradingAccount:
    from apps.accounts.paper import paper_account_fund

    paper_account_fund(account=paper, balances={"USDT": D("100000")})
    return paper


def order_body(account: TradingAccount, target: Instrument, **extra: Any) -> dict[str, Any]:
    return {
        "account": account.pk,
        "instrument": target.pk,
        "side": "buy",
        "type": "market",
        "quantity": "1",
        **extra,
    }


# --- placing ---------------------------------------------------------------------------------------


def test_manual_market_order_on_paper_fills_after_the_next_bar(
    alice: Any, funded: TradingAccount, btc_rules: Instrument, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.accounts.paper import paper_bar_closed

    last = with_candles(btc_rules)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post("/api/v1/orders/", order_body(funded, btc_rules), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source"] == "manual" and body["status"] in ("new", "open")
    assert response["Location"].endswith(f"/api/v1/orders/{body['id']}/")
    bar_ts = last + timedelta(hours=1)
    Candle.objects.create(
        instrument=btc_rules, timeframe="1h", ts=bar_ts, open=101, high=102, low=100, close=101, volume=5
    )
    with django_capture_on_commit_callbacks(execute=True):
        paper_bar_closed(
            instrument_id=btc_rules.pk,
            timeframe="1h",
            ts=bar_ts,
            bar={"open": 101.0, "high": 102.0, "low": 100.0, "close": 101.0, "volume": 5.0},
        )
    order = Order.objects.get(pk=body["id"])
    assert order.status == "filled", order.status_reason
    assert order.filled_quantity == D("1")
    detail = client_for(alice).get(f"/api/v1/orders/{order.pk}/").json()
    assert detail["status"] == "filled" and len(detail["fills"]) == 1
    fills = client_for(alice).get("/api/v1/fills/").json()["results"]
    assert [f["order"] for f in fills] == [order.pk]
    positions = client_for(alice).get("/api/v1/positions/?open=true").json()["results"]
    assert len(positions) == 1 and D(positions[0]["quantity"]) == D("1")
    assert positions[0]["mark_price"] is not None and positions[0]["unrealized_pnl"] is not None


def test_refusal_is_422_with_code_and_recorded(alice: Any, paper: TradingAccount, btc_rules: Instrument) -> None:
    with_candles(btc_rules)
    paper.risk_limits = {"max_order_notional": "50"}
    paper.save()
    response = client_for(alice).post("/api/v1/orders/", order_body(paper, btc_rules), format="json")
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "max_order_notional"
    assert "maximum per order" in error["message"]
    order = Order.objects.get(account=paper)
    assert order.status == "rejected"
    assert RiskEvent.objects.get(order=order).code == "max_order_notional"
    events = client_for(alice).get("/api/v1/risk-events/").json()["results"]
    assert events[0]["code"] == "max_order_notional" and events[0]["client_order_id"] == order.client_order_id


def test_kill_switch_refuses_increasing_accepts_reducing(
    alice: Any, paper: TradingAccount, btc_rules: Instrument
) -> None:
    with_candles(btc_rules)
    hold(paper, btc_rules, "2")
    PlatformSwitch.objects.create(pk=1, mode="reduce_only", reason="drill")
    response = client_for(alice).post("/api/v1/orders/", order_body(paper, btc_rules), format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "reduce_only"
    response = client_for(alice).post("/api/v1/orders/", order_body(paper, btc_rules, side="sell"), format="json")
    assert response.status_code == 201, response.content
    PlatformSwitch.objects.filter(pk=1).update(mode="halted")
    response = client_for(alice).post("/api/v1/orders/", order_body(paper, btc_rules, side="sell"), format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "kill_switch"


def test_idempotency_key_gives_the_same_order(alice: Any, paper: TradingAccount, btc_rules: Instrument) -> None:
    with_candles(btc_rules)
    client = client_for(alice)
    first = client.post("/api/v1/orders/", order_body(paper, btc_rules), format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post("/api/v1/orders/", order_body(paper, btc_rules), format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.filter(account=paper).count() == 1
    other = client.post(
        "/api/v1/orders/", order_body(paper, btc_rules, side="sell"), format="json", HTTP_IDEMPOTENCY_KEY="abc-1"
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    fresh = client.post("/api/v1/orders/", order_body(paper, btc_rules), format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"side": "hold"}, "side"),
        ({"type": "limit"}, "price"),
        ({"type": "stop"}, "stop_price"),
        ({"type": "market", "price": "10"}, "price"),
        ({"bracket": {"stop_loss": 2}}, "bracket"),
        ({"bracket": {"stop_loss": 0.02, "sneaky": 1}}, "bracket"),
        ({"algo": {"kind": "twap"}}, "algo"),
        ({"algo": {"kind": "iceberg", "visible": "5"}}, "algo"),
        ({"instrument": 999999}, "instrument"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    alice: Any, paper: TradingAccount, btc_rules: Instrument, extra: dict[str, Any], field: str
) -> None:
    with_candles(btc_rules)
    response = client_for(alice).post("/api/v1/orders/", order_body(paper, btc_rules, **extra), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"].get("fields", {}), response.json()
    assert not Order.objects.exists()


@pytest.mark.parametrize("field", ["user", "owner", "status", "filled_quantity", "client_order_id", "created_by"])
def test_mass_assignment_is_refused(alice: Any, paper: TradingAccount, btc_rules: Instrument, field: str) -> None:
    with_candles(btc_rules)
    response = client_for(alice).post(
        "/api/v1/orders/", order_body(paper, btc_rules, **{field: "filled"}), format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Order.objects.exists()


def test_twap_through_the_api(alice: Any, paper: TradingAccount, btc_rules: Instrument) -> None:
    with_candles(btc_rules)
    response = client_for(alice).post(
        "/api/v1/orders/",
        order_body(paper, btc_rules, quantity="3", algo={"kind": "twap", "slices": 3, "interval_seconds": 60}),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["algo"] == "twap" and response.json()["status"] == "open"
    cancel = client_for(alice).post(f"/api/v1/orders/{response.json()['id']}/cancel/")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"


def test_cancel_an_open_order(alice: Any, paper: TradingAccount, btc_rules: Instrument) -> None:
    order = open_order(paper, btc_rules, "buy", "1", status=Order.Status.NEW)
    response = client_for(alice).post(f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    again = client_for(alice).post(f"/api/v1/orders/{order.pk}/cancel/")
    assert again.status_code == 409


# --- scoping -------------------------------------------------------------------------------------


def test_mallory_gets_404s_and_sees_nothing(
    alice: Any, mallory: Any, paper: TradingAccount, btc_rules: Instrument
) -> None:
    with_candles(btc_rules)
    order = open_order(paper, btc_rules, "buy", "1")
    Fill.objects.create(
        order=order,
        account=paper,
        instrument=btc_rules,
        trade_id="t1",
        side="buy",
        quantity=D("1"),
        price=D("100"),
        filled_at=T0,
    )
    hold(paper, btc_rules, "1")
    RiskEvent.objects.create(account=paper, code="max_position", message="no")
    evil = client_for(mallory)
    for path in (f"/api/v1/orders/{order.pk}/",):
        assert evil.get(path).status_code == 404
    assert evil.post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 404
    for path in ("/api/v1/orders/", "/api/v1/fills/", "/api/v1/positions/", "/api/v1/risk-events/"):
        response = evil.get(path, {"account": paper.pk})
        assert response.status_code == 200 and response.json()["results"] == [], path
    response = evil.post("/api/v1/orders/", order_body(paper, btc_rules), format="json")
    assert response.status_code == 404
    assert Order.objects.count() == 1
    Order.objects.filter(pk=order.pk).update(status="open")
    order.refresh_from_db()
    assert order.status == "open"


def test_anonymous_is_refused(paper: TradingAccount) -> None:
    assert APIClient().get("/api/v1/orders/").status_code in (401, 403)


def test_lists_are_filtered_and_query_bounded(
    alice: Any, paper: TradingAccount, btc_rules: Instrument, django_assert_max_num_queries: Any
) -> None:
    other = make_account(alice, name="Second")
    for i in range(20):
        open_order(paper if i % 2 else other, btc_rules, "buy", "1", status="open" if i % 3 else "filled")
    eth = make_instrument("ETH/USDT")
    for account in (paper, other):
        hold(account, btc_rules, "1")
        hold(account, eth, "-2")
        RiskEvent.objects.create(account=account, code="max_position", message="no")
    client = client_for(alice)
    with django_assert_max_num_queries(8):
        response = client.get("/api/v1/orders/", {"account": str(paper.pk), "status": "open"})
    results = response.json()["results"]
    assert results and all(r["account"] == paper.pk and r["status"] == "open" for r in results)
    with django_assert_max_num_queries(12):
        positions = client.get("/api/v1/positions/").json()["results"]
    assert len(positions) == 4
    with django_assert_max_num_queries(8):
        assert len(client.get("/api/v1/risk-events/", {"account": other.pk}).json()["results"]) == 1
    with django_assert_max_num_queries(8):
        client.get("/api/v1/fills/")
    assert client.get("/api/v1/orders/", {"status": "bogus"}).status_code == 400
    assert client.get("/api/v1/orders/", {"limit": 100000}).status_code == 200
