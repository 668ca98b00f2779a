"""Deployments API: create / read / patch / delete, the start / pause / resume / stop actions,
the sub-lists and chart; a 400 names the field, unknown fields are refused, live needs a fresh
second factor (a token alone is not one), and an outsider (mallory) sees and changes nothing."""

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.strategies.models import Deployment
from tests.strategies.deploy_support import feed_bar, market, next_bars, paper_account, ticks_inline

__all__ = ["market", "paper_account", "ticks_inline"]

URL = "/api/v1/deployments/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def body(market: Any, account: Any, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account": account.pk,
        "strategy": "test_even_minutes",
        "instruments": [market.pk],
        "timeframe": "1m",
        "capital": "10000",
        "settings": {"sizing": {"mode": "fixed_fraction", "fraction": 0.5}, "exits": {"stop_loss": 0.02}},
        "risk": {"max_drawdown": 0.25},
    }
    data.update(overrides)
    return data


@pytest.fixture
def created(alice: Any, market: Any, paper_account: Any) -> dict[str, Any]:
    response = client_for(alice).post(URL, body(market, paper_account), format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_create_returns_the_draft_with_its_location(created: dict[str, Any], market: Any) -> None:
    assert created["status"] == "draft"
    assert created["instruments"] == [{"id": market.pk, "symbol": "TST/USDT", "venue": "test"}]
    assert created["settings"]["exits"]["stop_loss"] == 0.02
    assert created["risk"] == {"max_drawdown": 0.25}
    assert Decimal(created["capital"]) == Decimal("10000")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"strategy": "sma_cross", "params": {"fast": 40, "slow": 10}}, "params.fast"),
        ({"settings": {"exits": {"stop_loss": 5}}}, "settings.exits.stop_loss"),
        ({"risk": {"max_drawdown": -1}}, "risk.max_drawdown"),
        ({"capital": "-5"}, "capital"),
        ({"instruments": [987654]}, "instrument_ids"),
        ({"owner": 1}, "owner"),
        ({"status": "live"}, "status"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    alice: Any, market: Any, paper_account: Any, overrides: dict[str, Any], field: str
) -> None:
    response = client_for(alice).post(URL, body(market, paper_account, **overrides), format="json")
    assert response.status_code == 400, response.content
    text = response.content.decode()
    assert field in text or field.split(".")[0] in text
    assert not Deployment.objects.exists()


def test_list_retrieve_patch_delete(alice: Any, created: dict[str, Any]) -> None:
    client = client_for(alice)
    listed = client.get(URL).json()
    assert [d["id"] for d in listed["results"]] == [created["id"]]
    assert client.get(f"{URL}?status=paper").json()["results"] == []
    detail = client.get(f"{URL}{created['id']}/")
    assert detail.status_code == 200 and detail.json()["name"] == created["name"]
    patched = client.patch(f"{URL}{created['id']}/", {"capital": "2500", "name": "Renamed"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"] == "Renamed" and Decimal(patched.json()["capital"]) == Decimal("2500")
    assert client.delete(f"{URL}{created['id']}/").status_code == 204
    assert not Deployment.objects.exists()


def test_actions_drive_the_life_cycle(alice: Any, created: dict[str, Any]) -> None:
    client = client_for(alice)
    base = f"{URL}{created['id']}/"
    assert client.post(f"{base}start/", {"mode": "paper"}, format="json").json()["status"] == "paper"
    assert client.patch(base, {"capital": "1"}, format="json").status_code == 409
    assert client.delete(base).status_code == 409
    assert client.post(f"{base}pause/").json()["status"] == "paused"
    assert client.post(f"{base}resume/").json()["status"] == "paper"
    stopped = client.post(f"{base}stop/", {"close_positions": False}, format="json")
    assert stopped.json()["status"] == "stopped"
    assert client.post(f"{base}stop/", {"close": True}, format="json").status_code == 400


def test_live_start_with_a_token_alone_needs_the_second_factor(alice: Any, market: Any) -> None:
    from apps.accounts.models import TradingAccount

    live = TradingAccount.objects.create(owner=alice, name="Venue", kind="ccxt", exchange_id="binance")
    client = client_for(alice)
    created = client.post(URL, body(market, live), format="json").json()
    response = client.post(f"{URL}{created['id']}/start/", {"mode": "live"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauth_required"


def test_sub_lists_and_chart_show_what_the_deployment_did(
    alice: Any, market: Any, created: dict[str, Any], ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(alice)
    base = f"{URL}{created['id']}/"
    client.post(f"{base}start/", {"mode": "paper"}, format="json")
    bars = next_bars(2)
    feed_bar(market, bars.iloc[:1], django_capture_on_commit_callbacks)
    feed_bar(market, bars.iloc[1:2], django_capture_on_commit_callbacks)
    signals = client.get(f"{base}signals/").json()["results"]
    assert [s["action"] for s in signals] == ["exit_long", "enter_long"]
    orders = client.get(f"{base}orders/").json()["results"]
    assert {o["leg"] for o in orders} >= {"entry", "exit"}
    fills = client.get(f"{base}fills/").json()["results"]
    assert len(fills) == 1 and fills[0]["side"] == "buy"
    equity = client.get(f"{base}equity/").json()
    assert len(equity["points"]) == 1 and "net_pnl" in equity["summary"]
    chart = client.get(f"{base}chart/?bars=50").json()
    assert len(chart["candles"]) == 50 and chart["timeframe"] == "1m"
    assert [m["kind"] for m in chart["markers"]] == ["entry"]


SUBPATHS = ["", "signals/", "orders/", "fills/", "equity/", "chart/"]
ACTIONS = ["start/", "pause/", "resume/", "stop/"]


@pytest.mark.parametrize("path", SUBPATHS)
def test_an_outsider_cannot_read_a_deployment(mallory: Any, created: dict[str, Any], path: str) -> None:
    response = client_for(mallory).get(f"{URL}{created['id']}/{path}")
    assert response.status_code == 404


@pytest.mark.parametrize("path", ACTIONS)
def test_an_outsider_cannot_act_on_a_deployment(mallory: Any, created: dict[str, Any], path: str) -> None:
    response = client_for(mallory).post(f"{URL}{created['id']}/{path}", {}, format="json")
    assert response.status_code == 404
    assert Deployment.objects.get(pk=created["id"]).status == "draft"


def test_an_outsider_cannot_patch_delete_or_list(mallory: Any, created: dict[str, Any], paper_account: Any) -> None:
    client = client_for(mallory)
    assert client.patch(f"{URL}{created['id']}/", {"name": "mine"}, format="json").status_code == 404
    assert client.delete(f"{URL}{created['id']}/").status_code == 404
    assert client.get(URL).json()["results"] == []
    assert client.get(f"{URL}?account={paper_account.pk}").json()["results"] == []
    assert Deployment.objects.get(pk=created["id"]).name == created["name"]


def test_an_outsider_cannot_deploy_on_someone_elses_account(mallory: Any, market: Any, paper_account: Any) -> None:
    response = client_for(mallory).post(URL, body(market, paper_account), format="json")
    assert response.status_code == 400
    assert "account_id" in response.content.decode()


def test_anonymous_is_refused(created: dict[str, Any]) -> None:
    assert APIClient().get(URL).status_code in (401, 403)
