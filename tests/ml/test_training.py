"""Training: a version is queued, claimed once, trained on the stored real candles, stored with
its artifact and metrics, and promoted or rejected by its out-of-sample comparison with the
promoted version (by the configured margin); failures are recorded with the reason and leave
the promoted version alone; the reaper fails dead trainings and re-sends lost ones."""

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common.errors import Conflict
from apps.marketdata.models import Candle
from apps.ml import services, tasks
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.services import training
from apps.notifications.models import Notification
from tests.ml.support import config, fresh

pytestmark = pytest.mark.django_db


def set_metric(version: ModelVersion, **values: float) -> None:
    """Stand in for an incumbent whose out-of-sample metrics were these."""
    version = fresh(version)
    ModelVersion.objects.filter(pk=version.pk).update(metrics={**version.metrics, **values})


def test_start_queues_a_numbered_version_with_the_configuration_and_sends_it_after_commit(
    ml, alice, btc, sent, pushed, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        version = services.training_start(ml_strategy=ml, requested_by=alice)

    assert (version.number, version.status, version.trigger, version.requested_by) == (1, "queued", "manual", alice)
    assert version.config["features"] == ml.features and version.config["timeframe"] == "1h"
    assert version.config["instruments"] == [{"id": btc.pk, "symbol": "BTC/USDT", "venue": "binance"}]
    assert version.config["validation"]["history_bars"] == 2000
    assert sent.versions == [version.pk]
    assert pushed.of(alice, "ml.progress")[-1]["status"] == "queued"
    assert AuditEvent.objects.filter(action="ml.training.started", target_id=str(version.pk)).exists()


def test_a_second_start_while_one_is_active_is_a_conflict(ml, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.training_start(ml_strategy=ml)
        with pytest.raises(Conflict):
            services.training_start(ml_strategy=ml)

    assert ModelVersion.objects.count() == 1 and len(sent.versions) == 1


def test_the_first_training_is_promoted_with_everything_stored(
    ml, alice, sent, pushed, django_capture_on_commit_callbacks
):
    version = services.training_start(ml_strategy=ml, requested_by=alice)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.ml_train(version.pk)

    version = fresh(version)
    ml.refresh_from_db()
    assert version.status == "promoted" and version.error == ""
    assert ml.promoted_version_id == version.pk and version.promoted_at is not None
    # the artifact is what its hash says
    assert version.artifact_sha256 == hashlib.sha256(bytes(version.artifact)).hexdigest()
    assert version.artifact_size == len(bytes(version.artifact)) > 0
    for key in ("accuracy", "log_loss", "auc", "sharpe", "total_return", "max_drawdown", "trades", "base_rate"):
        assert key in version.metrics, key
    assert 0.0 <= version.metrics["auc"] <= 1.0
    assert len(version.folds) == 3
    assert version.oos_backtest["equity"] and "metrics" in version.oos_backtest
    assert set(version.feature_importances) == set(ml.features)
    assert set(version.reference) == set(ml.features)
    assert version.n_samples > 1000 and version.data_start < version.data_end
    assert {"scikit-learn", "numpy", "pandas"} <= set(version.library_versions)
    assert version.comparison["promoted"] is True and version.comparison["current_version"] is None
    assert AuditEvent.objects.filter(action="ml.version.promoted", target_id=str(version.pk)).exists()
    note = Notification.objects.get(user=alice, event="model_promoted")
    assert "v1" in note.title and note.data["version"] == version.pk
    finished = pushed.of(alice, "ml.version")[-1]
    assert finished["status"] == "promoted" and finished["metrics"]["auc"] == version.metrics["auc"]
    assert finished["comparison"]["promoted"] is True
    stages = [event["stage"] for event in pushed.of(alice, "ml.progress")]
    assert "Loading candles" in stages and any(stage.startswith("Fold") for stage in stages)
    progress = [event["progress"] for event in pushed.of(alice, "ml.progress")]
    assert progress == sorted(progress)


def test_a_worse_candidate_is_rejected_with_the_comparison(ml, sent):
    first = services.training_run_now(ml_strategy=ml, trigger="manual")
    set_metric(first, auc=0.9)

    candidate = services.training_run_now(ml_strategy=ml, trigger="manual")

    auc = candidate.metrics["auc"]
    assert candidate.status == "rejected"
    assert candidate.comparison == {
        "metric": "auc",
        "candidate": auc,
        "current": 0.9,
        "current_version": 1,
        "margin": 0.005,
        "promoted": False,
        "reason": f"AUC {auc:.4f} does not beat v1's 0.9000 by the margin 0.0050",
    }
    ml.refresh_from_db()
    assert ml.promoted_version_id == first.pk and fresh(first).status == "promoted"
    # the rejected version keeps its model (it can be promoted by hand)
    assert candidate.artifact_sha256 and candidate.metrics
    assert AuditEvent.objects.filter(action="ml.version.rejected", target_id=str(candidate.pk)).exists()


def test_a_candidate_must_beat_the_promoted_version_by_the_margin(ml, sent):
    first = services.training_run_now(ml_strategy=ml, trigger="manual")
    # The same data, configuration and seed train the same model: every candidate scores this.
    auc = first.metrics["auc"]

    set_metric(first, auc=auc - 0.004)  # better, but by less than the margin 0.005
    short = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert short.metrics["auc"] == auc
    assert short.status == "rejected"

    set_metric(first, auc=auc - 0.006)  # better by more than the margin
    winner = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert winner.status == "promoted"
    assert winner.comparison["reason"] == (f"AUC {auc:.4f} beats v1's {auc - 0.006:.4f} by more than the margin 0.0050")
    ml.refresh_from_db()
    assert ml.promoted_version_id == winner.pk and winner.replaced_id == first.pk
    assert fresh(first).status == "retired" and fresh(short).status == "rejected"


def test_log_loss_is_better_when_lower(ml, sent):
    MLStrategy.objects.filter(pk=ml.pk).update(promotion_metric="log_loss", promotion_margin=0.001)
    first = services.training_run_now(ml_strategy=ml, trigger="manual")
    loss = first.metrics["log_loss"]

    set_metric(first, log_loss=loss - 0.01)  # the incumbent's loss is lower: it stays
    kept = services.training_run_now(ml_strategy=ml, trigger="manual")
    set_metric(first, log_loss=loss + 0.01)  # the candidate's is lower by more than 0.001
    better = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert kept.status == "rejected"
    assert kept.comparison["reason"] == (
        f"Log loss {loss:.4f} is not lower than v1's {loss - 0.01:.4f} by the margin 0.0010"
    )
    assert better.status == "promoted"


def test_one_class_labels_fail_the_training_with_the_reason_and_keep_the_promoted_version(
    ml, sent, pushed, alice, django_capture_on_commit_callbacks
):
    first = services.training_run_now(ml_strategy=ml, trigger="manual")
    # a 50 % rise within six hours never happened: every label is 0
    services.ml_strategy_update(ml_strategy=ml, data={"label": {"threshold": 0.5}})

    with django_capture_on_commit_callbacks(execute=True):
        failed = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert failed.status == "failed"
    assert failed.error.startswith("label: ")
    assert failed.artifact_sha256 == "" and failed.finished_at is not None
    ml.refresh_from_db()
    assert ml.promoted_version_id == first.pk and fresh(first).status == "promoted"
    assert AuditEvent.objects.filter(action="ml.training.failed", target_id=str(failed.pk)).exists()
    assert pushed.of(alice, "ml.version")[-1] == {
        "ml_strategy": ml.pk,
        "version": failed.pk,
        "number": 2,
        "status": "failed",
        "progress": pytest.approx(failed.progress, abs=1e-4),
        "stage": "Failed",
        "error": failed.error,
        "metrics": {},
        "comparison": {},
    }


def test_too_little_history_for_the_splits_fails_with_the_reason(ml, sent):
    services.ml_strategy_update(ml_strategy=ml, data={"validation": {"n_splits": 20, "history_bars": 500}})

    failed = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert failed.status == "failed" and failed.error.startswith("history: ")
    ml.refresh_from_db()
    assert ml.promoted_version is None


def test_no_stored_candles_fails_with_the_reason(ml, btc, sent):
    Candle.objects.filter(instrument=btc).delete()

    failed = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert failed.status == "failed"
    assert failed.error == "history: No 1h candles are stored for BTC/USDT @ binance."


def test_a_duplicate_delivery_of_the_task_does_nothing(ml, sent):
    version = services.training_start(ml_strategy=ml)
    tasks.ml_train(version.pk)
    done = fresh(version)

    tasks.ml_train(version.pk)

    again = fresh(version)
    assert (again.status, again.finished_at, again.artifact_sha256) == (
        done.status,
        done.finished_at,
        done.artifact_sha256,
    )
    assert AuditEvent.objects.filter(action="ml.version.promoted").count() == 1


def test_a_running_training_is_not_claimed_twice(ml, sent):
    version = services.training_start(ml_strategy=ml)
    ModelVersion.objects.filter(pk=version.pk).update(status="running", stage="Fold 1 of 3")

    tasks.ml_train(version.pk)

    assert (fresh(version).status, fresh(version).stage) == ("running", "Fold 1 of 3")


def test_cancel_a_queued_training(ml, alice, sent):
    version = services.training_start(ml_strategy=ml)

    services.training_cancel(version=version, actor=alice)
    tasks.ml_train(version.pk)

    assert fresh(version).status == "cancelled" and not fresh(version).artifact_sha256
    with pytest.raises(Conflict):
        services.training_cancel(version=version, actor=alice)


def test_a_training_cancelled_while_running_stops_and_stores_nothing(ml, alice, sent, monkeypatch):
    version = services.training_start(ml_strategy=ml)
    original = training._Progress.__call__
    calls = {"n": 0}

    def cancel_on_the_first_fold(self: Any, fraction: float, stage: str, **kwargs: Any) -> None:
        calls["n"] += 1
        if stage.startswith("Fold 1"):
            services.training_cancel(version=fresh(version), actor=alice)
        original(self, fraction, stage, **kwargs)

    monkeypatch.setattr(training._Progress, "__call__", cancel_on_the_first_fold)

    services.training_run(version_id=version.pk)

    stopped = fresh(version)
    assert stopped.status == "cancelled" and stopped.artifact_sha256 == "" and stopped.metrics == {}
    ml.refresh_from_db()
    assert ml.promoted_version is None


def test_the_reaper_fails_a_training_whose_worker_died(ml, settings):
    settings.ML_TRAIN_TIME_LIMIT_SECONDS = 600
    stale = ModelVersion.objects.create(ml_strategy=ml, owner=ml.owner, number=1, status="running")
    ModelVersion.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(seconds=600 + 61))
    other = services.ml_strategy_create(owner=ml.owner, data=config(ml.instruments.get(), name="Other"))
    alive = ModelVersion.objects.create(ml_strategy=other, owner=ml.owner, number=1, status="running")

    assert services.training_reap() == 1

    assert fresh(stale).status == "failed" and "stopped" in fresh(stale).error
    assert fresh(alive).status == "running"
    assert AuditEvent.objects.filter(action="ml.training.failed", target_id=str(stale.pk)).exists()


@pytest.mark.parametrize("embedded", [True, False])
def test_the_reaper_resends_a_lost_queued_training_in_embedded_mode_only(ml, sent, settings, embedded):
    settings.EMBEDDED = embedded
    version = services.training_start(ml_strategy=ml)
    ModelVersion.objects.filter(pk=version.pk).update(updated_at=timezone.now() - timedelta(seconds=601))

    services.training_reap()
    services.training_reap()  # the heartbeat was bumped: not again at once

    assert sent.versions == ([version.pk] if embedded else [])
    assert fresh(version).status == "queued"


def test_the_progress_callback_fails_a_training_past_the_time_limit(ml, sent, settings):
    settings.ML_TRAIN_TIME_LIMIT_SECONDS = 60
    version = services.training_start(ml_strategy=ml)
    claimed_at = timezone.now() - timedelta(seconds=61)
    ModelVersion.objects.filter(pk=version.pk).update(status="running", started_at=claimed_at)
    progress = training._Progress(fresh(version))

    with pytest.raises(training.TrainingStopped):
        progress(0.5, "Fold 1 of 3")

    assert fresh(version).status == "failed"
    assert fresh(version).error == "The training took longer than the time limit (60 s)."


def test_the_task_settings(settings):
    assert tasks.ml_train.acks_late is True
    assert tasks.ml_train.soft_time_limit == settings.ML_TRAIN_TIME_LIMIT_SECONDS < tasks.ml_train.time_limit
    # a running training is never handed to a second worker: the hard limit ends it first
    assert tasks.ml_train.time_limit < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert settings.CELERY_TASK_ROUTES["apps.ml.tasks.*"] == {"queue": "ml"}
    reaper = settings.CELERY_BEAT_SCHEDULE["ml-trainings-reap"]
    assert reaper["task"] == tasks.training_reap.name and reaper["options"]["queue"] == "default"
    drift = settings.CELERY_BEAT_SCHEDULE["ml-drift-check"]
    assert drift["task"] == tasks.drift_check_all.name
    assert drift["schedule"] == timedelta(minutes=settings.ML_DRIFT_CHECK_MINUTES)


def test_a_model_file_that_does_not_load_back_fails_the_training_and_keeps_the_promoted_version(ml, sent, monkeypatch):
    first = services.training_run_now(ml_strategy=ml, trigger="manual")
    real_dumps = training.bundle_dumps

    def damaged_on_the_way(bundle: Any) -> tuple[bytes, str]:
        """The bytes stored are not the bytes hashed (a storage fault)."""
        data, sha256 = real_dumps(bundle)
        return data[:-1] + bytes([data[-1] ^ 0xFF]), sha256

    monkeypatch.setattr(training, "bundle_dumps", damaged_on_the_way)

    failed = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert failed.status == "failed"
    assert failed.error == "artifact: The model file is corrupt (hash mismatch)."
    assert failed.artifact is None and failed.artifact_sha256 == "" and failed.metrics == {}
    ml.refresh_from_db()
    assert ml.promoted_version_id == first.pk and fresh(first).status == "promoted"
