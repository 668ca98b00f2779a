"""ML strategies: create, update, delete, with every input validated and named.

Input is a mapping with the keys of ``FIELDS`` (the API's body, the portal form's cleaned data).
Nested keys are named ``label.horizon``, ``decision.threshold``, ``validation.n_splits``,
``model_params.max_iter``, ``schedule.cron`` in errors. Every problem of one request is reported
at once (``extra["fields"]`` holds one message per field) and nothing is stored.

Update is partial: a key not given keeps its value. The nested objects ``label``, ``decision``
and ``validation`` merge key by key; ``model_params`` is replaced as a whole (and reset to the
family's defaults when ``model_kind`` changes without new params: another family's parameters
mean nothing to it). The instruments and the timeframes cannot change once a version exists:
its model, its data range and its drift reference belong to them.
"""

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.common.errors import ApplicationError, Conflict, ValidationFailed
from apps.marketdata import timeframes
from apps.marketdata.models import Candle, Instrument
from apps.ml.models import MLStrategy
from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.estimators import MODEL_KINDS, model_params_validate
from apps.ml.pipeline.features import DEFAULT_FEATURES, features_validate, features_warmup
from apps.ml.pipeline.labels import LabelSpec
from apps.strategies.services.ticks import WINDOW_MAX as TICK_WINDOW_MAX
from apps.users.models import User

FIELDS = (
    "name",
    "description",
    "instrument_ids",
    "timeframe",
    "higher_timeframe",
    "features",
    "label",
    "model_kind",
    "model_params",
    "decision",
    "validation",
    "seed",
    "promotion_metric",
    "promotion_margin",
    "drift_threshold",
    "drift_window",
    "retrain_on_drift",
    "schedule",
)
FIXED_ONCE_TRAINED = ("instrument_ids", "timeframe", "higher_timeframe")
NAME_MAX = 120
DESCRIPTION_MAX = 5000
MAX_INSTRUMENTS = 10
DECISION_KEYS = ("threshold", "exit_threshold", "allow_short")
VALIDATION_KEYS = ("n_splits", "embargo", "history_bars")
# Bounds of the walk-forward validation: enough folds to mean something, few enough to train in time.
N_SPLITS = (2, 20)
EMBARGO = (0, 10_000)
HISTORY_BARS = (500, 1_000_000)
DRIFT_WINDOW = (50, 100_000)
DRIFT_THRESHOLD = (0.01, 10.0)
PROMOTION_MARGIN = (0.0, 1.0)
SEED_MAX = 2**31 - 1
# Top-level numbers: (lowest, highest, whole number?, what the message calls it).
SCALARS: dict[str, tuple[float, float, bool, str]] = {
    "seed": (0, SEED_MAX, True, "The seed"),
    "promotion_margin": (*PROMOTION_MARGIN, False, "The promotion margin"),
    "drift_threshold": (*DRIFT_THRESHOLD, False, "The drift threshold (PSI)"),
    "drift_window": (*DRIFT_WINDOW, True, "The drift window"),
}


class Problems:
    """Field errors collected over one request, raised together."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)

    def check[T](self, field: str, call: Callable[[], T]) -> T | None:
        """``call()``, or None with its ValidationFailed's field errors recorded (under ``field``
        when the error names none)."""
        try:
            return call()
        except ValidationFailed as exc:
            named = (exc.extra or {}).get("fields") or {}
            if not named:
                self.add(field, exc.message)
            for name, messages in named.items():
                for message in messages if isinstance(messages, list) else [messages]:
                    self.add(str(name), str(message))
            return None

    def raise_any(self) -> None:
        if self.fields:
            first = next(iter(self.fields.values()))[0]
            raise ValidationFailed(first, code="ml_invalid", extra={"fields": self.fields})


def _error(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, code="ml_invalid", extra={"fields": {field: [message]}})


# --- scalar checks ------------------------------------------------------------------------------


def number(value: Any, field: str, *, low: float, high: float, integer: bool, what: str) -> Any:
    """An int (``integer``) or float in [low, high] from a JSON number or a numeric string."""
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or value is None or value == "":
        raise _error(f"{what} must be {kind}.", field)
    try:
        parsed = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise _error(f"{what} must be {kind}.", field) from None
    if isinstance(parsed, float) and (not math.isfinite(parsed) or (integer and not parsed.is_integer())):
        raise _error(f"{what} must be {kind}.", field)
    result = int(parsed) if integer else float(parsed)
    if not low <= result <= high:
        shown = (f"{low:g}", f"{high:g}") if not integer else (f"{int(low):,}", f"{int(high):,}")
        raise _error(f"{what} must be between {shown[0]} and {shown[1]}.", field)
    return result


def boolean(value: Any, field: str, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "on", "yes", "false", "0", "off", "no", ""}:
        return value.strip().lower() in {"true", "1", "on", "yes"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _error(f"{what} must be true or false.", field)


def _mapping(value: Any, field: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _error(f"{what} must be an object.", field)
    return value


def _unknown(value: Mapping[str, Any], known: Iterable[str], prefix: str) -> None:
    known = tuple(known)
    for key in value:
        if key not in known:
            raise _error(f"Unknown setting; this takes: {', '.join(known)}.", f"{prefix}.{key}")


# --- field checks -------------------------------------------------------------------------------


def _name(value: Any, owner: User, current: MLStrategy | None) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        raise _error("Give the ML strategy a name.", "name")
    if len(name) > NAME_MAX:
        raise _error(f"Keep the name under {NAME_MAX} characters.", "name")
    taken = MLStrategy.objects.filter(owner=owner, name=name)
    if current is not None:
        taken = taken.exclude(pk=current.pk)
    if taken.exists():
        raise _error(f"You already have an ML strategy called “{name}”.", "name")
    return name


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _error("The description is text.", "description")
    if len(value) > DESCRIPTION_MAX:
        raise _error(f"Keep the description under {DESCRIPTION_MAX:,} characters.", "description")
    return value.strip()


def _timeframe(value: Any) -> str:
    if not isinstance(value, str) or value not in timeframes.TIMEFRAMES:
        raise _error(f"Choose a timeframe: {', '.join(timeframes.TIMEFRAMES)}.", "timeframe")
    return value


def _higher_timeframe(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or value not in timeframes.TIMEFRAMES:
        raise _error(f"Choose a higher timeframe ({', '.join(timeframes.TIMEFRAMES)}) or none.", "higher_timeframe")
    return value


def _instruments(value: Any) -> list[Instrument]:
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _error("Choose at least one instrument.", "instrument_ids")
    try:
        ids = list(dict.fromkeys(int(i) for i in value if not isinstance(i, bool)))
    except (TypeError, ValueError):
        raise _error("Instruments are given by their ids.", "instrument_ids") from None
    if not ids:
        raise _error("Choose at least one instrument.", "instrument_ids")
    if len(ids) > MAX_INSTRUMENTS:
        raise _error(f"At most {MAX_INSTRUMENTS} instruments per ML strategy.", "instrument_ids")
    found = {i.pk: i for i in Instrument.objects.filter(pk__in=ids, is_active=True)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise _error(f"There is no instrument {missing[0]}.", "instrument_ids")
    return [found[i] for i in ids]


def _candles_stored(instruments: list[Instrument], timeframe: str) -> None:
    for instrument in instruments:
        if not Candle.objects.filter(instrument_id=instrument.pk, timeframe=timeframe).exists():
            raise _error(
                f"No {timeframe} candles are stored for {instrument}: import or backfill them first, "
                "or choose another timeframe.",
                "instrument_ids",
            )


def _features(value: Any, timeframe: str, higher_timeframe: str) -> list[str]:
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _error("Choose the features from the catalogue (a list of names).", "features")
    names = list(value)
    if not all(isinstance(name, str) for name in names):
        raise _error("Features are given by their names.", "features")
    chosen = list(features_validate(names, timeframe=timeframe, higher_timeframe=higher_timeframe))
    # A deployment's tick computes the features on a window of at most WINDOW_MAX bars; a feature
    # set that needs more warm-up than that would never give a live signal.
    warmup = features_warmup(chosen, timeframe=timeframe, higher_timeframe=higher_timeframe)
    if warmup > TICK_WINDOW_MAX:
        raise _error(
            f"These features need {warmup:,} {timeframe} bars of warm-up (the higher-timeframe RSI, MACD and "
            f"ATR settle slowly), more than the {TICK_WINDOW_MAX:,} a live tick reads. Choose a higher "
            "timeframe closer to the base one, or leave those higher-timeframe features out.",
            "features",
        )
    return chosen


def _label(value: Any) -> dict[str, Any]:
    spec = LabelSpec.from_dict(dict(_mapping(value, "label", "The label")))
    return dict(spec.as_dict())


def _model_kind(value: Any) -> str:
    if value not in MODEL_KINDS:
        raise _error(f"Choose a model: {', '.join(MODEL_KINDS)}.", "model_kind")
    return str(value)


def _model_params(kind: str, value: Any) -> dict[str, Any]:
    params = _mapping(value if value is not None else {}, "model_params", "The model parameters")
    return dict(model_params_validate(kind, params))


def _decision(value: Any) -> dict[str, Any]:
    data = _mapping(value, "decision", "The decision rule")
    _unknown(data, DECISION_KEYS, "decision")
    threshold = number(
        data.get("threshold", 0.55),
        "decision.threshold",
        low=0.5,
        high=0.99,
        integer=False,
        what="The entry probability",
    )
    exit_threshold = number(
        data.get("exit_threshold", 0.5),
        "decision.exit_threshold",
        low=0.01,
        high=0.99,
        integer=False,
        what="The exit probability",
    )
    if exit_threshold > threshold:
        raise _error(
            f"Exit below a probability no higher than the entry's ({threshold:g}), or every entry exits at once.",
            "decision.exit_threshold",
        )
    allow_short = boolean(data.get("allow_short", False), "decision.allow_short", "Allow short")
    return {"threshold": threshold, "exit_threshold": exit_threshold, "allow_short": allow_short}


def _validation(value: Any) -> dict[str, Any]:
    data = _mapping(value, "validation", "The validation")
    _unknown(data, VALIDATION_KEYS, "validation")
    return {
        "n_splits": number(
            data.get("n_splits", 5),
            "validation.n_splits",
            low=N_SPLITS[0],
            high=N_SPLITS[1],
            integer=True,
            what="Splits",
        ),
        "embargo": number(
            data.get("embargo", 12), "validation.embargo", low=EMBARGO[0], high=EMBARGO[1], integer=True, what="Embargo"
        ),
        "history_bars": number(
            data.get("history_bars", 20_000),
            "validation.history_bars",
            low=HISTORY_BARS[0],
            high=HISTORY_BARS[1],
            integer=True,
            what="History",
        ),
    }


def _metric(value: Any) -> str:
    if value not in MLStrategy.Metric.values:
        raise _error(f"Choose a metric: {', '.join(MLStrategy.Metric.values)}.", "promotion_metric")
    return str(value)


# --- the whole input ----------------------------------------------------------------------------


def ml_strategy_data(ml_strategy: MLStrategy) -> dict[str, Any]:
    """The ML strategy's configuration in the input's shape (what an update merges into)."""
    return {
        "name": ml_strategy.name,
        "description": ml_strategy.description,
        "instrument_ids": list(ml_strategy.instruments.order_by("pk").values_list("pk", flat=True))
        if ml_strategy.pk
        else [],
        "timeframe": ml_strategy.timeframe,
        "higher_timeframe": ml_strategy.higher_timeframe,
        "features": list(ml_strategy.features or []),
        "label": dict(ml_strategy.label or {}),
        "model_kind": ml_strategy.model_kind,
        "model_params": dict(ml_strategy.model_params or {}),
        "decision": dict(ml_strategy.decision or {}),
        "validation": dict(ml_strategy.validation or {}),
        "seed": ml_strategy.seed,
        "promotion_metric": ml_strategy.promotion_metric,
        "promotion_margin": ml_strategy.promotion_margin,
        "drift_threshold": ml_strategy.drift_threshold,
        "drift_window": ml_strategy.drift_window,
        "retrain_on_drift": ml_strategy.retrain_on_drift,
    }


def _defaults() -> dict[str, Any]:
    blank = MLStrategy()
    data = ml_strategy_data(blank)
    data.update({"name": "", "instrument_ids": None, "timeframe": None, "features": list(DEFAULT_FEATURES)})
    return data


def _clean(data: Mapping[str, Any], *, owner: User, current: MLStrategy | None) -> dict[str, Any]:
    """Every field of ``data`` merged over ``current`` (or the defaults) and validated; returns
    the model's field values plus ``instruments`` and (when given) ``schedule``."""
    from apps.ml.services.schedules import schedule_clean

    if not isinstance(data, Mapping):
        raise ValidationFailed("Send the ML strategy as an object of fields.", code="ml_invalid")
    problems = Problems()
    for key in data:
        if key not in FIELDS:
            problems.add(str(key), f"Unknown field; this takes: {', '.join(FIELDS)}.")
    base = _defaults() if current is None else ml_strategy_data(current)
    merged = dict(base)
    for key in FIELDS:
        if key not in data or key == "schedule":
            continue
        if key in ("label", "decision", "validation") and isinstance(data[key], Mapping):
            merged[key] = {**(base.get(key) or {}), **data[key]}
        else:
            merged[key] = data[key]
    if (
        current is not None
        and "model_kind" in data
        and "model_params" not in data
        and data["model_kind"] != base["model_kind"]
    ):
        merged["model_params"] = {}
    if current is not None and current.versions.exists():
        for key in FIXED_ONCE_TRAINED:
            if key in data and _changed(key, data[key], base[key]):
                problems.add(
                    key,
                    "This ML strategy has trained versions: its instruments and timeframes cannot change. "
                    "Create a new ML strategy instead.",
                )

    clean: dict[str, Any] = {}
    clean["name"] = problems.check("name", lambda: _name(merged["name"], owner, current))
    clean["description"] = problems.check("description", lambda: _description(merged["description"]))
    instruments = problems.check("instrument_ids", lambda: _instruments(merged["instrument_ids"]))
    timeframe = problems.check("timeframe", lambda: _timeframe(merged["timeframe"]))
    higher = problems.check("higher_timeframe", lambda: _higher_timeframe(merged["higher_timeframe"]))
    if instruments and timeframe and ("instrument_ids" in data or "timeframe" in data or current is None):
        problems.check("instrument_ids", lambda: _candles_stored(instruments, timeframe))
    if timeframe is not None and higher is not None:
        clean["features"] = problems.check("features", lambda: _features(merged["features"], timeframe, higher))
    clean["label"] = problems.check("label", lambda: _label(merged["label"]))
    kind = problems.check("model_kind", lambda: _model_kind(merged["model_kind"]))
    if kind is not None:
        clean["model_params"] = problems.check("model_params", lambda: _model_params(kind, merged["model_params"]))
    clean["decision"] = problems.check("decision", lambda: _decision(merged["decision"]))
    clean["validation"] = problems.check("validation", lambda: _validation(merged["validation"]))
    for key, (low, high, integer, what) in SCALARS.items():
        clean[key] = problems.check(
            key, partial(number, merged[key], key, low=low, high=high, integer=integer, what=what)
        )
    clean["promotion_metric"] = problems.check("promotion_metric", lambda: _metric(merged["promotion_metric"]))
    clean["retrain_on_drift"] = problems.check(
        "retrain_on_drift", lambda: boolean(merged["retrain_on_drift"], "retrain_on_drift", "Retrain on drift")
    )
    if "schedule" in data:
        clean["schedule"] = problems.check("schedule", lambda: schedule_clean(data["schedule"]))
    problems.raise_any()
    clean["timeframe"], clean["higher_timeframe"], clean["instruments"] = timeframe, higher, instruments
    clean["model_kind"] = kind
    return clean


def _changed(key: str, given: Any, stored: Any) -> bool:
    if key == "instrument_ids":
        try:
            return sorted({int(i) for i in given}) != sorted(stored)
        except (TypeError, ValueError):
            return True
    return (given or "") != (stored or "")


# The MLStrategy's own columns among the inputs (instruments are a relation, the schedule a task).
MODEL_FIELDS = tuple(key for key in FIELDS if key not in ("instrument_ids", "schedule"))


def ml_strategy_create(*, owner: User, data: Mapping[str, Any]) -> MLStrategy:
    """Create an ML strategy from validated input (see the module docstring), with its
    retraining schedule when ``data["schedule"]`` asks for one. Audited. Nothing is trained
    until `training_start`."""
    from apps.ml.services.schedules import schedule_apply

    clean = _clean(data, owner=owner, current=None)
    try:
        with transaction.atomic():
            ml_strategy = MLStrategy(owner=owner, **{key: clean[key] for key in MODEL_FIELDS})
            ml_strategy.full_clean(exclude=["instruments", "schedule", "promoted_version"], validate_constraints=False)
            ml_strategy.save()
            ml_strategy.instruments.set(clean["instruments"])
            if "schedule" in clean:
                schedule_apply(ml_strategy=ml_strategy, spec=clean["schedule"])
            audit_record(
                action="ml.strategy.created",
                actor=owner,
                target=ml_strategy,
                details={
                    "name": ml_strategy.name,
                    "instruments": [i.pk for i in clean["instruments"]],
                    "timeframe": ml_strategy.timeframe,
                    "model_kind": ml_strategy.model_kind,
                },
            )
    except IntegrityError:
        # Two requests raced for the same name: the constraint decided.
        raise _error(f"You already have an ML strategy called “{clean['name']}”.", "name") from None
    return ml_strategy


def ml_strategy_update(*, ml_strategy: MLStrategy, data: Mapping[str, Any], actor: User | None = None) -> MLStrategy:
    """Change the given fields (see the module docstring); the rest keep their values. Audited
    with the names of the fields that changed."""
    from apps.ml.services.schedules import schedule_apply

    owner = ml_strategy.owner
    try:
        with transaction.atomic():
            locked = MLStrategy.objects.select_for_update().get(pk=ml_strategy.pk)
            clean = _clean(data, owner=owner, current=locked)
            before = ml_strategy_data(locked)
            for key in MODEL_FIELDS:
                setattr(locked, key, clean[key])
            locked.full_clean(exclude=["instruments", "schedule", "promoted_version"], validate_constraints=False)
            locked.save()
            if "instrument_ids" in data:
                locked.instruments.set(clean["instruments"])
            after = ml_strategy_data(locked)
            changed = sorted(key for key in after if after[key] != before[key])
            if "schedule" in data:
                schedule_apply(ml_strategy=locked, spec=clean["schedule"])
                changed.append("schedule")
            audit_record(
                action="ml.strategy.updated",
                actor=actor or owner,
                user=owner,
                target=locked,
                details={"fields": changed},
            )
    except IntegrityError:
        raise _error("You already have an ML strategy with this name.", "name") from None
    return locked


def _deployments_using(ml_strategy: MLStrategy) -> list[str]:
    from apps.strategies.models import Deployment

    rows = (
        Deployment.objects.filter(strategy_key="ml", params__model=ml_strategy.pk)
        .exclude(status=Deployment.Status.STOPPED)
        .values_list("name", flat=True)
    )
    return list(rows)


def ml_strategy_delete(*, ml_strategy: MLStrategy, actor: User | None = None) -> None:
    """Delete the ML strategy, its versions, drift checks and retraining schedule. Refused
    (Conflict) while a deployment that is not stopped trades it: stop those first."""
    using = _deployments_using(ml_strategy)
    if using:
        raise Conflict(
            f"Deployments use this ML strategy ({', '.join(using[:3])}{'…' if len(using) > 3 else ''}): "
            "stop them first.",
            code="ml_in_use",
        )
    with transaction.atomic():
        locked = MLStrategy.objects.select_for_update().get(pk=ml_strategy.pk)
        audit_record(
            action="ml.strategy.deleted",
            actor=actor or locked.owner,
            user=locked.owner,
            target=locked,
            details={"name": locked.name, "versions": locked.versions.count()},
        )
        task = locked.schedule
        # Clear the link first: deleting the versions must not trip over promoted_version.
        MLStrategy.objects.filter(pk=locked.pk).update(promoted_version=None, schedule=None)
        locked.delete()
        if task is not None:
            task.delete()


def error_text(exc: ApplicationError) -> str:
    """A refusal as one line: the message, prefixed by the field it is about (when the message
    does not already say it)."""
    fields = (exc.extra or {}).get("fields") or {}
    first = next(iter(fields), None)
    if first and not exc.message.lower().startswith(str(first).lower()):
        return f"{first}: {exc.message}"
    return exc.message


__all__ = [
    "MLInputError",
    "error_text",
    "ml_strategy_create",
    "ml_strategy_data",
    "ml_strategy_delete",
    "ml_strategy_update",
]
