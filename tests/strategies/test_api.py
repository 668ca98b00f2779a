"""The strategies API: the catalogue with each Params schema, and the user's rule sets (CRUD,
owner-scoped, validated, with a validate-only endpoint and the editor's indicator list)."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.strategies.models import RuleSet
from apps.strategies.params import params_schema
from apps.strategies.registry import strategy_class, strategy_classes
from tests.backtests.platform_support import PeekingStrategy

pytestmark = pytest.mark.django_db

RULE_SETS = "/api/v1/rule-sets/"
DIP_TEXT = {"enter_long": "rsi(14) < 30 and close > sma(200)", "exit_long": "rsi(14) > 70"}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def client(alice: Any) -> APIClient:
    return client_for(alice)


@pytest.fixture
def dip(client: APIClient) -> dict[str, Any]:
    response = client.post(RULE_SETS, {"name": "dip", "description": "buy fear", "conditions": DIP_TEXT}, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


# --- catalogue ------------------------------------------------------------------------------------


def test_catalogue_lists_every_public_strategy_with_its_params_schema(client):
    catalogue = client.get("/api/v1/strategies/").json()
    keys = [entry["key"] for entry in catalogue]
    assert keys == sorted(cls.key for cls in strategy_classes())
    assert {"sma_cross", "ema_cross", "rsi_mean_reversion", "composite", "htf_trend_filter"} <= set(keys)
    assert PeekingStrategy.key not in keys and "rules" not in keys
    sma = next(entry for entry in catalogue if entry["key"] == "sma_cross")
    assert sma["params_schema"] == params_schema(strategy_class("sma_cross").Params)
    assert sma["params_schema"]["properties"]["fast"]["minimum"] >= 1
    assert sma["summary"] and sma["documentation"].startswith(sma["summary"][:20])
    assert sma["warmup"] == strategy_class("sma_cross")().warmup()


def test_strategy_detail_and_hidden_or_unknown_keys_are_404(client):
    detail = client.get("/api/v1/strategies/sma_cross/")
    assert detail.status_code == 200 and detail.json()["key"] == "sma_cross"
    assert client.get(f"/api/v1/strategies/{PeekingStrategy.key}/").status_code == 404
    assert client.get("/api/v1/strategies/get_rich/").status_code == 404


def test_catalogue_needs_authentication(api_client):
    assert api_client.get("/api/v1/strategies/").status_code == 401
    assert api_client.get(RULE_SETS).status_code == 401


# --- rule sets ------------------------------------------------------------------------------------


def test_create_from_text_stores_normalised_rules_and_returns_201(client, dip):
    assert dip["name"] == "dip" and dip["description"] == "buy fear"
    assert dip["rules"]["enter_long"]["all"][0]["left"] == {
        "indicator": "rsi",
        "args": [14],
        "output": None,
        "timeframe": None,
    }
    assert dip["text"] == {**DIP_TEXT, "enter_short": None, "exit_short": None}
    assert RuleSet.objects.get(pk=dip["id"]).rules == dip["rules"]


def test_create_from_json_gives_the_same_rules(client, dip):
    response = client.post(RULE_SETS, {"name": "dip 2", "rules": dip["rules"]}, format="json")
    assert response.status_code == 201
    assert response["Location"].endswith(f"{RULE_SETS}{response.json()['id']}/")
    assert response.json()["rules"] == dip["rules"]


def test_list_detail_update_patch_delete(client, dip):
    listing = client.get(RULE_SETS).json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == dip["id"]
    assert client.get(f"{RULE_SETS}{dip['id']}/").json() == dip
    put = client.put(
        f"{RULE_SETS}{dip['id']}/", {"name": "dip v2", "conditions": {"enter_long": "rsi(7) < 20"}}, format="json"
    )
    assert put.status_code == 200 and put.json()["text"]["enter_long"] == "rsi(7) < 20"
    assert put.json()["description"] == ""
    patch = client.patch(f"{RULE_SETS}{dip['id']}/", {"description": "faster"}, format="json")
    assert patch.status_code == 200
    assert (patch.json()["name"], patch.json()["description"]) == ("dip v2", "faster")
    assert patch.json()["text"]["enter_long"] == "rsi(7) < 20"
    assert client.delete(f"{RULE_SETS}{dip['id']}/").status_code == 204
    assert client.get(f"{RULE_SETS}{dip['id']}/").status_code == 404


def test_a_taken_name_is_400_naming_the_name(client, dip):
    response = client.post(RULE_SETS, {"name": "dip", "conditions": DIP_TEXT}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "name_taken"
    assert response.json()["error"]["fields"] == {"name": ["This name is taken."]}


def test_bad_rules_are_400_naming_every_path(client):
    rules = {
        "version": 1,
        "enter_long": {
            "all": [
                {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}},
                {"left": {"column": "closing"}, "op": ">", "right": {"indicator": "smaa", "args": [200]}},
            ]
        },
    }
    response = client.post(RULE_SETS, {"name": "typos", "rules": rules}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {
        "rules.enter_long.all[1].left.column",
        "rules.enter_long.all[1].right.indicator",
    }
    assert not RuleSet.objects.exists()


def test_validate_returns_normalised_rules_without_saving(client):
    response = client.post(f"{RULE_SETS}validate/", {"conditions": DIP_TEXT}, format="json")
    assert response.status_code == 200
    assert response.json()["text"]["enter_long"] == DIP_TEXT["enter_long"]
    again = client.post(f"{RULE_SETS}validate/", {"rules": response.json()["rules"]}, format="json")
    assert again.json() == response.json()
    bad = client.post(f"{RULE_SETS}validate/", {"conditions": {"enter_long": "rsi(14) <"}}, format="json")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["conditions.enter_long"]
    neither = client.post(f"{RULE_SETS}validate/", {}, format="json")
    assert neither.status_code == 400 and "rules" in neither.json()["error"]["fields"]
    assert not RuleSet.objects.exists()


def test_indicators_are_what_the_editor_offers(client):
    indicators = client.get(f"{RULE_SETS}indicators/").json()
    by_name = {i["name"]: i for i in indicators}
    assert {"sma", "ema", "rsi", "macd", "bbands"} <= set(by_name)
    rsi = by_name["rsi"]
    assert (
        rsi["args"][0]["kind"] == "int" and rsi["args"][0]["low"] <= rsi["args"][0]["default"] <= rsi["args"][0]["high"]
    )
    assert by_name["macd"]["outputs"] and by_name["macd"]["default_output"] in by_name["macd"]["outputs"]


# --- mallory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_someone_elses_rule_set_is_404_and_unchanged(dip, mallory, method):
    response = getattr(client_for(mallory), method)(
        f"{RULE_SETS}{dip['id']}/", {"name": "mine now", "conditions": DIP_TEXT}, format="json"
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    stored = RuleSet.objects.get(pk=dip["id"])
    assert (stored.name, stored.rules) == ("dip", dip["rules"])


def test_outsiders_list_is_empty_and_names_are_per_owner(dip, mallory):
    outsider = client_for(mallory)
    assert outsider.get(RULE_SETS).json()["count"] == 0
    assert outsider.post(RULE_SETS, {"name": "dip", "conditions": DIP_TEXT}, format="json").status_code == 201
    assert RuleSet.objects.filter(name="dip").count() == 2
