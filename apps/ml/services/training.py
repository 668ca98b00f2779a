"""Training an ML strategy: a ModelVersion's life.

    queued --claim--> running --finish--> promoted | rejected
       |                 |----fail------> failed      (the readable reason in `error`)
       +---cancel--------+----cancel----> cancelled

- `training_start` writes the version (number = the strategy's highest + 1, the configuration
  snapshotted in `config`) with the MLStrategy row locked; the partial unique constraint "one
  queued or running training per ML strategy" turns a race into Conflict. The task
  ``apps.ml.tasks.ml_train`` is sent after commit, on the ``ml`` queue.
- `training_run` (the task's body) claims queued -> running with a conditional UPDATE (a
  redelivered message claims nothing), loads each instrument's newest ``history_bars`` candles,
  and calls the pipeline's `train` with a progress callback. Each progress step is a conditional
  UPDATE too (only while running; it bumps `updated_at`, the heartbeat); when it matches nothing
  the training was cancelled or reaped meanwhile and the run stops without touching the row.
- Finishing locks the MLStrategy row, then the version (still running, or the result is
  dropped), stores the artifact with its SHA-256, the metrics, folds, the out-of-sample
  backtest, importances, the drift reference, data range and library versions, and decides:
  nothing promoted yet -> promote; else promote only when it beats the promoted version's
  ``promotion_metric`` by more than ``promotion_margin`` (registry.versions_compare), otherwise
  ``rejected`` with the comparison. All in one transaction.
- Any failure (bad configuration or data: MLInputError, prefixed with its field; a model file
  that does not load back as stored, ``artifact: ...``; any exception) marks the version failed
  with the reason; the promoted version is untouched. Everything is audited
  (``ml.training.started`` / ``.failed`` / ``.cancelled``, ``ml.version.promoted`` /
  ``.rejected``) and announced (``ml.progress``, ``ml.version``).
- `training_reap` (beat) fails running trainings without a heartbeat for longer than the time
  limit (their worker died) and, in embedded mode, re-sends queued ones whose message was lost.
"""

import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from apps.audit.services import audit_record
from apps.backtests.services.jobs import json_safe
from apps.common.errors import ApplicationError, Conflict, NotFound
from apps.marketdata.storage import candles_frame
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.bundle import bundle_dumps, bundle_loads
from apps.ml.pipeline.errors import ml_error
from apps.ml.pipeline.training import TrainConfig, TrainResult, train
from apps.ml.services.registry import promote_locked, version_announce, versions_compare
from apps.ml.services.strategies import error_text
from apps.users.models import User

logger = logging.getLogger(__name__)

ERROR_MAX_LENGTH = 4000
STAGE_MAX_LENGTH = 120
# Phases of a training on the progress bar: loading candles, the pipeline, storing.
_LOADED, _TRAINED = 0.05, 0.95
# A progress write at most every this much of the bar or these seconds (unless the stage changes).
_PROGRESS_STEP = 0.02
_PROGRESS_SECONDS = 5.0


class TrainingStopped(Exception):
    """The training is no longer running (cancelled, or failed by the reaper): stop quietly."""


def _enqueue(version_id: int) -> None:
    from apps.ml import tasks

    tasks.ml_train.delay(version_id)


def config_snapshot(ml_strategy: MLStrategy) -> dict[str, Any]:
    """What a version is trained with: the ML strategy's configuration now."""
    instruments = [{"id": i.pk, "symbol": i.symbol, "venue": i.venue} for i in ml_strategy.instruments.order_by("pk")]
    return {
        "features": list(ml_strategy.features),
        "label": dict(ml_strategy.label),
        "model_kind": ml_strategy.model_kind,
        "model_params": dict(ml_strategy.model_params or {}),
        "decision": dict(ml_strategy.decision),
        "validation": dict(ml_strategy.validation),
        "seed": int(ml_strategy.seed),
        "timeframe": ml_strategy.timeframe,
        "higher_timeframe": ml_strategy.higher_timeframe,
        "instruments": instruments,
        "promotion_metric": ml_strategy.promotion_metric,
        "promotion_margin": float(ml_strategy.promotion_margin),
    }


def train_config(config: dict[str, Any]) -> TrainConfig:
    """The pipeline's TrainConfig of a version's configuration snapshot (it reads the keys it
    uses: features, label, model, decision, ``validation.n_splits`` / ``embargo``, seed and the
    timeframes; instruments and history_bars are this app's)."""
    return TrainConfig.from_dict(config)


# --- start --------------------------------------------------------------------------------------


def _start(*, ml_strategy: MLStrategy, trigger: str, requested_by: User | None, enqueue: bool) -> ModelVersion:
    if trigger not in ModelVersion.Trigger.values:
        raise ValueError(f"unknown training trigger {trigger!r}")
    with transaction.atomic():
        locked = MLStrategy.objects.select_for_update(of=("self",)).select_related("owner").get(pk=ml_strategy.pk)
        active = ModelVersion.objects.filter(ml_strategy=locked, status__in=ModelVersion.ACTIVE).first()
        if active is not None:
            raise Conflict(
                f"A training is already queued or running (v{active.number}): wait for it to finish or cancel it.",
                code="training_active",
            )
        number = (ModelVersion.objects.filter(ml_strategy=locked).aggregate(top=Max("number"))["top"] or 0) + 1
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    ml_strategy=locked,
                    owner=locked.owner,
                    number=number,
                    trigger=trigger,
                    requested_by=requested_by,
                    config=config_snapshot(locked),
                    stage="Queued",
                )
        except IntegrityError:
            # Another request got its training in first (the partial unique constraint decided).
            raise Conflict(
                "A training is already queued or running: wait for it to finish.", code="training_active"
            ) from None
        audit_record(
            action="ml.training.started",
            actor=requested_by,
            user=locked.owner,
            target=version,
            details={"ml_strategy": locked.pk, "number": number, "trigger": trigger},
        )
        version_announce(version)
        if enqueue:
            transaction.on_commit(partial(_enqueue, version.pk))
    return version


def training_start(
    *, ml_strategy: MLStrategy, trigger: str = "manual", requested_by: User | None = None
) -> ModelVersion:
    """Queue a training of the ML strategy's current configuration (see the module docstring).
    Conflict when one is already queued or running."""
    return _start(ml_strategy=ml_strategy, trigger=trigger, requested_by=requested_by, enqueue=True)


def training_run_now(
    *, ml_strategy: MLStrategy, trigger: str = "demo", requested_by: User | None = None
) -> ModelVersion:
    """Start a training and run it here and now (the demo seed, the ``ml_train`` command).
    Returns the version as it finished: promoted, rejected or failed (with ``error``)."""
    version = _start(ml_strategy=ml_strategy, trigger=trigger, requested_by=requested_by, enqueue=False)
    training_run(version_id=version.pk)
    return ModelVersion.objects.defer("artifact").get(pk=version.pk)


def training_scheduled(*, ml_strategy_id: int) -> ModelVersion | None:
    """The schedule fired: start a training unless one is active (then nothing, logged). A
    schedule left behind by a deleted ML strategy deletes itself."""
    ml_strategy = MLStrategy.objects.filter(pk=ml_strategy_id).first()
    if ml_strategy is None:
        from django_celery_beat.models import PeriodicTask

        from apps.ml.services.schedules import task_name

        PeriodicTask.objects.filter(name=task_name(ml_strategy_id)).delete()
        logger.warning("ml strategy %s is gone: its retraining schedule was deleted", ml_strategy_id)
        return None
    if ModelVersion.objects.filter(ml_strategy=ml_strategy, status__in=ModelVersion.ACTIVE).exists():
        logger.info("ml strategy %s: scheduled retraining skipped, a training is active", ml_strategy_id)
        return None
    try:
        return training_start(ml_strategy=ml_strategy, trigger=ModelVersion.Trigger.SCHEDULE)
    except Conflict:
        logger.info("ml strategy %s: scheduled retraining skipped, a training started meanwhile", ml_strategy_id)
        return None


def training_cancel(*, version: ModelVersion, actor: User | None = None) -> ModelVersion:
    """queued/running -> cancelled (a running training stops at its next progress step and its
    result is dropped). Conflict for a finished one. Audited."""
    with transaction.atomic():
        # The ML strategy first, then the version: the order a finishing training locks them in.
        list(MLStrategy.objects.select_for_update().filter(pk=version.ml_strategy_id).values_list("pk", flat=True))
        locked = ModelVersion.objects.select_for_update().defer("artifact").get(pk=version.pk)
        if actor is not None and actor.pk != locked.owner_id and not actor.is_staff:
            raise NotFound("No such training.")
        if locked.status not in ModelVersion.ACTIVE:
            raise Conflict(f"v{locked.number} has finished ({locked.get_status_display().lower()}).", code="finished")
        now = timezone.now()
        locked.status = ModelVersion.Status.CANCELLED
        locked.finished_at = now
        locked.stage = "Cancelled"
        locked.save(update_fields=["status", "finished_at", "stage", "updated_at"])
        audit_record(
            action="ml.training.cancelled",
            actor=actor,
            user=locked.owner,
            target=locked,
            details={"ml_strategy": locked.ml_strategy_id, "number": locked.number},
        )
        version_announce(locked, full=True)
    return locked


# --- run ----------------------------------------------------------------------------------------


class _Progress:
    """The pipeline's progress callback: throttled conditional UPDATEs (the heartbeat), live
    events, and the time limit (the embedded mode's thread pool ignores Celery's)."""

    def __init__(self, version: ModelVersion) -> None:
        self.version = version
        self.last = -1.0
        self.stage = ""
        self.at = 0.0
        self.started_at = version.started_at or timezone.now()

    def __call__(self, fraction: float, stage: str, *, scale: tuple[float, float] = (_LOADED, _TRAINED)) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        value = scale[0] + (scale[1] - scale[0]) * fraction
        stage = (stage or "")[:STAGE_MAX_LENGTH]
        clock = time.monotonic()
        if stage == self.stage and value - self.last < _PROGRESS_STEP and clock - self.at < _PROGRESS_SECONDS:
            return
        now = timezone.now()
        limit = int(settings.ML_TRAIN_TIME_LIMIT_SECONDS)
        if now - self.started_at > timedelta(seconds=limit):
            _fail(self.version.pk, f"The training took longer than the time limit ({limit} s).")
            raise TrainingStopped
        updated = ModelVersion.objects.filter(pk=self.version.pk, status=ModelVersion.Status.RUNNING).update(
            progress=value, stage=stage, updated_at=now
        )
        if not updated:
            raise TrainingStopped
        self.last, self.stage, self.at = value, stage, clock
        self.version.progress, self.version.stage = value, stage
        version_announce(self.version)


def training_run(*, version_id: int) -> None:
    """Run a queued training to the end (the task's body; see the module docstring). Safe to
    call twice: only the call that claims it runs it. Never raises for a failure of the
    training itself: the version is marked failed with the reason."""
    now = timezone.now()
    claimed = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.QUEUED).update(
        status=ModelVersion.Status.RUNNING,
        started_at=now,
        updated_at=now,
        progress=0.0,
        stage="Loading candles",
        error="",
    )
    if not claimed:
        logger.info("ml training %s not claimed: not queued any more", version_id)
        return
    version = ModelVersion.objects.defer("artifact").get(pk=version_id)
    version_announce(version)
    try:
        _execute(version)
    except TrainingStopped:
        logger.info("ml training %s stopped: no longer running", version_id)
    except SoftTimeLimitExceeded:
        _fail(version_id, f"The training took longer than the time limit ({settings.ML_TRAIN_TIME_LIMIT_SECONDS} s).")
    except ApplicationError as exc:
        # A bad configuration or data (MLInputError, prefixed with its field), a refusal.
        _fail(version_id, error_text(exc))
    except Exception as exc:
        logger.exception("ml training %s failed", version_id)
        text = str(exc).strip()
        _fail(version_id, f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _load(config: dict[str, Any]) -> list[Any]:
    timeframe = config["timeframe"]
    bars = int((config.get("validation") or {}).get("history_bars", 20_000))
    frames = []
    for instrument in config.get("instruments") or []:
        frame = candles_frame(int(instrument["id"]), timeframe, limit=bars)
        if frame.empty:
            raise ml_error(
                f"No {timeframe} candles are stored for {instrument['symbol']} @ {instrument['venue']}.", "history"
            )
        frames.append(frame)
    if not frames:
        raise ml_error("The ML strategy has no instruments to train on.", "history")
    return frames


def _execute(version: ModelVersion) -> None:
    progress = _Progress(version)
    frames = _load(version.config)
    progress(1.0, "Candles loaded", scale=(0.0, _LOADED))
    config = train_config(version.config)
    candles: Any = frames[0] if len(frames) == 1 else frames
    result = train(candles, config, progress=progress)
    progress(0.0, "Storing the model", scale=(_TRAINED, 1.0))
    data, sha256 = bundle_dumps(result.bundle)
    # What is stored must load again (as a tick will load it), or the training fails now with the
    # reason instead of every tick and backtest later.
    bundle_loads(data, sha256)
    _finish(version, result, data, sha256)


def _metrics(result: TrainResult) -> dict[str, Any]:
    """The out-of-sample metrics as stored: the classifier's, plus the OOS backtest's Sharpe,
    return, drawdown and trades, and the base rate (when the pipeline reports them apart)."""
    metrics = dict(result.metrics or {})
    backtest = (result.oos_backtest or {}).get("metrics") or {}
    for key in ("sharpe", "total_return", "max_drawdown", "trades"):
        if key not in metrics and key in backtest:
            metrics[key] = backtest[key]
    if "base_rate" not in metrics and getattr(result, "base_rate", None) is not None:
        metrics["base_rate"] = result.base_rate
    return dict(json_safe(metrics))


def _finish(version: ModelVersion, result: TrainResult, data: bytes, sha256: str) -> None:
    with transaction.atomic():
        ml_strategy = (
            MLStrategy.objects.select_for_update(of=("self",)).select_related("owner").get(pk=version.ml_strategy_id)
        )
        locked = (
            ModelVersion.objects.select_for_update()
            .defer("artifact")
            .filter(pk=version.pk, status=ModelVersion.Status.RUNNING)
            .first()
        )
        if locked is None:
            raise TrainingStopped
        now = timezone.now()
        locked.artifact = data
        locked.artifact_sha256 = sha256
        locked.artifact_size = len(data)
        locked.metrics = _metrics(result)
        locked.folds = json_safe(list(result.folds or []))
        locked.oos_backtest = json_safe(dict(result.oos_backtest or {}))
        locked.feature_importances = json_safe(dict(result.feature_importances or {}))
        locked.reference = json_safe(dict(result.reference or {}))
        locked.data_start = result.data_start
        locked.data_end = result.data_end
        locked.n_samples = int(result.n_samples)
        locked.library_versions = json_safe(dict(result.library_versions or {}))
        locked.progress = 1.0
        locked.finished_at = now
        current = None
        if ml_strategy.promoted_version_id is not None:
            current = ModelVersion.objects.defer("artifact").filter(pk=ml_strategy.promoted_version_id).first()
        comparison = versions_compare(
            metric=ml_strategy.promotion_metric,
            margin=float(ml_strategy.promotion_margin),
            candidate=locked.metrics,
            current=current,
        )
        locked.comparison = comparison
        locked.stage = "Promoted" if comparison["promoted"] else "Rejected"
        locked.status = ModelVersion.Status.REJECTED
        locked.save()
        if comparison["promoted"]:
            promote_locked(
                ml_strategy=ml_strategy, version=locked, how="training", actor=None, reason=comparison["reason"]
            )
        else:
            audit_record(
                action="ml.version.rejected",
                user=ml_strategy.owner,
                target=locked,
                details={"ml_strategy": ml_strategy.pk, "number": locked.number, "comparison": comparison},
            )
            version_announce(locked, full=True)


def _fail(version_id: int, message: str) -> bool:
    """running -> failed with ``message``; False when it was not running any more."""
    message = (message or "The training failed.")[:ERROR_MAX_LENGTH]
    now = timezone.now()
    with transaction.atomic():
        failed = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.RUNNING).update(
            status=ModelVersion.Status.FAILED, error=message, stage="Failed", finished_at=now, updated_at=now
        )
        if failed:
            version = ModelVersion.objects.defer("artifact").select_related("owner").get(pk=version_id)
            audit_record(
                action="ml.training.failed",
                user=version.owner,
                target=version,
                details={"ml_strategy": version.ml_strategy_id, "number": version.number, "error": message[:500]},
            )
            version_announce(version, full=True)
    if failed:
        logger.warning("ml training %s failed: %s", version_id, message)
    return bool(failed)


# --- reaper -------------------------------------------------------------------------------------


def training_reap(*, now: Any = None) -> int:
    """Fail running trainings without a heartbeat for longer than the time limit plus a grace
    (their worker died), and (embedded mode only: its in-memory broker loses messages on a
    restart; Redis keeps them) send again the queued ones older than ML_REQUEUE_SECONDS; the
    claim makes a duplicate harmless. Returns how many were failed."""
    now = now or timezone.now()
    limit = int(settings.ML_TRAIN_TIME_LIMIT_SECONDS)
    stale_before = now - timedelta(seconds=limit + int(settings.ML_REAP_GRACE_SECONDS))
    message = f"The worker running this training stopped: no progress for more than {limit} s. Train it again."
    count = 0
    stale = ModelVersion.objects.filter(status=ModelVersion.Status.RUNNING, updated_at__lt=stale_before)
    for version_id in list(stale.values_list("pk", flat=True)):
        # Conditional again: a heartbeat may have landed since the list was read.
        still = ModelVersion.objects.filter(
            pk=version_id, status=ModelVersion.Status.RUNNING, updated_at__lt=stale_before
        )
        if still.exists() and _fail(version_id, message):
            count += 1
    if count:
        logger.warning("reaped %d stale ml training(s)", count)
    if settings.EMBEDDED:
        requeue_before = now - timedelta(seconds=int(settings.ML_REQUEUE_SECONDS))
        lost = ModelVersion.objects.filter(status=ModelVersion.Status.QUEUED, updated_at__lt=requeue_before)
        for version_id in list(lost.values_list("pk", flat=True)):
            # Bump the heartbeat so the same training is sent again only after another period.
            if ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.QUEUED).update(updated_at=now):
                _enqueue(version_id)
    return count
