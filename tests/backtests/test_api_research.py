"""The research API: optimisations (trials, heat map), walk-forwards and Monte Carlo; every
route owner-scoped (mallory sees and changes nothing)."""

from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.backtests import tasks
from apps.backtests.models import JobStatus, MonteCarlo, Optimisation, OptimisationTrial, WalkForward
from tests.backtests.platform_support import Sent

pytestmark = pytest.mark.django_db

SPACE = {"fast": {"low": 5, "high": 20, "step": 5}, "slow": {"low": 30, "high": 60, "step": 10}}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def client(alice: Any) -> APIClient:
    return client_for(alice)


def run_body(market: Any, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "strategy": "sma_cross",
        "params": {},
        "instrument": market.pk,
        "timeframe": "1h",
        "start": "2021-01-01",
        "settings": {"costs": {"fee": 0.001}},
        "method": "grid",
        "objective": "sharpe",
        "space": SPACE,
        "min_trades": 1,
    }
    data.update(overrides)
    return data


@pytest.fixture
def finished_optimisation(client, btc, sent, settings, django_capture_on_commit_callbacks) -> dict[str, Any]:
    settings.OPTIMISATION_GRID_CHUNK = 8
    response = client.post("/api/v1/optimisations/", run_body(btc, name="grid"), format="json")
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job_id)
    for chunk in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            tasks.optimisation_chunk_run(job_id, chunk)
    data: dict[str, Any] = client.get(f"/api/v1/optimisations/{job_id}/").json()
    assert data["status"] == "succeeded", data["error"]
    return data


@pytest.fixture
def finished_backtest(client, btc, sent, django_capture_on_commit_callbacks) -> dict[str, Any]:
    created = client.post(
        "/api/v1/backtests/",
        {"strategy": "sma_cross", "instrument": btc.pk, "timeframe": "1h", "params": {"fast": 10, "slow": 30}},
        format="json",
    ).json()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.backtest_run(created["id"])
    return dict(client.get(f"/api/v1/backtests/{created['id']}/").json())


# --- optimisations --------------------------------------------------------------------------------


def test_optimisation_create_list_and_detail(client, btc, sent: Sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/optimisations/", run_body(btc, method="tpe", n_trials=30, seed=3), format="json"
        )
    assert response.status_code == 201
    data = response.json()
    assert response["Location"].endswith(f"/api/v1/optimisations/{data['id']}/")
    assert (data["status"], data["method"], data["n_trials"], data["seed"]) == ("queued", "tpe", 30, 3)
    assert data["space"] == SPACE and data["instrument"]["id"] == btc.pk
    assert sent["optimisation_run"] == [(data["id"],)]
    assert client.get(f"/api/v1/optimisations/{data['id']}/").json()["chunks_total"] == 0
    listing = client.get("/api/v1/optimisations/").json()
    assert [o["id"] for o in listing["results"]] == [data["id"]]
    assert client.get("/api/v1/optimisations/", {"status": "succeeded"}).json()["count"] == 0


def test_a_grid_optimisation_counts_its_combinations(client, btc, sent):
    data = client.post("/api/v1/optimisations/", run_body(btc, n_trials=5), format="json").json()
    assert data["n_trials"] == 16  # 4 fast x 4 slow, whatever n_trials says


def test_trials_and_heat_map_of_a_finished_optimisation(client, finished_optimisation):
    job_id = finished_optimisation["id"]
    trials = client.get(f"/api/v1/optimisations/{job_id}/trials/", {"limit": 100}).json()
    assert trials["count"] == 16
    assert [t["number"] for t in trials["results"]] == list(range(16))
    feasible = client.get(f"/api/v1/optimisations/{job_id}/trials/", {"feasible": "true"}).json()
    assert feasible["count"] == sum(1 for t in trials["results"] if t["is_feasible"])
    best = max((t for t in trials["results"] if t["is_feasible"]), key=lambda t: t["value"])
    assert finished_optimisation["best_value"] == best["value"]
    assert finished_optimisation["best_params"] == best["params"]
    # the heat map: best value per (fast, slow) cell; each cell here is one trial
    heatmap = client.get(f"/api/v1/optimisations/{job_id}/heatmap/", {"x": "fast", "y": "slow"}).json()
    assert heatmap["x"] == [5, 10, 15, 20] and heatmap["y"] == [30, 40, 50, 60]
    by_cell = {(t["params"]["fast"], t["params"]["slow"]): t["value"] for t in trials["results"]}
    for i, slow in enumerate(heatmap["y"]):
        for j, fast in enumerate(heatmap["x"]):
            assert heatmap["z"][i][j] == by_cell[(fast, slow)]


def test_heat_map_of_an_unknown_parameter_is_400(client, finished_optimisation):
    response = client.get(f"/api/v1/optimisations/{finished_optimisation['id']}/heatmap/", {"x": "fast", "y": "nope"})
    assert response.status_code == 400 and "y" in response.json()["error"]["fields"]
    missing = client.get(f"/api/v1/optimisations/{finished_optimisation['id']}/heatmap/", {"x": "fast"})
    assert missing.status_code == 400 and "y" in missing.json()["error"]["fields"]


def test_optimisation_cancel(client, btc, sent, finished_optimisation):
    queued = client.post("/api/v1/optimisations/", run_body(btc), format="json").json()
    assert client.post(f"/api/v1/optimisations/{queued['id']}/cancel/").json()["status"] == "cancelled"
    finished = client.post(f"/api/v1/optimisations/{finished_optimisation['id']}/cancel/")
    assert finished.status_code == 409


# --- walk-forwards --------------------------------------------------------------------------------


def test_walk_forward_create_run_and_read(client, btc, sent: Sent, django_capture_on_commit_callbacks):
    body = run_body(btc, mode="anchored", windows_count=3, train_ratio=0.6)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/walk-forwards/", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert response["Location"].endswith(f"/api/v1/walk-forwards/{data['id']}/")
    assert sent["walk_forward_run"] == [(data["id"],)]
    assert (data["mode"], data["windows_count"], data["train_ratio"]) == ("anchored", 3, 0.6)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.walk_forward_run(data["id"])
    detail = client.get(f"/api/v1/walk-forwards/{data['id']}/").json()
    assert detail["status"] == "succeeded", detail["error"]
    assert len(detail["windows"]) == 3 and detail["equity"]["t"]
    # anchored: every train window starts at the same bar
    assert len({w["train_from"] for w in detail["windows"]}) == 1
    listing = client.get("/api/v1/walk-forwards/").json()
    assert listing["count"] == 1 and "windows" not in listing["results"][0]
    again = client.post(f"/api/v1/walk-forwards/{data['id']}/cancel/")
    assert again.status_code == 409


def test_walk_forward_cancel(client, btc, sent):
    data = client.post("/api/v1/walk-forwards/", run_body(btc, windows_count=2), format="json").json()
    assert client.post(f"/api/v1/walk-forwards/{data['id']}/cancel/").json()["status"] == "cancelled"


# --- Monte Carlo ----------------------------------------------------------------------------------


def test_monte_carlo_from_a_backtest(client, finished_backtest, sent: Sent, django_capture_on_commit_callbacks):
    body = {"backtest": finished_backtest["id"], "method": "resample", "simulations": 500, "seed": 5, "noise": 0.001}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/monte-carlos/", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert response["Location"].endswith(f"/api/v1/monte-carlos/{data['id']}/")
    assert data["backtest"]["id"] == finished_backtest["id"] and data["loss_threshold"] == 0.2
    with django_capture_on_commit_callbacks(execute=True):
        tasks.monte_carlo_run(data["id"])
    detail = client.get(f"/api/v1/monte-carlos/{data['id']}/").json()
    assert detail["status"] == "succeeded" and detail["results"]["simulations"] == 500
    assert 0.0 <= detail["results"]["probability_of_loss"] <= 1.0
    listing = client.get("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}).json()
    assert [m["id"] for m in listing["results"]] == [data["id"]] and "results" not in listing["results"][0]
    assert client.get("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"] + 1}).json()["count"] == 0
    assert client.post(f"/api/v1/monte-carlos/{data['id']}/cancel/").status_code == 409


def test_monte_carlo_cancel(client, finished_backtest, sent):
    data = client.post("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}, format="json").json()
    assert client.post(f"/api/v1/monte-carlos/{data['id']}/cancel/").json()["status"] == "cancelled"


# --- mallory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "cancel/", "trials/", "heatmap/?x=fast&y=slow"])
def test_every_route_of_someone_elses_optimisation_is_404(finished_optimisation, mallory, path):
    outsider = client_for(mallory)
    url = f"/api/v1/optimisations/{finished_optimisation['id']}/{path}"
    response = outsider.post(url) if path == "cancel/" else outsider.get(url)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert Optimisation.objects.get().status == JobStatus.SUCCEEDED


@pytest.mark.parametrize("path", ["", "cancel/"])
def test_every_route_of_someone_elses_walk_forward_is_404(client, btc, sent, mallory, path):
    data = client.post("/api/v1/walk-forwards/", run_body(btc, windows_count=2), format="json").json()
    outsider = client_for(mallory)
    url = f"/api/v1/walk-forwards/{data['id']}/{path}"
    response = outsider.post(url) if path else outsider.get(url)
    assert response.status_code == 404
    assert WalkForward.objects.get().status == JobStatus.QUEUED


@pytest.mark.parametrize("path", ["", "cancel/"])
def test_every_route_of_someone_elses_monte_carlo_is_404(client, finished_backtest, sent, mallory, path):
    data = client.post("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}, format="json").json()
    outsider = client_for(mallory)
    url = f"/api/v1/monte-carlos/{data['id']}/{path}"
    response = outsider.post(url) if path else outsider.get(url)
    assert response.status_code == 404
    assert MonteCarlo.objects.get().status == JobStatus.QUEUED


def test_an_outsider_cannot_simulate_someone_elses_backtest(finished_backtest, mallory, sent: Sent):
    response = client_for(mallory).post("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"backtest": ["No such backtest."]}
    assert MonteCarlo.objects.count() == 0


def test_outsiders_lists_are_empty(client, btc, finished_optimisation, finished_backtest, mallory, sent):
    client.post("/api/v1/walk-forwards/", run_body(btc, windows_count=2), format="json")
    client.post("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}, format="json")
    outsider = client_for(mallory)
    for url in ("/api/v1/optimisations/", "/api/v1/walk-forwards/", "/api/v1/monte-carlos/", "/api/v1/backtests/"):
        assert outsider.get(url).json()["count"] == 0, url
    assert OptimisationTrial.objects.count() == 16


def test_lists_take_a_bounded_number_of_queries(
    client, finished_backtest, finished_optimisation, django_assert_max_num_queries
):
    for _ in range(3):
        client.post("/api/v1/monte-carlos/", {"backtest": finished_backtest["id"]}, format="json")
    for url in ("/api/v1/optimisations/", "/api/v1/walk-forwards/", "/api/v1/monte-carlos/"):
        with django_assert_max_num_queries(3):
            assert client.get(url).status_code == 200


def test_schema_documents_every_backtests_endpoint(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = set(schema["paths"])
    for path in (
        "/api/v1/backtests/",
        "/api/v1/backtests/{backtest_id}/",
        "/api/v1/backtests/{backtest_id}/cancel/",
        "/api/v1/backtests/{backtest_id}/rerun/",
        "/api/v1/backtests/{backtest_id}/trades/",
        "/api/v1/backtests/{backtest_id}/equity/",
        "/api/v1/optimisations/",
        "/api/v1/optimisations/{optimisation_id}/",
        "/api/v1/optimisations/{optimisation_id}/cancel/",
        "/api/v1/optimisations/{optimisation_id}/trials/",
        "/api/v1/optimisations/{optimisation_id}/heatmap/",
        "/api/v1/walk-forwards/",
        "/api/v1/walk-forwards/{walk_forward_id}/",
        "/api/v1/walk-forwards/{walk_forward_id}/cancel/",
        "/api/v1/monte-carlos/",
        "/api/v1/monte-carlos/{monte_carlo_id}/",
        "/api/v1/monte-carlos/{monte_carlo_id}/cancel/",
        "/api/v1/strategies/",
        "/api/v1/strategies/{key}/",
        "/api/v1/rule-sets/",
        "/api/v1/rule-sets/{rule_set_id}/",
        "/api/v1/rule-sets/validate/",
        "/api/v1/rule-sets/indicators/",
    ):
        assert path in paths, path
    create = schema["paths"]["/api/v1/backtests/"]["post"]
    assert "201" in create["responses"]


def test_the_schema_validates_without_warnings(tmp_path):
    # drf-spectacular documents every endpoint: no warning (an unnamed enum, a component
    # collision, a view it cannot introspect) and a valid OpenAPI document.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().count("/api/v1/backtests/") >= 6
