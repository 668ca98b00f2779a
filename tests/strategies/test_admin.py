"""The strategies admin: rule sets (read, search) and look-ahead verdicts (read-only facts)."""

import pytest

from apps.strategies import services
from apps.strategies.lookahead import LookaheadReport
from apps.strategies.models import LookaheadVerdict, RuleSet
from apps.strategies.registry import get_strategy
from tests.users.steps import verified_client

pytestmark = pytest.mark.django_db

DIP = {"version": 1, "enter_long": {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}}}


@pytest.fixture
def staff_client(staff, enable_2fa):
    return verified_client(staff, enable_2fa(staff))


def test_rule_sets_list_search_and_read_only_detail(staff_client, alice, bob):
    mine = services.rule_set_create(owner=alice, name="alice dip", rules=DIP)
    services.rule_set_create(owner=bob, name="bob dip", rules=DIP)
    listing = staff_client.get("/admin/strategies/ruleset/", {"q": "alice@example.com"}).content.decode()
    assert "alice dip" in listing and "bob dip" not in listing
    by_id = staff_client.get("/admin/strategies/ruleset/", {"q": str(mine.pk)}).content.decode()
    assert "alice dip" in by_id
    detail = staff_client.get(f"/admin/strategies/ruleset/{mine.pk}/change/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "enter_long: rsi(14) &lt; 30" in body and 'name="rules"' not in body
    assert staff_client.get("/admin/strategies/ruleset/add/").status_code == 403


def test_lookahead_verdicts_are_read_only(staff_client):
    strategy = get_strategy("sma_cross", fast=5, slow=20)
    verdict = services.lookahead_verdict_record(
        strategy=strategy,
        report=LookaheadReport(
            is_biased=True, columns=("enter_long",), bars=(), checked=10, biased_truncations=2, message="peeked"
        ),
    )
    listing = staff_client.get("/admin/strategies/lookaheadverdict/", {"is_biased__exact": "1"})
    assert listing.status_code == 200 and "sma_cross" in listing.content.decode()
    detail = staff_client.get(f"/admin/strategies/lookaheadverdict/{verdict.pk}/change/")
    assert detail.status_code == 200 and "peeked" in detail.content.decode()
    assert 'name="is_biased"' not in detail.content.decode()
    assert (
        staff_client.post(f"/admin/strategies/lookaheadverdict/{verdict.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert LookaheadVerdict.objects.count() == 1 and RuleSet.objects.count() == 0
