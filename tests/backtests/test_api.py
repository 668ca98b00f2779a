"""The backtests API: create, list, retrieve, cancel, re-run, trades and equity; owner-scoped
(mallory sees and changes nothing), one JSON error shape."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.backtests import tasks
from apps.backtests.models import Backtest, BacktestTrade, JobStatus
from apps.users.models import ApiToken
from tests.backtests.platform_support import Sent, reload

pytestmark = pytest.mark.django_db

URL = "/api/v1/backtests/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def client(alice: Any) -> APIClient:
    return client_for(alice)


def body(instrument: Any, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "SMA 10/30",
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "instrument": instrument.pk,
        "timeframe": "1h",
        "start": "2021-01-01",
        "end": "2021-06-01T00:00:00Z",
        "settings": {"cash": 10000, "costs": {"fee": 0.001}},
    }
    data.update(overrides)
    return data


def post_and_run(client: APIClient, instrument: Any, capture: Any, **overrides: Any) -> dict[str, Any]:
    with capture(execute=True):
        response = client.post(URL, body(instrument, **overrides), format="json")
    assert response.status_code == 201, response.json()
    with capture(execute=True):
        tasks.backtest_run(response.json()["id"])
    detail: dict[str, Any] = client.get(f"{URL}{response.json()['id']}/").json()
    return detail


def test_create_returns_201_with_location_and_queues_the_run(
    client, btc, sent: Sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL, body(btc), format="json")
    assert response.status_code == 201
    data = response.json()
    assert response["Location"] == f"http://testserver{URL}{data['id']}/"
    assert sent["backtest_run"] == [(data["id"],)]
    assert data["status"] == "queued" and data["progress"] == 0.0
    assert data["strategy"] == "sma_cross" and data["params"]["fast"] == 10
    assert data["instrument"] == {"id": btc.pk, "venue": "binance", "symbol": "BTC/USDT", "is_synthetic": False}
    assert data["start"] == "2021-01-01T00:00:00Z" and data["end"] == "2021-06-01T00:00:00Z"
    assert data["settings"]["costs"]["fee"] == 0.001


def test_a_finished_backtest_has_metrics_trades_and_equity(client, btc, sent, django_capture_on_commit_callbacks):
    # when
    detail = post_and_run(client, btc, django_capture_on_commit_callbacks)
    # then
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["metrics"]["trades"] > 10 and "sharpe" in detail["metrics"]
    assert detail["is_lookahead_biased"] is False and detail["lookahead"]["checked"] > 0
    trades = client.get(f"{URL}{detail['id']}/trades/", {"limit": 5}).json()
    assert trades["count"] == detail["metrics"]["trades"]
    assert [t["number"] for t in trades["results"]] == [1, 2, 3, 4, 5]
    assert set(trades["results"][0]) == {
        "number",
        "side",
        "entry_at",
        "entry_price",
        "exit_at",
        "exit_price",
        "size",
        "fees",
        "pnl",
        "return_pct",
        "bars_held",
        "exit_reason",
    }
    second_page = client.get(f"{URL}{detail['id']}/trades/", {"limit": 5, "offset": 5}).json()
    assert second_page["results"][0]["number"] == 6
    equity = client.get(f"{URL}{detail['id']}/equity/").json()
    assert equity["points"] == len(equity["t"]) == len(equity["equity"]) == detail["candles_count"]
    assert equity["equity"][-1] == pytest.approx(detail["metrics"]["final_equity"])
    assert equity["t"][0] == 1609459200000  # 2021-01-01T00:00Z in epoch ms: the range's first bar


def test_equity_of_a_backtest_not_run_yet_is_empty(client, btc, sent):
    created = client.post(URL, body(btc), format="json").json()
    equity = client.get(f"{URL}{created['id']}/equity/").json()
    assert equity == {"t": [], "equity": [], "drawdown": [], "benchmark": [], "points": 0, "bars": 0}


def test_list_is_paginated_filtered_and_newest_first(
    client, btc, sent, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    # given
    first = post_and_run(client, btc, django_capture_on_commit_callbacks)
    second = client.post(URL, body(btc, strategy="ema_cross", params={}), format="json").json()
    third = client.post(URL, body(btc), format="json").json()
    # when / then
    with django_assert_max_num_queries(3):
        listing = client.get(URL).json()
    assert listing["count"] == 3
    assert [b["id"] for b in listing["results"]] == [third["id"], second["id"], first["id"]]
    assert "equity" not in listing["results"][0]
    assert [b["id"] for b in client.get(URL, {"status": "succeeded"}).json()["results"]] == [first["id"]]
    assert [b["id"] for b in client.get(URL, {"strategy": "ema_cross"}).json()["results"]] == [second["id"]]
    assert client.get(URL, {"instrument": btc.pk}).json()["count"] == 3
    assert client.get(URL, {"instrument": btc.pk + 1}).json()["count"] == 0
    assert client.get(URL, {"limit": 1}).json()["next"] is not None
    bad = client.get(URL, {"status": "sleeping"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]


def test_cancel_a_queued_backtest_then_it_cannot_be_cancelled_again(client, btc, sent):
    created = client.post(URL, body(btc), format="json").json()
    response = client.post(f"{URL}{created['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(f"{URL}{created['id']}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "finished"


def test_rerun_creates_a_new_backtest(client, btc, sent: Sent, django_capture_on_commit_callbacks):
    detail = post_and_run(client, btc, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{URL}{detail['id']}/rerun/")
    assert response.status_code == 201
    rerun = response.json()
    assert rerun["id"] != detail["id"] and rerun["rerun_of"] == detail["id"] and rerun["status"] == "queued"
    assert response["Location"].endswith(f"{URL}{rerun['id']}/")
    assert sent["backtest_run"][-1] == (rerun["id"],)


def test_a_rule_set_backtest_through_the_api(client, alice, btc, sent, django_capture_on_commit_callbacks):
    rule_set = client.post(
        "/api/v1/rule-sets/",
        {"name": "dip", "conditions": {"enter_long": "rsi(14) < 30", "exit_long": "rsi(14) > 70"}},
        format="json",
    ).json()
    detail = post_and_run(
        client, btc, django_capture_on_commit_callbacks, strategy="", params={}, rule_set=rule_set["id"]
    )
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["strategy"] == "rules" and detail["rule_set"] == rule_set["id"]
    assert detail["rules"] == rule_set["rules"]


def test_works_with_an_api_token(alice, btc, sent):
    _, plaintext = ApiToken.objects.create(user=alice, name="bot")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    assert client.post(URL, body(btc), format="json").status_code == 201
    assert client.get(URL).json()["count"] == 1


@pytest.mark.parametrize(
    "method,path", [("get", ""), ("post", ""), ("get", "1/"), ("post", "1/cancel/"), ("get", "1/trades/")]
)
def test_unauthenticated_requests_are_401(api_client, method, path):
    response = getattr(api_client, method)(f"{URL}{path}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- mallory ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", ""),
        ("post", "cancel/"),
        ("post", "rerun/"),
        ("get", "trades/"),
        ("get", "equity/"),
    ],
)
def test_every_route_of_someone_elses_backtest_is_404_and_changes_nothing(
    client, mallory, btc, sent: Sent, django_capture_on_commit_callbacks, method, path
):
    # given: alice's finished backtest
    detail = post_and_run(client, btc, django_capture_on_commit_callbacks)
    sends = len(sent["backtest_run"])
    # when
    response = getattr(client_for(mallory), method)(f"{URL}{detail['id']}/{path}")
    # then: as if it did not exist
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "alice" not in response.content.decode()
    assert reload(Backtest.objects.get(pk=detail["id"])).status == JobStatus.SUCCEEDED
    assert Backtest.objects.count() == 1 and len(sent["backtest_run"]) == sends


def test_outsiders_list_is_empty_and_filters_cannot_reach_others(client, mallory, btc, sent):
    client.post(URL, body(btc), format="json")
    outsider = client_for(mallory)
    assert outsider.get(URL).json()["count"] == 0
    assert outsider.get(URL, {"instrument": btc.pk, "strategy": "sma_cross"}).json()["count"] == 0


def test_unknown_backtest_is_404(client):
    assert client.get(f"{URL}999999/").status_code == 404
    assert client.get(f"{URL}999999/trades/").status_code == 404


def test_outsider_cannot_run_with_someone_elses_rule_set(client, mallory, btc, sent):
    rule_set = client.post(
        "/api/v1/rule-sets/", {"name": "dip", "conditions": {"enter_long": "rsi(14) < 30"}}, format="json"
    ).json()
    response = client_for(mallory).post(URL, body(btc, strategy="", params={}, rule_set=rule_set["id"]), format="json")
    missing = client_for(mallory).post(URL, body(btc, strategy="", params={}, rule_set=999999), format="json")
    # the same answer as for a rule set that does not exist: nothing revealed
    assert response.status_code == missing.status_code == 400
    assert response.json()["error"] == missing.json()["error"]
    assert response.json()["error"]["fields"] == {"rule_set": ["No such rule set."]}
    assert not BacktestTrade.objects.exists() and Backtest.objects.count() == 0


def test_a_page_is_never_larger_than_the_ceiling_whatever_limit_asks(alice, btc):
    from datetime import UTC, datetime

    backtest = Backtest.objects.create(
        owner=alice, strategy_key="sma_cross", instrument=btc, timeframe="1h", status="succeeded"
    )
    at = datetime(2021, 1, 1, tzinfo=UTC)
    BacktestTrade.objects.bulk_create(
        BacktestTrade(backtest=backtest, number=n, side="long", entry_at=at, entry_price=1.0, size=1.0)
        for n in range(1, 1101)
    )
    client = APIClient()
    client.force_authenticate(alice)
    page = client.get(f"/api/v1/backtests/{backtest.pk}/trades/?limit=100000000").json()
    assert page["count"] == 1100
    assert len(page["results"]) == 1000 and page["next"]
