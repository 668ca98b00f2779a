"""The model registry: which version of an ML strategy is promoted, and how that changes.

Exactly one version is promoted at a time (``MLStrategy.promoted_version``, and that version's
status ``promoted``); the one it replaced becomes ``retired`` and is remembered on the new one
(``replaced``), so a rollback walks back through the promotions in order. Every change happens
with the MLStrategy row locked (the same lock a finishing training takes), is audited, told to
the owner over the websocket (``ml.version``) and, when the owner did not do it themselves,
as a MODEL_PROMOTED notification. A version is put live only when its model file loads (checked
by hand promotions and rollbacks here, and by a training before it stores its model), and every
promotion raises the fence of the deployments trading the ML strategy, so their next tick
re-plans for the new model (its warm-up may need a longer window of bars).
"""

import logging
import math
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, NotFound
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.bundle import bundle_loads
from apps.ml.pipeline.errors import ModelLoadError
from apps.users.models import User

logger = logging.getLogger(__name__)

METRIC_LABELS = {"auc": "AUC", "log_loss": "Log loss", "accuracy": "Accuracy", "sharpe": "OOS Sharpe"}
LOWER_IS_BETTER = frozenset({"log_loss"})
PROMOTABLE = (ModelVersion.Status.REJECTED, ModelVersion.Status.RETIRED)


def version_payload(version: ModelVersion, *, full: bool = False) -> dict[str, Any]:
    """The live event's data about a version (``ml.progress``; with ``full``, ``ml.version``)."""
    data: dict[str, Any] = {
        "ml_strategy": version.ml_strategy_id,
        "version": version.pk,
        "number": version.number,
        "status": version.status,
        "progress": round(float(version.progress), 4),
        "stage": version.stage,
        "error": version.error,
    }
    if full:
        data["metrics"] = version.metrics
        data["comparison"] = version.comparison
    return data


def version_announce(version: ModelVersion, *, full: bool = False) -> None:
    broadcast(int(version.owner_id), "ml.version" if full else "ml.progress", version_payload(version, full=full))


def _value(metrics: dict[str, Any] | None, metric: str) -> float | None:
    raw = (metrics or {}).get(metric)
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def versions_compare(
    *, metric: str, margin: float, candidate: dict[str, Any], current: ModelVersion | None
) -> dict[str, Any]:
    """Whether a candidate's out-of-sample ``metric`` beats the promoted version's by more than
    ``margin`` (log loss: lower is better), with a sentence saying why."""
    label = METRIC_LABELS.get(metric, metric)
    mine = _value(candidate, metric)
    result: dict[str, Any] = {
        "metric": metric,
        "candidate": mine,
        "current": None,
        "current_version": None,
        "margin": float(margin),
    }
    if current is None:
        return {
            **result,
            "promoted": True,
            "reason": "No version was promoted yet: the first trained model is promoted.",
        }
    theirs = _value(current.metrics, metric)
    result.update(current=theirs, current_version=current.number)
    if mine is None:
        return {
            **result,
            "promoted": False,
            "reason": f"The candidate has no {label} to compare with v{current.number}'s.",
        }
    if theirs is None:
        return {
            **result,
            "promoted": True,
            "reason": f"v{current.number} has no {label}; the candidate's {mine:.4f} replaces it.",
        }
    lower = metric in LOWER_IS_BETTER
    improvement = (theirs - mine) if lower else (mine - theirs)
    if improvement > margin:
        verb = "is lower than" if lower else "beats"
        reason = f"{label} {mine:.4f} {verb} v{current.number}'s {theirs:.4f} by more than the margin {margin:.4f}"
        return {**result, "promoted": True, "reason": reason}
    verb = "is not lower than" if lower else "does not beat"
    reason = f"{label} {mine:.4f} {verb} v{current.number}'s {theirs:.4f} by the margin {margin:.4f}"
    return {**result, "promoted": False, "reason": reason}


def _current(ml_strategy: MLStrategy) -> ModelVersion | None:
    if ml_strategy.promoted_version_id is None:
        return None
    return ModelVersion.objects.defer("artifact").filter(pk=ml_strategy.promoted_version_id).first()


def promote_locked(
    *, ml_strategy: MLStrategy, version: ModelVersion, how: str, actor: User | None, reason: str = ""
) -> ModelVersion:
    """Make ``version`` the promoted one. Call inside a transaction holding the MLStrategy row
    lock (``ml_strategy`` is that locked row). ``how``: "training" (a candidate that won its
    comparison), "manual" (an owner or operator), "rollback" (keeps the version's own
    ``replaced``, so rolling back again goes further back). Audits, announces and notifies."""
    previous = _current(ml_strategy)
    now = timezone.now()
    if previous is not None and previous.pk != version.pk:
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.RETIRED, updated_at=now)
    version.status = ModelVersion.Status.PROMOTED
    version.promoted_at = now
    fields = ["status", "promoted_at", "updated_at"]
    if how != "rollback" and previous is not None and previous.pk != version.pk:
        version.replaced = previous
        fields.append("replaced")
    version.save(update_fields=fields)
    ml_strategy.promoted_version = version
    ml_strategy.save(update_fields=["promoted_version", "updated_at"])
    _deployments_refresh(ml_strategy.pk)
    audit_record(
        action="ml.version.rolled_back" if how == "rollback" else "ml.version.promoted",
        actor=actor,
        user=ml_strategy.owner,
        target=version,
        details={
            "ml_strategy": ml_strategy.pk,
            "number": version.number,
            "previous": previous.number if previous is not None else None,
            "how": how,
            "reason": reason[:500],
        },
    )
    if how == "training" or actor is None or getattr(actor, "pk", None) != ml_strategy.owner_id:
        _notify_promoted(ml_strategy, version, previous, reason, how)
    version_announce(version, full=True)
    if previous is not None and previous.pk != version.pk:
        previous.status = ModelVersion.Status.RETIRED
        version_announce(previous, full=True)
    logger.info(
        "ml strategy %s: v%s promoted (%s), previous %s",
        ml_strategy.pk,
        version.number,
        how,
        previous.number if previous else None,
    )
    return version


def _deployments_refresh(ml_strategy_id: int) -> None:
    """Raise the fence of the deployments trading this ML strategy. A tick reuses its plan (the
    strategy and the window of bars it reads, sized by the model's warm-up) while the fence is
    unchanged; a promotion changes the model, and a new model with a longer warm-up read
    through the old, shorter window would predict nothing at all. Row locks after the
    MLStrategy's: a tick holds its deployment's lock but never takes the MLStrategy's."""
    from apps.strategies.models import Deployment

    Deployment.objects.filter(strategy_key="ml", params__model=ml_strategy_id).update(fence=F("fence") + 1)


def _notify_promoted(
    ml_strategy: MLStrategy, version: ModelVersion, previous: ModelVersion | None, reason: str, how: str
) -> None:
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    replaced = f" (replacing v{previous.number})" if previous is not None and previous.pk != version.pk else ""
    what = {"training": "promoted", "manual": "promoted by an operator", "rollback": "restored by a rollback"}
    try:
        notify(
            user_id=int(ml_strategy.owner_id),
            event=Event.MODEL_PROMOTED,
            title=f"{ml_strategy.name}: v{version.number} {what.get(how, 'promoted')}{replaced}",
            body=reason or "Deployments of this ML strategy trade the new version from their next tick.",
            data={"ml_strategy": ml_strategy.pk, "version": version.pk, "number": version.number, "how": how},
            dedupe_key=f"ml.promoted:{version.pk}:{int(version.promoted_at.timestamp()) if version.promoted_at else 0}",
        )
    except Exception:
        # The promotion is what matters; notify runs in a savepoint, so its failure undoes nothing.
        logger.exception("notifying the promotion of ml version %s failed", version.pk)


def _check_actor(ml_strategy: MLStrategy, actor: User | None) -> None:
    if actor is not None and actor.pk != ml_strategy.owner_id and not actor.is_staff:
        raise NotFound("No such ML strategy.")


def assert_loads(version: ModelVersion, *, what: str) -> None:
    """Refuse (ModelLoadError, field ``artifact``, the reason prefixed with ``what``) a version
    whose model file is missing, does not match its SHA-256 or does not unpickle: put live, it
    would fail every tick and backtest. Reads (and unpickles, after the hash check) the file."""
    data = ModelVersion.objects.filter(pk=version.pk).values_list("artifact", flat=True).first()
    try:
        if not data:
            raise ModelLoadError("The model file is missing.")
        bundle_loads(bytes(data), version.artifact_sha256)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{what}: {exc.message}") from exc


def version_promote(*, version: ModelVersion, actor: User | None, reason: str = "") -> ModelVersion:
    """Promote a rejected or retired version by hand (its owner, or staff). Conflict for a
    version that is promoted already, still training, failed or cancelled (it has no model);
    ModelLoadError (``artifact``) when its model file does not load. Audited as
    ``ml.version.promoted`` (how: manual)."""
    with transaction.atomic():
        ml_strategy = (
            MLStrategy.objects.select_for_update(of=("self",)).select_related("owner").get(pk=version.ml_strategy_id)
        )
        _check_actor(ml_strategy, actor)
        locked = ModelVersion.objects.select_for_update().defer("artifact").get(pk=version.pk)
        if locked.status == ModelVersion.Status.PROMOTED:
            raise Conflict(f"v{locked.number} is the promoted version already.", code="already_promoted")
        if locked.status not in PROMOTABLE or not locked.artifact_sha256:
            raise Conflict(
                f"v{locked.number} is {locked.get_status_display().lower()}: only a rejected or retired version "
                "with a trained model can be promoted.",
                code="not_promotable",
            )
        assert_loads(locked, what=f"v{locked.number} cannot be promoted")
        text = reason.strip() or f"v{locked.number} promoted by hand."
        promote_locked(ml_strategy=ml_strategy, version=locked, how="manual", actor=actor, reason=text)
    return locked


def version_rollback(*, ml_strategy: MLStrategy, actor: User | None) -> ModelVersion:
    """Promote again the version the promoted one replaced; the promoted one is retired.
    Conflict when nothing is promoted or it replaced nothing (or that version lost its model);
    ModelLoadError (``artifact``) when that version's model file does not load. Audited as
    ``ml.version.rolled_back``."""
    with transaction.atomic():
        locked = MLStrategy.objects.select_for_update(of=("self",)).select_related("owner").get(pk=ml_strategy.pk)
        _check_actor(locked, actor)
        current = _current(locked)
        if current is None:
            raise Conflict("Nothing is promoted yet: there is nothing to roll back.", code="nothing_promoted")
        target = (
            ModelVersion.objects.select_for_update().defer("artifact").filter(pk=current.replaced_id).first()
            if current.replaced_id
            else None
        )
        if target is None or target.status != ModelVersion.Status.RETIRED or not target.artifact_sha256:
            raise Conflict(
                f"v{current.number} did not replace an earlier promoted version: there is nothing to roll back to.",
                code="no_previous_version",
            )
        assert_loads(target, what=f"Cannot roll back to v{target.number}")
        reason = f"Rolled back from v{current.number} to v{target.number}."
        promote_locked(ml_strategy=locked, version=target, how="rollback", actor=actor, reason=reason)
    ml_strategy.promoted_version = target
    return target
