"""The ML API: create, list, read, change and delete ML strategies; train (202), versions,
promote, roll back, cancel, drift, backtest and deploy; the feature catalogue. Bad input is a
400 naming the field, another user's objects are 404 on every route and change nothing, and
the model file is never in any answer."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.backtests.models import Backtest
from apps.backtests.services import backtest_run
from apps.ml import services
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.features import feature_catalogue
from apps.strategies.models import Deployment
from tests.ml.support import config, corrupt, paper_account

pytestmark = pytest.mark.django_db

LIST = "/api/v1/ml/strategies/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def detail(ml: MLStrategy) -> str:
    return f"{LIST}{ml.pk}/"


@pytest.fixture
def trained(ml, sent) -> MLStrategy:
    services.training_run_now(ml_strategy=ml, trigger="manual")
    services.training_run_now(ml_strategy=ml, trigger="manual")  # v2: rejected (the same score)
    ml.refresh_from_db()
    return ml


def test_create_returns_201_with_the_stored_configuration(alice, btc):
    body = config(btc, schedule={"every": "daily", "hour": 3, "minute": 0})

    response = client_for(alice).post(LIST, body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    ml = MLStrategy.objects.get(owner=alice)
    assert response["Location"].endswith(detail(ml))
    assert data["id"] == ml.pk and data["name"] == "BTC direction"
    assert data["instruments"] == [{"id": btc.pk, "symbol": "BTC/USDT", "venue": "binance"}]
    assert data["features"] == body["features"] and data["model_params"]["max_iter"] == 20
    assert data["schedule"]["text"] == "Daily at 03:00 UTC" and data["schedule"]["enabled"] is True
    assert data["promoted_version"] is None and data["last_version"] is None and data["versions_count"] == 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"features": ["nope"]}, "features"),
        ({"label": {"horizon": 0}}, "label.horizon"),
        ({"decision": {"threshold": 0.1}}, "decision.threshold"),
        ({"model_params": {"max_iter": 0}}, "model_params.max_iter"),
        ({"validation": {"n_splits": 100}}, "validation.n_splits"),
        ({"schedule": {"every": "cron", "cron": "nonsense"}}, "schedule.cron"),
        ({"timeframe": "13m"}, "timeframe"),
        ({"owner": 1}, "owner"),
        ({"label": {"kind": "forward", "colour": "red"}}, "label"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(alice, btc, override, field):
    response = client_for(alice).post(LIST, config(btc, **override), format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"], response.json()
    assert not MLStrategy.objects.exists()


def test_list_shows_only_my_strategies_in_few_queries(alice, bob, btc, sent, django_assert_max_num_queries):
    for n in range(3):
        ml = services.ml_strategy_create(
            owner=alice, data=config(btc, name=f"mine {n}", schedule={"every": "hourly", "minute": n})
        )
    services.training_run_now(ml_strategy=ml, trigger="manual")
    services.ml_strategy_create(owner=bob, data=config(btc, name="bob's"))

    with django_assert_max_num_queries(6):
        response = client_for(alice).get(LIST)

    results = response.json()["results"]
    assert response.status_code == 200 and response.json()["count"] == 3
    assert {r["name"] for r in results} == {"mine 0", "mine 1", "mine 2"}
    newest = next(r for r in results if r["name"] == "mine 2")
    assert newest["promoted_version"]["number"] == 1 and newest["last_version"]["status"] == "promoted"
    assert "artifact" not in response.content.decode()


def test_patch_changes_the_given_fields(ml, alice):
    response = client_for(alice).patch(detail(ml), {"label": {"horizon": 24}, "drift_window": 300}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["label"]["horizon"] == 24 and response.json()["drift_window"] == 300
    ml.refresh_from_db()
    assert ml.label["horizon"] == 24 and ml.label["kind"] == "forward"


def test_patch_refused_names_the_field(ml, alice):
    response = client_for(alice).patch(detail(ml), {"promotion_metric": "f1"}, format="json")

    assert response.status_code == 400 and "promotion_metric" in response.json()["error"]["fields"]


def test_delete(ml, alice):
    assert client_for(alice).delete(detail(ml)).status_code == 204
    assert not MLStrategy.objects.exists()


def test_train_is_202_with_the_queued_version_and_409_while_active(ml, alice, sent, django_capture_on_commit_callbacks):
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{detail(ml)}train/")

    assert response.status_code == 202
    assert response.json()["number"] == 1 and response.json()["status"] == "queued"
    assert response["Location"].endswith(f"{detail(ml)}versions/1/")
    assert sent.versions == [ModelVersion.objects.get(ml_strategy=ml).pk]

    again = client.post(f"{detail(ml)}train/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "training_active"


def test_versions_and_version_detail_never_hold_the_model_file(trained, alice):
    client = client_for(alice)

    listing = client.get(f"{detail(trained)}versions/")
    one = client.get(f"{detail(trained)}versions/1/")

    assert listing.status_code == 200 and [v["number"] for v in listing.json()["results"]] == [2, 1]
    assert listing.json()["results"][0]["comparison"]["promoted"] is False
    body = one.json()
    assert one.status_code == 200 and body["status"] == "promoted"
    assert body["config"]["features"] == trained.features and len(body["folds"]) == 3
    assert body["oos_backtest"]["equity"] and body["artifact_size"] > 0 and len(body["artifact_sha256"]) == 64
    for response in (listing, one):
        assert '"artifact"' not in response.content.decode()
    assert client.get(f"{detail(trained)}versions/9/").status_code == 404


def test_promote_and_roll_back(trained, alice):
    client = client_for(alice)

    promoted = client.post(f"{detail(trained)}versions/2/promote/", {"reason": "try it"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted"
    assert client.post(f"{detail(trained)}versions/2/promote/").status_code == 409

    rolled = client.post(f"{detail(trained)}rollback/")
    assert rolled.status_code == 200 and rolled.json()["number"] == 1
    assert client.post(f"{detail(trained)}rollback/").status_code == 409
    trained.refresh_from_db()
    assert trained.promoted_version.number == 1


def test_cancel_a_queued_training(ml, alice, sent):
    services.training_start(ml_strategy=ml)

    response = client_for(alice).post(f"{detail(ml)}versions/1/cancel/")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_drift_lists_the_checks_newest_first(trained, alice, btc):
    services.drift_check(ml_strategy=trained)
    services.drift_check(ml_strategy=trained)

    response = client_for(alice).get(f"{detail(trained)}drift/")

    results = response.json()["results"]
    assert response.status_code == 200 and len(results) == 2
    assert results[0]["id"] > results[1]["id"] and results[0]["version"] == 1
    assert set(results[0]["psi"]) == set(trained.features)


def test_backtest_queues_a_backtest_of_the_promoted_model(trained, alice, btc, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr("apps.backtests.services.backtests._enqueue", queued.append)

    response = client_for(alice).post(
        f"{detail(trained)}backtest/", {"settings": {"costs": {"fee": 0.001}}}, format="json"
    )

    assert response.status_code == 201, response.json()
    backtest = Backtest.objects.get(owner=alice)
    assert (backtest.strategy_key, backtest.params) == ("ml", {"model": trained.pk, "version": 0})
    assert (backtest.instrument_id, backtest.timeframe) == (btc.pk, "1h")
    assert backtest.settings["allow_short"] is False


def test_backtest_and_deploy_refuse_without_a_promoted_model(ml, alice):
    account = paper_account(alice, "1000")
    client = client_for(alice)

    backtest = client.post(f"{detail(ml)}backtest/", {}, format="json")
    deploy = client.post(f"{detail(ml)}deploy/", {"account_id": account.pk, "capital": "500"}, format="json")

    for response in (backtest, deploy):
        assert response.status_code == 400 and "model" in response.json()["error"]["fields"]
    assert not Backtest.objects.exists() and not Deployment.objects.exists()


def test_deploy_starts_a_paper_deployment_of_the_promoted_model(trained, alice, btc):
    account = paper_account(alice, "1000")

    response = client_for(alice).post(
        f"{detail(trained)}deploy/", {"account_id": account.pk, "capital": "500"}, format="json"
    )

    assert response.status_code == 201, response.json()
    deployment = Deployment.objects.get(owner=alice)
    assert deployment.status == "paper" and deployment.strategy_key == "ml"
    assert deployment.params == {"model": trained.pk, "version": 0} and deployment.timeframe == "1h"
    assert list(deployment.instruments.values_list("pk", flat=True)) == [btc.pk]
    assert response.json()["id"] == deployment.pk


def test_deploy_errors_keep_the_deployment_services_fields(trained, alice):
    response = client_for(alice).post(
        f"{detail(trained)}deploy/", {"account_id": 999999, "capital": "500"}, format="json"
    )

    assert response.status_code == 400 and "account_id" in response.json()["error"]["fields"]
    assert not Deployment.objects.exists()


def test_the_feature_catalogue(alice):
    response = client_for(alice).get("/api/v1/ml/features/")

    assert response.status_code == 200
    assert [f["name"] for f in response.json()] == [f["name"] for f in feature_catalogue()]
    assert {"name", "label", "group", "description", "higher"} == set(response.json()[0])


def test_an_outsider_gets_404_everywhere_and_changes_nothing(trained, alice, mallory):
    client = client_for(mallory)
    base = detail(trained)
    calls = [
        ("get", base),
        ("patch", base),
        ("delete", base),
        ("post", f"{base}train/"),
        ("post", f"{base}rollback/"),
        ("get", f"{base}versions/"),
        ("get", f"{base}versions/1/"),
        ("post", f"{base}versions/2/promote/"),
        ("post", f"{base}versions/2/cancel/"),
        ("get", f"{base}drift/"),
        ("post", f"{base}backtest/"),
        ("post", f"{base}deploy/"),
    ]
    for method, url in calls:
        response = getattr(client, method)(url, {"name": "mine now"}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)

    assert client.get(LIST).json()["count"] == 0
    trained.refresh_from_db()
    assert trained.name == "BTC direction" and trained.promoted_version.number == 1
    assert ModelVersion.objects.filter(ml_strategy=trained).count() == 2
    assert not Backtest.objects.exists() and not Deployment.objects.exists()


def test_anonymous_is_refused(ml):
    assert APIClient().get(LIST).status_code in (401, 403)


def test_the_schema_documents_the_ml_endpoints(alice):
    schema = client_for(alice).get("/api/schema/", HTTP_ACCEPT="application/json").json()

    for path in (
        "/api/v1/ml/strategies/",
        "/api/v1/ml/strategies/{ml_strategy_id}/",
        "/api/v1/ml/strategies/{ml_strategy_id}/train/",
        "/api/v1/ml/strategies/{ml_strategy_id}/versions/{number}/promote/",
        "/api/v1/ml/strategies/{ml_strategy_id}/rollback/",
        "/api/v1/ml/features/",
    ):
        assert path in schema["paths"], path
    assert "202" in schema["paths"]["/api/v1/ml/strategies/{ml_strategy_id}/train/"]["post"]["responses"]


def test_promoting_a_version_whose_model_file_does_not_load_is_a_400_saying_why(trained, alice):
    corrupt(ModelVersion.objects.get(ml_strategy=trained, number=2))

    response = client_for(alice).post(f"{detail(trained)}versions/2/promote/", {}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "v2 cannot be promoted: The model file is corrupt (hash mismatch)."
    assert "artifact" in error["fields"]
    trained.refresh_from_db()
    assert trained.promoted_version.number == 1


def test_the_owner_backtests_and_deploys_strategy_ml_through_the_platforms_own_endpoints(trained, alice, btc):
    """An ML strategy is a strategy like any other: the backtests' and deployments' own API take
    ``strategy: "ml"`` with its id, and the backtest runs its promoted model."""
    client = client_for(alice)
    account = paper_account(alice)

    backtest = client.post(
        "/api/v1/backtests/",
        {"strategy": "ml", "params": {"model": trained.pk}, "instrument": btc.pk, "timeframe": "1h"},
        format="json",
    )
    deploy = {
        "account": account.pk,
        "strategy": "ml",
        "params": {"model": trained.pk},
        "instruments": [btc.pk],
        "timeframe": "1h",
        "capital": "1000",
    }
    deployment = client.post("/api/v1/deployments/", deploy, format="json")

    assert backtest.status_code == 201, backtest.json()
    backtest_run(backtest_id=backtest.json()["id"])  # the task's body
    run = Backtest.objects.get(pk=backtest.json()["id"])
    assert (run.strategy_key, run.params, run.status) == ("ml", {"model": trained.pk, "version": 0}, "succeeded")
    assert run.error == "" and run.metrics
    assert deployment.status_code == 201, deployment.json()
    assert Deployment.objects.get(pk=deployment.json()["id"]).params == {"model": trained.pk, "version": 0}
    # on another timeframe than its model's, the deployment is refused at the field
    other = client.post("/api/v1/deployments/", {**deploy, "timeframe": "4h"}, format="json")
    assert other.status_code == 400 and "timeframe" in other.json()["error"]["fields"]
