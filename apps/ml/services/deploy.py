"""Backtesting and deploying an ML strategy: the registered strategy ``ml`` with params
``{"model": <id>, "version": 0}`` (0 = whatever version is promoted when it runs), through the
backtests' and deployments' own services, so every check and error of theirs applies as is
(their errors keep their field names: ``account_id``, ``capital``, ``settings.<path>``...).

The decision rule's ``allow_short`` becomes the engine setting of the same name unless the
settings given say otherwise: a model that may go short must be allowed to.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.backtests.models import Backtest
from apps.backtests.services import backtest_create
from apps.common.errors import ValidationFailed
from apps.ml.models import MLStrategy, ModelVersion
from apps.strategies.models import Deployment
from apps.users.models import User

BACKTEST_KEYS = ("instrument_id", "start", "end", "settings", "name", "version")
DEPLOY_KEYS = ("account_id", "capital", "name", "settings", "risk", "start")


def _error(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, code="ml_invalid", extra={"fields": {field: [message]}})


def _unknown(data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise _error(f"Unknown field; this takes: {', '.join(known)}.", str(key))


def _when(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise _error("Give a date and time (UTC), e.g. 2024-01-01T00:00.", field) from None
        value = parsed
    if not isinstance(value, datetime):
        raise _error("Give a date and time (UTC), e.g. 2024-01-01T00:00.", field)
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def _settings(data: Mapping[str, Any], ml_strategy: MLStrategy) -> dict[str, Any]:
    raw = data.get("settings")
    if raw is not None and not isinstance(raw, Mapping):
        raise _error("Settings must be an object.", "settings")
    settings = dict(raw or {})
    settings.setdefault("allow_short", bool((ml_strategy.decision or {}).get("allow_short", False)))
    return settings


def _current(owner: User, ml_strategy: MLStrategy) -> MLStrategy:
    """The ML strategy as stored now (the caller's copy may predate a promotion), the owner's only."""
    found = MLStrategy.objects.filter(pk=ml_strategy.pk, owner_id=owner.pk).first()
    if found is None:
        raise _error("Choose one of your ML strategies.", "model")
    return found


def _require_promoted(ml_strategy: MLStrategy) -> None:
    if ml_strategy.promoted_version_id is None:
        raise _error(f"{ml_strategy.name} has no promoted model yet: train it first.", "model")


def ml_backtest_start(*, owner: User, ml_strategy: MLStrategy, data: Mapping[str, Any]) -> Backtest:
    """Queue a backtest of the ML strategy's promoted model (or ``data["version"]``, a version
    number with a model) on ``data["instrument_id"]`` (default: its first instrument) and its
    timeframe, over ``start`` .. ``end`` (default: every stored bar), with engine ``settings``."""
    _unknown(data, BACKTEST_KEYS)
    ml_strategy = _current(owner, ml_strategy)
    version = data.get("version") or 0
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise _error("The version is a version number (0 = the promoted one).", "version") from None
    if version == 0:
        _require_promoted(ml_strategy)
    elif not ModelVersion.objects.filter(ml_strategy=ml_strategy, number=version).exclude(artifact_sha256="").exists():
        raise _error(f"{ml_strategy.name} has no trained version {version}.", "version")
    instrument_id = data.get("instrument_id")
    if instrument_id in (None, ""):
        instrument_id = ml_strategy.instruments.order_by("pk").values_list("pk", flat=True).first()
    name = str(data.get("name") or f"{ml_strategy.name} ({'promoted' if version == 0 else f'v{version}'})")[:120]
    return backtest_create(
        owner=owner,
        strategy_key="ml",
        params={"model": ml_strategy.pk, "version": version},
        rule_set_id=None,
        instrument_id=instrument_id,
        timeframe=ml_strategy.timeframe,
        start_at=_when(data.get("start"), "start"),
        end_at=_when(data.get("end"), "end"),
        settings=_settings(data, ml_strategy),
        name=name,
    )


def ml_deploy(*, owner: User, ml_strategy: MLStrategy, data: Mapping[str, Any]) -> Deployment:
    """A deployment of the ML strategy (always its promoted version) on its instruments and
    timeframe, on ``data["account_id"]`` with ``capital``, started on paper (``start`` false:
    left a draft). Refused without a promoted version; all or nothing."""
    from apps.strategies.services.deployments import deployment_create, deployment_start

    _unknown(data, DEPLOY_KEYS)
    ml_strategy = _current(owner, ml_strategy)
    _require_promoted(ml_strategy)
    start = data.get("start", True)
    if not isinstance(start, bool):
        raise _error("Start is true (paper now) or false (a draft).", "start")
    with transaction.atomic():
        deployment = deployment_create(
            owner=owner,
            account_id=data.get("account_id"),  # type: ignore[arg-type]  # validated by the service
            instrument_ids=list(ml_strategy.instruments.order_by("pk").values_list("pk", flat=True)),
            timeframe=ml_strategy.timeframe,
            capital=data.get("capital"),  # type: ignore[arg-type]  # validated by the service
            strategy_key="ml",
            params={"model": ml_strategy.pk, "version": 0},
            settings=_settings(data, ml_strategy),
            risk=data.get("risk"),
            name=str(data.get("name") or f"{ml_strategy.name} (ML)"),
        )
        if start:
            deployment = deployment_start(deployment=deployment, mode="paper", actor=owner)
    return deployment
