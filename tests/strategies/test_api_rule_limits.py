"""The rule-set API refuses condition text the parser will not read (parentheses nested too
deep, text too long) with a 400 naming the slot, never a 500."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.strategies.models import RuleSet
from apps.strategies.rules.text import MAX_TEXT_LENGTH

pytestmark = pytest.mark.django_db

VALIDATE = "/api/v1/rule-sets/validate/"
DEEP = "(" * 400 + "close > 1" + ")" * 400


@pytest.fixture
def client(alice: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


def test_validate_with_deeply_nested_parentheses_is_400_naming_the_slot(client):
    response = client.post(VALIDATE, {"conditions": {"enter_long": DEEP}}, format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["conditions.enter_long"]
    assert "Too many parentheses inside one another" in fields["conditions.enter_long"][0]


def test_validate_with_over_long_text_is_400_naming_the_slot(client):
    text = "close > 1 and " * (MAX_TEXT_LENGTH // 10) + "close > 2"

    response = client.post(VALIDATE, {"conditions": {"exit_long": text}}, format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["conditions.exit_long"]
    assert "The condition is too long" in fields["conditions.exit_long"][0]


def test_creating_a_rule_set_with_deep_text_is_400_and_stores_nothing(client):
    response = client.post("/api/v1/rule-sets/", {"name": "deep", "conditions": {"enter_long": DEEP}}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["conditions.enter_long"]
    assert not RuleSet.objects.exists()
