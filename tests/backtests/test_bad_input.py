"""Bad input (the issue's "Bad input" section): a 400 from the API naming the field, the same
ApplicationError from the services for the forms, and nothing stored or queued."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.backtests import services
from apps.backtests.models import Backtest, MonteCarlo, Optimisation, WalkForward
from apps.common.errors import ApplicationError
from apps.marketdata import services as market_services
from apps.strategies import services as strategy_services
from apps.strategies.models import RuleSet
from tests.backtests.platform_support import Sent, run_spec

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(alice: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


def body(market: Any, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "instrument": market.pk,
        "timeframe": "1h",
        "settings": {},
    }
    data.update(overrides)
    return data


BACKTEST_CASES = [
    ("params out of bounds", {"params": {"fast": 1, "slow": 30}}, "params.fast"),
    ("params above bounds", {"params": {"fast": 10, "slow": 100_000}}, "params.slow"),
    ("params inconsistent", {"params": {"fast": 50, "slow": 20}}, "params.fast"),
    ("unknown param", {"params": {"fast": 10, "speed": 3}}, "params.speed"),
    ("param of the wrong type", {"params": {"fast": "ten"}}, "params.fast"),
    ("params not an object", {"params": [10, 30]}, "params"),
    ("unknown strategy", {"strategy": "get_rich"}, "strategy"),
    ("no strategy", {"strategy": ""}, "strategy"),
    ("unknown instrument", {"instrument": 987654}, "instrument"),
    ("instrument not a number", {"instrument": "btc"}, "instrument"),
    ("unknown timeframe", {"timeframe": "7m"}, "timeframe"),
    ("timeframe with no candles", {"timeframe": "1d"}, "timeframe"),
    ("start after end", {"start": "2021-03-01", "end": "2021-02-01"}, "start"),
    ("range with no candles", {"start": "2019-01-01", "end": "2019-06-01"}, "start"),
    ("range after the last candle", {"start": "2030-01-01"}, "start"),
    ("start not a date", {"start": "yesterday"}, "start"),
    ("fee above its bound", {"settings": {"costs": {"fee": 0.9}}}, "settings.costs.fee"),
    ("unknown setting", {"settings": {"leverage": 10}}, "settings.leverage"),
    ("bad fill", {"settings": {"fill": "tomorrow"}}, "settings.fill"),
    ("a rule set that does not exist", {"strategy": "", "params": {}, "rule_set": 424242}, "rule_set"),
    ("rules strategy without a rule set", {"strategy": "rules", "params": {}}, "rule_set"),
]


@pytest.mark.parametrize("case,overrides,field", BACKTEST_CASES, ids=[c[0] for c in BACKTEST_CASES])
def test_backtest_bad_input_is_400_naming_the_field_and_nothing_is_queued(
    client, btc, sent: Sent, django_capture_on_commit_callbacks, case, overrides, field
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/backtests/", body(btc, **overrides), format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert error["message"]
    assert Backtest.objects.count() == 0 and sent.calls == {}


def test_a_rule_set_naming_an_unknown_indicator_is_refused_on_save(client, alice):
    rules = {
        "version": 1,
        "enter_long": {"left": {"indicator": "magic", "args": [3]}, "op": ">", "right": {"value": 1}},
    }
    response = client.post("/api/v1/rule-sets/", {"name": "magic", "rules": rules}, format="json")
    assert response.status_code == 400
    assert "rules.enter_long.left.indicator" in response.json()["error"]["fields"]
    with pytest.raises(ApplicationError) as refused:
        strategy_services.rule_set_create(owner=alice, name="magic", rules=rules)
    assert "rules.enter_long.left.indicator" in refused.value.extra["fields"]
    assert RuleSet.objects.count() == 0


def test_a_rule_set_naming_an_unknown_column_is_refused_on_save(client):
    response = client.post(
        "/api/v1/rule-sets/", {"name": "typo", "conditions": {"enter_long": "closing > sma(20)"}}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["conditions.enter_long"]
    assert RuleSet.objects.count() == 0


def test_rules_on_a_lower_timeframe_than_the_run_are_refused(client, alice, btc, sent):
    rule_set = strategy_services.rule_set_create(
        owner=alice,
        name="5m dip",
        rules=strategy_services.rules_from_text(conditions={"enter_long": "rsi(14)@5m < 30"}),
    )
    response = client.post("/api/v1/backtests/", body(btc, strategy="", params={}, rule_set=rule_set.pk), format="json")
    assert response.status_code == 400
    assert any(path.startswith("rules.enter_long") for path in response.json()["error"]["fields"])
    assert Backtest.objects.count() == 0


def test_services_raise_the_same_errors_for_the_forms(alice, btc, sent):
    with pytest.raises(ApplicationError) as refused:
        services.backtest_create(owner=alice, **run_spec(btc, params={"fast": 1}))
    assert refused.value.status_code == 400
    assert list(refused.value.extra["fields"]) == ["params.fast"]
    assert Backtest.objects.count() == 0


def test_an_instrument_without_candles_is_refused_by_timeframe(alice, sent):
    empty = market_services.instrument_get_or_create(venue="binance", symbol="ETH/USDT")
    with pytest.raises(ApplicationError) as refused:
        services.backtest_create(owner=alice, **run_spec(empty))
    assert list(refused.value.extra["fields"]) == ["timeframe"]
    assert "No 1h candles" in refused.value.message


# --- research jobs ------------------------------------------------------------------------------


def research_body(market: Any, **overrides: Any) -> dict[str, Any]:
    data = body(market, params={}, method="grid", objective="sharpe", min_trades=1, n_trials=20)
    data.update(overrides)
    return data


OPTIMISATION_CASES = [
    ("space below the bounds", {"space": {"fast": {"low": 1, "high": 10}}}, "space.fast.low"),
    ("space above the bounds", {"space": {"slow": {"low": 20, "high": 100_000}}}, "space.slow.high"),
    ("space of an unknown param", {"space": {"speed": {"low": 1, "high": 2}}}, "space.speed"),
    ("grid too large", {"space": {"fast": {"low": 2, "high": 200}, "slow": {"low": 3, "high": 500}}}, "space"),
    ("too many trials", {"method": "tpe", "n_trials": 10**6}, "n_trials"),
    ("no trials", {"method": "tpe", "n_trials": 0}, "n_trials"),
    ("unknown objective", {"objective": "luck"}, "objective"),
    ("unknown method", {"method": "random"}, "method"),
    ("negative min trades", {"min_trades": -1}, "min_trades"),
    ("a rule strategy", {"strategy": "rules"}, "strategy"),
    ("params out of bounds", {"params": {"fast": 1}}, "params.fast"),
    ("range with no candles", {"start": "2019-01-01", "end": "2019-06-01"}, "start"),
]


@pytest.mark.parametrize("case,overrides,field", OPTIMISATION_CASES, ids=[c[0] for c in OPTIMISATION_CASES])
def test_optimisation_bad_input_is_400_naming_the_field(client, btc, sent: Sent, case, overrides, field):
    response = client.post("/api/v1/optimisations/", research_body(btc, **overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert Optimisation.objects.count() == 0 and sent.calls == {}


WALK_FORWARD_CASES = [
    ("no windows", {"windows_count": 0}, "windows_count"),
    ("too many windows", {"windows_count": 51}, "windows_count"),
    ("windows too small for the range", {"windows_count": 40, "start": "2021-07-01"}, "windows_count"),
    ("train ratio of 1", {"train_ratio": 1.0}, "train_ratio"),
    ("train ratio of 0", {"train_ratio": 0.0}, "train_ratio"),
    ("unknown mode", {"mode": "sideways"}, "mode"),
    ("space above the bounds", {"space": {"slow": {"low": 20, "high": 100_000}}}, "space.slow.high"),
    ("windows x trials over the budget", {"method": "tpe", "windows_count": 20, "n_trials": 5000}, "n_trials"),
]


@pytest.mark.parametrize("case,overrides,field", WALK_FORWARD_CASES, ids=[c[0] for c in WALK_FORWARD_CASES])
def test_walk_forward_bad_input_is_400_naming_the_field(client, btc, sent: Sent, case, overrides, field):
    small = {"fast": {"low": 5, "high": 20, "step": 5}, "slow": {"low": 30, "high": 60, "step": 10}}
    data = research_body(
        btc, **{"mode": "rolling", "windows_count": 4, "train_ratio": 0.7, "space": small, **overrides}
    )
    response = client.post("/api/v1/walk-forwards/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert WalkForward.objects.count() == 0 and sent.calls == {}


MONTE_CARLO_CASES = [
    ("too many simulations", {"simulations": 10**7}, "simulations"),
    ("too few simulations", {"simulations": 5}, "simulations"),
    ("negative noise", {"noise": -0.1}, "noise"),
    ("loss threshold of 0", {"loss_threshold": 0}, "loss_threshold"),
    ("loss threshold above 1", {"loss_threshold": 1.5}, "loss_threshold"),
    ("unknown method", {"method": "dice"}, "method"),
    ("negative seed", {"seed": -3}, "seed"),
    ("unknown backtest", {"backtest": 999999}, "backtest"),
]


@pytest.mark.parametrize("case,overrides,field", MONTE_CARLO_CASES, ids=[c[0] for c in MONTE_CARLO_CASES])
def test_monte_carlo_bad_input_is_400_naming_the_field(
    client, btc, sent: Sent, django_capture_on_commit_callbacks, case, overrides, field
):
    from apps.backtests import tasks

    created = client.post("/api/v1/backtests/", body(btc), format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.backtest_run(created["id"])
    data = {"backtest": created["id"], "method": "resample", "simulations": 1000, "noise": 0.0, "loss_threshold": 0.2}
    data.update(overrides)
    response = client.post("/api/v1/monte-carlos/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert MonteCarlo.objects.count() == 0 and "monte_carlo_run" not in sent.calls


def test_monte_carlo_of_an_unfinished_backtest_is_refused(client, btc, sent):
    created = client.post("/api/v1/backtests/", body(btc), format="json").json()
    response = client.post("/api/v1/monte-carlos/", {"backtest": created["id"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"backtest": ["Only a backtest that has succeeded can be simulated."]}


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/backtests/", {"strategy_key": "sma_cross", "instrument": 1, "timeframe": "1h"}, "strategy_key"),
        (
            "/api/v1/optimisations/",
            {"strategy": "sma_cross", "instrument": 1, "timeframe": "1h", "trials": 5},
            "trials",
        ),
        ("/api/v1/monte-carlos/", {"backtest": 1, "sims": 100}, "sims"),
    ],
)
def test_a_misspelt_field_is_400_naming_it_and_nothing_is_created(alice, url, body, field):
    client = APIClient()
    client.force_authenticate(alice)
    response = client.post(url, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert (Backtest.objects.count(), Optimisation.objects.count(), MonteCarlo.objects.count()) == (0, 0, 0)


def test_a_user_with_the_maximum_of_active_jobs_gets_429_and_others_are_unaffected(
    client, alice, bob, btc, sent: Sent, settings
):
    # given: alice has as many jobs queued as she may
    settings.BACKTEST_MAX_ACTIVE_JOBS = 3
    for _ in range(3):
        assert client.post("/api/v1/backtests/", body(btc), format="json").status_code == 201
    # when: she asks for one more, of any kind
    refused = client.post("/api/v1/backtests/", body(btc), format="json")
    small = {"fast": {"low": 5, "high": 10, "step": 5}, "slow": {"low": 30, "high": 40, "step": 10}}
    refused_search = client.post("/api/v1/optimisations/", research_body(btc, space=small), format="json")
    # then: 429 with a message, nothing stored; bob still gets his job
    assert refused.status_code == refused_search.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_jobs"
    assert "limit is 3" in refused.json()["error"]["message"]
    assert Backtest.objects.filter(owner=alice).count() == 3 and Optimisation.objects.count() == 0
    bobs = APIClient()
    bobs.force_authenticate(bob)
    assert bobs.post("/api/v1/backtests/", body(btc), format="json").status_code == 201
    # and once one of hers finishes, she can queue again
    Backtest.objects.filter(owner=alice).filter(pk=Backtest.objects.filter(owner=alice).first().pk).update(
        status="succeeded"
    )
    assert client.post("/api/v1/backtests/", body(btc), format="json").status_code == 201
