"""The ML strategy pages (Django test client): every page renders for its owner and is a 404 for
anyone else, the form shows service errors at their fields with the input kept, and the
buttons (train, cancel, promote, roll back, schedule, backtest, deploy, delete) call through
to the services and redirect. Models are trained for real, on real candles, kept small."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from apps.accounts.models import TradingAccount
from apps.backtests.models import Backtest
from apps.marketdata.models import Instrument
from apps.ml import services
from apps.ml.models import MLStrategy, ModelVersion
from apps.strategies.models import Deployment
from tests.ml.support import BARS, config, corrupt, make_instrument, paper_account

pytestmark = pytest.mark.django_db

# A few quick features: the pages, not the model, are under test.
PAGE_FEATURES = ["ret_1", "ret_12", "rsi_14", "vol_12"]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ml(alice: Any, btc: Instrument) -> MLStrategy:
    return services.ml_strategy_create(owner=alice, data=config(btc, features=PAGE_FEATURES))


@pytest.fixture
def trained(ml: MLStrategy) -> MLStrategy:
    version = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert version.status == ModelVersion.Status.PROMOTED, version.error
    ml.refresh_from_db()
    return ml


def form_post(btc: Instrument, **overrides: str | list[str]) -> dict[str, Any]:
    """What the browser sends for a valid form (the fields the page renders)."""
    data: dict[str, Any] = {
        "name": "Page strategy",
        "description": "From the form",
        "instrument_ids": [str(btc.pk)],
        "timeframe": "1h",
        "higher_timeframe": "",
        "features": ["ret_1", "ret_12", "rsi_14"],
        "label_kind": "forward",
        "label_horizon": "6",
        "label_threshold": "0.0",
        "label_stop": "0.01",
        "label_target": "0.02",
        "model_kind": "hist_gb",
        "mp_hist_gb_max_iter": "20",
        "decision_threshold": "0.55",
        "decision_exit_threshold": "0.5",
        "validation_n_splits": "3",
        "validation_embargo": "6",
        "validation_history_bars": str(BARS),
        "seed": "7",
        "promotion_metric": "auc",
        "promotion_margin": "0.005",
        "drift_threshold": "0.25",
        "drift_window": "300",
        "retrain_on_drift": "on",
        "schedule_every": "weekly",
        "schedule_time": "04:30",
        "schedule_weekday": "4",
        "schedule_cron": "",
    }
    data.update(overrides)
    return data


# --- sign-in and owner scoping ------------------------------------------------------------------


def test_pages_need_sign_in(ml: MLStrategy) -> None:
    client = Client()
    for path in ("/ml/", "/ml/new/", f"/ml/{ml.pk}/", f"/ml/{ml.pk}/edit/", f"/ml/{ml.pk}/status/"):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], path
    response = client.post(f"/ml/{ml.pk}/train/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not ModelVersion.objects.exists()


def test_another_users_ml_strategy_is_404_everywhere(trained: MLStrategy, mallory: Any) -> None:
    client = signed_in(mallory)
    pk = trained.pk
    for path in (f"/ml/{pk}/", f"/ml/{pk}/edit/", f"/ml/{pk}/status/"):
        assert client.get(path).status_code == 404, path
    for path, body in (
        (f"/ml/{pk}/edit/", {"name": "Mine now"}),
        (f"/ml/{pk}/train/", {}),
        (f"/ml/{pk}/versions/1/cancel/", {}),
        (f"/ml/{pk}/versions/1/promote/", {}),
        (f"/ml/{pk}/rollback/", {}),
        (f"/ml/{pk}/schedule/", {"schedule_every": "hourly", "schedule_time": "00:05"}),
        (f"/ml/{pk}/backtest/", {"instrument_id": trained.instruments.get().pk}),
        (f"/ml/{pk}/deploy/", {"account_id": "1", "capital": "100"}),
        (f"/ml/{pk}/delete/", {}),
    ):
        assert client.post(path, body).status_code == 404, path
    assert "BTC direction" not in client.get("/ml/").content.decode()
    trained.refresh_from_db()
    assert trained.name == "BTC direction" and trained.schedule is None
    assert list(trained.versions.values_list("number", "status")) == [(1, "promoted")]
    assert not Backtest.objects.exists() and not Deployment.objects.exists()


# --- the list and the form ----------------------------------------------------------------------


def test_list_shows_the_owners_ml_strategies(trained: MLStrategy, alice: Any, bob: Any) -> None:
    html = signed_in(alice).get("/ml/").content.decode()

    assert f'data-ml-id="{trained.pk}"' in html and "BTC direction" in html
    assert "HistGradientBoosting" in html and "v1" in html
    promoted_auc = trained.promoted_version.metrics["auc"]
    assert f"{promoted_auc:.4f}" in html
    assert "<td>Off</td>" in html  # no schedule
    assert "No ML strategies yet" in signed_in(bob).get("/ml/").content.decode()


def test_new_form_renders_the_feature_catalogue_grouped(alice: Any, btc: Instrument) -> None:
    from apps.ml.pipeline.features import DEFAULT_FEATURES, feature_catalogue

    response = signed_in(alice).get("/ml/new/")

    html = response.content.decode()
    assert response.status_code == 200
    catalogue = feature_catalogue()
    groups = {f["group"] for f in catalogue}
    assert html.count('class="feature-group"') == len(groups)
    assert html.count('name="features"') == len(catalogue)
    for name in DEFAULT_FEATURES:  # the defaults come ticked
        assert f'value="{name}" id="feature-{name}" checked' in html
    assert f'<option value="{btc.pk}" selected>' in html
    assert 'name="schedule_cron"' in html and 'name="mp_lightgbm_num_leaves"' in html


def test_create_through_the_form(alice: Any, btc: Instrument) -> None:
    response = signed_in(alice).post("/ml/new/", form_post(btc))

    ml = MLStrategy.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/ml/{ml.pk}/"
    assert ml.name == "Page strategy" and ml.features == ["ret_1", "ret_12", "rsi_14"]
    assert ml.label["kind"] == "forward" and ml.label["horizon"] == 6
    assert ml.model_params["max_iter"] == 20 and ml.seed == 7 and ml.drift_window == 300
    assert ml.validation == {"n_splits": 3, "embargo": 6, "history_bars": BARS}
    schedule = services.ml_schedule_describe(ml_strategy=ml)
    assert (schedule["every"], schedule["weekday"], schedule["hour"], schedule["minute"]) == ("weekly", 4, 4, 30)
    assert ml.schedule is not None and ml.schedule.crontab.day_of_week == "5"  # Friday, cron's numbering


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"validation_history_bars": "100"}, "validation_history_bars", "history"),
        ({"label_horizon": "0"}, "label_horizon", "horizon"),
        ({"features": ["htf_rsi_14"]}, "features", "higher timeframe"),
        ({"schedule_every": "cron", "schedule_cron": "every day please"}, "schedule_cron", "cron"),
        ({"mp_hist_gb_max_iter": "1"}, "mp_hist_gb_max_iter", "max_iter"),
        ({"decision_threshold": "0.55", "decision_exit_threshold": "0.7"}, "decision_exit_threshold", "exit"),
        ({"features": ["ret_1", "no_such_feature"]}, "features", "not one of the available choices"),
        ({"timeframe": "13m"}, "timeframe", "not one of the available choices"),
        ({"higher_timeframe": "90d"}, "higher_timeframe", "not one of the available choices"),
        ({"higher_timeframe": "1w"}, "higher_timeframe", "2 to 24"),
    ],
)
def test_form_shows_service_errors_at_their_field_and_keeps_the_input(
    alice: Any, btc: Instrument, overrides: dict[str, Any], field: str, words: str
) -> None:
    response = signed_in(alice).post("/ml/new/", form_post(btc, name="Kept name", **overrides))

    html = response.content.decode()
    assert response.status_code == 200
    assert not MLStrategy.objects.exists()
    marker = f'data-field="{field}"'
    assert html[: html.index(marker)].endswith('class="field has-error" ')
    errors = re.search(rf'id="id_{field}_errors">(.*?)</ul>', html, re.S)
    assert errors is not None and words in errors.group(1).lower()
    assert 'value="Kept name"' in html  # nothing typed is lost
    assert 'value="weekly"' in html


def test_edit_keeps_the_market_fixed_once_trained(trained: MLStrategy, alice: Any, btc: Instrument) -> None:
    other = make_instrument("ETH/USDT")
    client = signed_in(alice)
    page = client.get(f"/ml/{trained.pk}/edit/").content.decode()
    assert "Fixed once a version is trained" in page

    post = form_post(btc, name="Renamed", instrument_ids=[str(other.pk)], timeframe="4h", label_horizon="8")
    response = client.post(f"/ml/{trained.pk}/edit/", post)

    assert response.status_code == 302 and response["Location"] == f"/ml/{trained.pk}/"
    trained.refresh_from_db()
    assert trained.name == "Renamed" and trained.label["horizon"] == 8
    assert list(trained.instruments.all()) == [btc] and trained.timeframe == "1h"


# --- the model page -----------------------------------------------------------------------------


def test_model_page_before_training(ml: MLStrategy, alice: Any) -> None:
    html = signed_in(alice).get(f"/ml/{ml.pk}/").content.decode()

    assert 'id="training-result" data-status="none"' in html and "not trained yet" in html
    assert 'id="training" data-status="idle" hidden' in html
    assert 'id="run-backtest" disabled' in html
    assert "No versions yet" in html and "Shown once a model is promoted." in html


def test_model_page_shows_the_promoted_version(trained: MLStrategy, alice: Any) -> None:
    version = trained.promoted_version
    response = signed_in(alice).get(f"/ml/{trained.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-version="1" data-status="promoted"' in html
    assert 'id="training-result" data-status="promoted" data-number="1"' in html
    assert f"{version.metrics['auc']:.4f}" in html and f"{version.metrics['log_loss']:.4f}" in html
    # the charts: metrics per version, the out-of-sample equity, the importances
    assert '<section class="card" id="metrics-chart" data-points="1">' in html and 'id="metrics-svg"' in html
    equity_points = len(version.oos_backtest["equity"])
    assert f'id="equity-chart" data-points="{equity_points}"' in html and equity_points > 1
    top = max(version.feature_importances, key=lambda k: abs(version.feature_importances[k]))
    assert f'<li data-feature="{top}">' in html and 'style="width: 100.0%"' in html
    assert 'id="ml-page-config"' in html and '"active": null' in html
    # The backtest form starts where the out-of-sample period began (the first test block).
    first_test = datetime.fromisoformat(version.folds[0]["test"][0].replace("Z", "+00:00"))
    assert f'name="start_at" value="{first_test:%Y-%m-%dT%H:%M}"' in html


def test_status_json_is_the_newest_version(trained: MLStrategy, alice: Any) -> None:
    body = signed_in(alice).get(f"/ml/{trained.pk}/status/").json()

    assert body["ml_strategy"] == trained.pk
    latest = body["latest"]
    assert (latest["number"], latest["status"], latest["finished"]) == (1, "promoted", True)
    assert latest["metrics"]["auc"] == trained.promoted_version.metrics["auc"]


def test_drift_chart_and_worst_features(trained: MLStrategy, alice: Any) -> None:
    from apps.marketdata.storage import candles_frame

    bars = candles_frame(trained.instruments.get(), "1h")
    for i in (-400, -200, -1):
        assert services.drift_check(ml_strategy=trained, as_of=bars.index[i].to_pydatetime()) is not None
    latest = trained.drift_checks.order_by("-checked_at").first()

    html = signed_in(alice).get(f"/ml/{trained.pk}/").content.decode()

    assert 'id="drift-chart" data-points="3"' in html and 'id="drift-svg"' in html
    assert html.count('data-series="max_psi"') == 3
    worst = max(latest.psi, key=lambda k: latest.psi[k] or 0)
    assert f'<tr data-feature="{worst}">' in html


# --- the buttons --------------------------------------------------------------------------------


def test_train_now_queues_a_training_and_refuses_a_second(
    ml: MLStrategy, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = signed_in(alice)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/ml/{ml.pk}/train/")

    assert response.status_code == 302 and response["Location"] == f"/ml/{ml.pk}/#training"
    version = ModelVersion.objects.get(ml_strategy=ml)
    assert (version.number, version.status, version.trigger, version.requested_by) == (1, "queued", "manual", alice)
    assert callbacks  # the task is sent after commit
    html = client.get(f"/ml/{ml.pk}/").content.decode()
    assert 'id="training" data-status="queued">' in html and 'id="train-now" disabled' in html
    assert '"status": "queued"' in html  # the page script starts from it

    again = client.post(f"/ml/{ml.pk}/train/", follow=True)
    assert "already queued or running" in again.content.decode()
    assert ModelVersion.objects.filter(ml_strategy=ml).count() == 1

    cancelled = client.post(f"/ml/{ml.pk}/versions/1/cancel/")
    assert cancelled.status_code == 302
    version.refresh_from_db()
    assert version.status == "cancelled"


def test_rejected_version_shows_its_reason_then_promote_and_roll_back(trained: MLStrategy, alice: Any) -> None:
    # A margin no candidate can beat: the second training is kept as rejected.
    services.ml_strategy_update(ml_strategy=trained, data={"promotion_margin": 1.0, "seed": 3})
    second = services.training_run_now(ml_strategy=trained, trigger="manual")
    assert second.status == ModelVersion.Status.REJECTED
    reason = second.comparison["reason"]
    client = signed_in(alice)

    html = client.get(f"/ml/{trained.pk}/").content.decode()
    assert 'data-version="2" data-status="rejected"' in html
    assert f'<span class="reason">{escape(reason)}</span>' in html
    assert 'class="secondary small promote" data-version="2"' in html
    assert 'data-version="1" data-status="promoted"' in html

    response = client.post(f"/ml/{trained.pk}/versions/2/promote/")
    assert response.status_code == 302 and response["Location"] == f"/ml/{trained.pk}/#versions"
    trained.refresh_from_db()
    assert trained.promoted_version.number == 2
    assert ModelVersion.objects.get(ml_strategy=trained, number=1).status == "retired"

    assert 'id="rollback"' in client.get(f"/ml/{trained.pk}/").content.decode()  # v2 replaced v1

    response = client.post(f"/ml/{trained.pk}/rollback/")
    assert response.status_code == 302
    trained.refresh_from_db()
    assert trained.promoted_version.number == 1
    assert ModelVersion.objects.get(ml_strategy=trained, number=2).status == "retired"
    # v1 replaced nothing: no button offers a rollback that cannot happen
    assert 'id="rollback"' not in client.get(f"/ml/{trained.pk}/").content.decode()


def test_promoting_a_version_whose_model_file_does_not_load_is_a_message(trained: MLStrategy, alice: Any) -> None:
    services.ml_strategy_update(ml_strategy=trained, data={"promotion_margin": 1.0})
    second = services.training_run_now(ml_strategy=trained, trigger="manual")
    corrupt(second)

    response = signed_in(alice).post(f"/ml/{trained.pk}/versions/2/promote/", follow=True)

    assert "v2 cannot be promoted: The model file is corrupt (hash mismatch)." in response.content.decode()
    trained.refresh_from_db()
    assert trained.promoted_version.number == 1


def test_rollback_without_a_previous_version_is_a_message(trained: MLStrategy, alice: Any) -> None:
    response = signed_in(alice).post(f"/ml/{trained.pk}/rollback/", follow=True)

    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    trained.refresh_from_db()
    assert trained.promoted_version.number == 1


def test_schedule_set_inline_and_a_bad_cron_is_shown_at_its_field(ml: MLStrategy, alice: Any) -> None:
    client = signed_in(alice)
    response = client.post(
        f"/ml/{ml.pk}/schedule/", {"schedule_every": "daily", "schedule_time": "05:15", "schedule_weekday": "0"}
    )
    assert response.status_code == 302 and response["Location"] == f"/ml/{ml.pk}/#schedule"
    ml.refresh_from_db()
    described = services.ml_schedule_describe(ml_strategy=ml)
    assert (described["every"], described["hour"], described["minute"], described["enabled"]) == ("daily", 5, 15, True)
    assert described["text"] in client.get(f"/ml/{ml.pk}/").content.decode()

    bad = client.post(f"/ml/{ml.pk}/schedule/", {"schedule_every": "cron", "schedule_cron": "61 * * * *"})
    html = bad.content.decode()
    assert bad.status_code == 400
    assert 'data-field="schedule_cron"' in html and 'value="61 * * * *"' in html
    assert html[: html.index('data-field="schedule_cron"')].endswith('class="field has-error" ')
    assert services.ml_schedule_describe(ml_strategy=ml)["every"] == "daily"  # unchanged

    client.post(f"/ml/{ml.pk}/schedule/", {"schedule_every": "off"})
    ml.refresh_from_db()
    assert services.ml_schedule_describe(ml_strategy=ml)["enabled"] is False


def test_backtest_button_starts_a_backtest_of_strategy_ml(
    trained: MLStrategy, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.marketdata.storage import candles_frame

    instrument = trained.instruments.get()
    start = candles_frame(instrument, "1h").index[-500]
    with django_capture_on_commit_callbacks():
        response = signed_in(alice).post(
            f"/ml/{trained.pk}/backtest/", {"instrument_id": instrument.pk, "start_at": f"{start:%Y-%m-%dT%H:%M}"}
        )

    backtest = Backtest.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/backtests/{backtest.pk}/"
    assert backtest.strategy_key == "ml" and backtest.params["model"] == trained.pk
    assert backtest.instrument_id == instrument.pk and backtest.timeframe == "1h"
    assert backtest.start_at == start.to_pydatetime()


def test_backtest_without_a_promoted_model_is_refused_on_the_page(ml: MLStrategy, alice: Any) -> None:
    response = signed_in(alice).post(f"/ml/{ml.pk}/backtest/", {"instrument_id": ml.instruments.get().pk})

    assert response.status_code == 400
    assert "no promoted model yet" in response.content.decode()
    assert not Backtest.objects.exists()


def test_deploy_on_paper_lands_on_the_deployment(trained: MLStrategy, alice: Any) -> None:
    account = paper_account(alice, "20000")
    client = signed_in(alice)
    assert f'<option value="{account.pk}">Paper</option>' in client.get(f"/ml/{trained.pk}/").content.decode()

    response = client.post(f"/ml/{trained.pk}/deploy/", {"account_id": account.pk, "capital": "5000"})

    deployment = Deployment.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/strategies/deployments/{deployment.pk}/"
    assert deployment.strategy_key == "ml" and deployment.params == {"model": trained.pk, "version": 0}
    assert deployment.status == Deployment.Status.PAPER and deployment.capital == Decimal("5000")
    assert deployment.account == account and deployment.timeframe == "1h"
    page = client.get(f"/ml/{trained.pk}/").content.decode()
    assert f'data-deployment-id="{deployment.pk}"' in page


def test_deploy_errors_are_shown_at_their_field(trained: MLStrategy, alice: Any) -> None:
    account = paper_account(alice, "20000")

    response = signed_in(alice).post(f"/ml/{trained.pk}/deploy/", {"account_id": account.pk, "capital": "0"})

    html = response.content.decode()
    assert response.status_code == 400
    assert not Deployment.objects.exists()
    marker = 'data-field="capital"'
    assert html[: html.index(marker)].endswith('class="field has-error" ')
    assert TradingAccount.objects.filter(owner=alice).count() == 1


def test_delete(ml: MLStrategy, alice: Any) -> None:
    response = signed_in(alice).post(f"/ml/{ml.pk}/delete/")

    assert response.status_code == 302 and response["Location"] == "/ml/"
    assert not MLStrategy.objects.exists()


def test_catalogue_and_menu_link_to_ml_strategies(alice: Any) -> None:
    html = signed_in(alice).get("/strategies/").content.decode()

    assert 'href="/ml/" id="ml-strategies-link"' in html
    assert '<a href="/ml/">ML</a>' in html
