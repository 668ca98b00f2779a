"""Drift: are the live features still distributed as the promoted model's training data?

`drift_check` builds the promoted version's features over the newest ``drift_window`` bars of the
ML strategy's first instrument (with the warm-up bars before them, so every feature is settled),
and compares each feature's distribution with the version's training reference
(``apps.ml.pipeline.drift.psi``: the population stability index per feature, over the training
deciles). A DriftCheck row keeps the PSI per feature and the largest; the largest at or above the
strategy's ``drift_threshold`` is drift: the owner is notified (DRIFT_DETECTED, with the worst
features) when it is news (the version's previous check was calm, or a retrain starts now; not
on every hourly check of a market that stays drifted), ``ml.drift`` goes to their pages, and
with ``retrain_on_drift`` a training starts
(trigger "drift") unless one is active or a drift retrain started in the last
ML_DRIFT_RETRAIN_COOLDOWN_HOURS (a market that moved for good would otherwise retrain every
check); the check links the training it started.

``as_of`` measures the window ending at that bar instead of the newest: a historical check (the
demo seeds a drift history with it) records the row only, with no notification and no retrain.
A window with fewer than half its bars stored is skipped (logged), and so is a strategy without
a promoted version. `drift_check_all` (beat, every ML_DRIFT_CHECK_MINUTES) checks every ML
strategy with a promoted version, deployed or not.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.common.broadcast import broadcast
from apps.common.errors import ApplicationError
from apps.marketdata import timeframes
from apps.marketdata.storage import candles_frame
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.ml.pipeline.drift import psi
from apps.ml.pipeline.features import features_build, features_warmup

logger = logging.getLogger(__name__)

WORST_SHOWN = 3


def drift_payload(check: DriftCheck) -> dict[str, Any]:
    return {
        "ml_strategy": check.ml_strategy_id,
        "check": check.pk,
        "max_psi": round(float(check.max_psi), 6),
        "is_drift": bool(check.is_drift),
    }


def _worst(values: dict[str, float], count: int = WORST_SHOWN) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: item[1], reverse=True)[:count]


def _window(ml_strategy: MLStrategy, version: ModelVersion, as_of: datetime | None) -> tuple[Any, Any] | None:
    """(features of the window, its candles), or None when too few bars are stored."""
    config = version.config or {}
    instruments = config.get("instruments") or []
    if not instruments:
        return None
    timeframe = str(config.get("timeframe") or ml_strategy.timeframe)
    higher = str(config.get("higher_timeframe") or "")
    features = list(config.get("features") or [])
    warmup = int(features_warmup(features, timeframe=timeframe, higher_timeframe=higher))
    window = int(ml_strategy.drift_window)
    end = None if as_of is None else as_of + timeframes.delta(timeframe)
    candles = candles_frame(int(instruments[0]["id"]), timeframe, end=end, limit=window + warmup)
    # Bars of the window whose features are settled (the warm-up before them is stored too).
    have = min(max(len(candles) - warmup, 0), window)
    if have < window / 2 or have == 0:
        logger.info(
            "ml strategy %s: drift check skipped, %d of the %d window bars are stored", ml_strategy.pk, have, window
        )
        return None
    frame = features_build(candles, features, timeframe=timeframe, higher_timeframe=higher)
    return frame.iloc[-have:], candles.iloc[-have:]


def drift_check(*, ml_strategy: MLStrategy, as_of: datetime | None = None) -> DriftCheck | None:
    """Measure the promoted version's drift now (or at ``as_of``) and act on it (see the module
    docstring). None when skipped."""
    ml_strategy = MLStrategy.objects.select_related("owner").get(pk=ml_strategy.pk)
    if ml_strategy.promoted_version_id is None:
        return None
    version = ModelVersion.objects.defer("artifact").get(pk=ml_strategy.promoted_version_id)
    if not version.reference:
        logger.info("ml strategy %s: v%s has no drift reference", ml_strategy.pk, version.number)
        return None
    window = _window(ml_strategy, version, as_of)
    if window is None:
        return None
    features, candles = window
    values = {name: float(value) for name, value in psi(version.reference, features).items()}
    finite = [value for value in values.values() if np.isfinite(value)]
    max_psi = float(max(finite)) if finite else 0.0
    is_drift = max_psi >= float(ml_strategy.drift_threshold)
    with transaction.atomic():
        check = DriftCheck.objects.create(
            ml_strategy=ml_strategy,
            version=version,
            checked_at=as_of if as_of is not None else timezone.now(),
            window_start=candles.index[0].to_pydatetime(),
            window_end=candles.index[-1].to_pydatetime(),
            n_bars=len(candles),
            psi={name: (round(value, 6) if np.isfinite(value) else None) for name, value in values.items()},
            max_psi=max_psi,
            is_drift=is_drift,
        )
        if as_of is None:
            broadcast(int(ml_strategy.owner_id), "ml.drift", drift_payload(check))
            if is_drift:
                was_drifting = (
                    DriftCheck.objects.filter(version=version, checked_at__lt=check.checked_at)
                    .order_by("-checked_at")
                    .values_list("is_drift", flat=True)
                    .first()
                )
                _act(ml_strategy, version, check, values, was_drifting=bool(was_drifting))
    return check


def _act(
    ml_strategy: MLStrategy, version: ModelVersion, check: DriftCheck, values: dict[str, float], *, was_drifting: bool
) -> None:
    """Retrain (within the cooldown rule), and tell the owner when the drift is news: the
    previous check of this version was calm, or a retrain started now. A market that stays
    drifted is checked every hour; one alert, not one per check."""
    from apps.audit.services import audit_record
    from apps.notifications.models import Event
    from apps.notifications.services import notify

    worst = _worst({k: v for k, v in values.items() if np.isfinite(v)})
    listed = ", ".join(f"{name} {value:.2f}" for name, value in worst)
    retrain = _retrain(ml_strategy) if ml_strategy.retrain_on_drift else None
    if retrain is not None:
        check.retrain = retrain
        check.save(update_fields=["retrain", "updated_at"])
    if was_drifting and retrain is None:
        logger.info("ml strategy %s still drifted (max PSI %.3f): already reported", ml_strategy.pk, check.max_psi)
        return
    audit_record(
        action="ml.drift.detected",
        user=ml_strategy.owner,
        target=check,
        details={
            "ml_strategy": ml_strategy.pk,
            "version": version.number,
            "max_psi": round(check.max_psi, 6),
            "worst": [name for name, _ in worst],
            "retrain": retrain.number if retrain is not None else None,
        },
    )
    then = f" Retraining started (v{retrain.number})." if retrain is not None else ""
    try:
        notify(
            user_id=int(ml_strategy.owner_id),
            event=Event.DRIFT_DETECTED,
            title=f"{ml_strategy.name}: the live data drifted from v{version.number}'s training data",
            body=(
                f"Largest PSI {check.max_psi:.2f} (threshold {ml_strategy.drift_threshold:g}); "
                f"worst features: {listed}.{then}"
            ),
            data={
                "ml_strategy": ml_strategy.pk,
                "version": version.pk,
                "check": check.pk,
                "max_psi": round(check.max_psi, 6),
                "worst": [{"feature": name, "psi": round(value, 6)} for name, value in worst],
                "retrain": retrain.pk if retrain is not None else None,
            },
            dedupe_key=f"ml.drift:{check.pk}",
        )
    except Exception:
        logger.exception("notifying drift check %s failed", check.pk)


def _retrain(ml_strategy: MLStrategy) -> ModelVersion | None:
    """A drift retrain, unless a training is active or one started within the cooldown."""
    from apps.ml.services.training import training_start

    if ModelVersion.objects.filter(ml_strategy=ml_strategy, status__in=ModelVersion.ACTIVE).exists():
        logger.info("ml strategy %s drifted: a training is already active", ml_strategy.pk)
        return None
    cooldown = timezone.now() - timedelta(hours=float(settings.ML_DRIFT_RETRAIN_COOLDOWN_HOURS))
    recent = ModelVersion.objects.filter(
        ml_strategy=ml_strategy, trigger=ModelVersion.Trigger.DRIFT, created_at__gte=cooldown
    )
    if recent.exists():
        logger.info("ml strategy %s drifted: a drift retrain started within the cooldown", ml_strategy.pk)
        return None
    try:
        return training_start(ml_strategy=ml_strategy, trigger=ModelVersion.Trigger.DRIFT)
    except ApplicationError as exc:
        logger.info("ml strategy %s drifted, retrain not started: %s", ml_strategy.pk, exc.message)
        return None


def drift_check_all() -> int:
    """Check every ML strategy with a promoted version; returns how many checks were recorded.
    One strategy failing (its candles unreadable, say) is logged and the rest carry on."""
    recorded = 0
    ids = MLStrategy.objects.filter(promoted_version__isnull=False).values_list("pk", flat=True)
    for pk in list(ids):
        ml_strategy = MLStrategy.objects.filter(pk=pk).first()
        if ml_strategy is None:
            continue
        try:
            if drift_check(ml_strategy=ml_strategy) is not None:
                recorded += 1
        except Exception:
            logger.exception("drift check of ml strategy %s failed", pk)
    return recorded
