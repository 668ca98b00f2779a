"""What the registered strategy ``ml`` needs at run time: the model, its warm-up, and who may use it.

- ``bundle_for(ml_strategy_id=, version=0)``: the promoted version's ModelBundle (or the given
  version number's). One cheap query per call finds the version id and its artifact's SHA-256;
  the artifact is read and unpickled only when that pair is not cached in this process yet, so
  a tick costs one indexed read, and a promotion (a new pair) is picked up by the next tick.
  A missing model, or one that fails to load, is a StrategyComputeError with the reason: a tick
  records it as its error and a backtest fails with it; nothing else changes.
- ``strategy_warmup(ml_strategy_id=)``: bars a window needs so every configured feature equals
  its full-history value (``features_warmup``), the larger of the promoted version's and the
  current configuration's (the timeframes cannot change once a version exists, the features
  can; a running deployment's window must suit whichever model it trades).
- ``assert_usable(...)``: an ML strategy is its owner's only (another user's id is refused as
  if it did not exist), on its own timeframe.
"""

import threading
from collections import OrderedDict
from typing import Any

from apps.common.errors import ValidationFailed
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.bundle import ModelBundle, bundle_loads
from apps.ml.pipeline.errors import ModelLoadError
from apps.ml.pipeline.features import features_warmup
from apps.strategies.errors import StrategyComputeError

# Loaded bundles by (version pk, artifact sha256). A worker process trades few models; the bound
# only keeps a long-lived process that saw many promotions from holding every old model.
_BUNDLES: "OrderedDict[tuple[int, str], ModelBundle]" = OrderedDict()
_BUNDLES_MAX = 32
_LOCK = threading.Lock()


def caches_clear() -> None:
    """Forget the loaded models (tests; a worker never needs to)."""
    with _LOCK:
        _BUNDLES.clear()


def _locate(ml_strategy_id: int, version: int) -> tuple[int, str, str, int]:
    """(version pk, sha256, ML strategy name, version number) of the model to use."""
    if version == 0:
        row = (
            MLStrategy.objects.filter(pk=ml_strategy_id)
            .values_list("name", "promoted_version_id", "promoted_version__artifact_sha256", "promoted_version__number")
            .first()
        )
        if row is None:
            raise StrategyComputeError(f"ML strategy {ml_strategy_id} does not exist (any more).")
        name, version_id, sha256, number = row
        if version_id is None:
            raise StrategyComputeError(f"{name} has no promoted model yet: train it first.")
        return int(version_id), str(sha256 or ""), str(name), int(number)
    found = (
        ModelVersion.objects.filter(ml_strategy_id=ml_strategy_id, number=version)
        .values_list("pk", "artifact_sha256", "ml_strategy__name", "status")
        .first()
    )
    if found is None:
        raise StrategyComputeError(f"ML strategy {ml_strategy_id} has no version {version}.")
    pk, sha256, name, status = found
    if not sha256:
        raise StrategyComputeError(f"{name} v{version} has no model ({status}).")
    return int(pk), str(sha256), str(name), int(version)


def bundle_for(*, ml_strategy_id: int, version: int = 0) -> ModelBundle:
    """The ModelBundle of the ML strategy's promoted version (``version`` 0) or of its version
    number ``version``, loaded once per process per (version, artifact hash).

    Raises StrategyComputeError with a readable reason when there is none or it fails to load.
    """
    version_id, sha256, name, number = _locate(int(ml_strategy_id), int(version))
    key = (version_id, sha256)
    with _LOCK:
        cached = _BUNDLES.get(key)
        if cached is not None:
            _BUNDLES.move_to_end(key)
            return cached
    data = ModelVersion.objects.filter(pk=version_id).values_list("artifact", flat=True).first()
    if not data:
        raise StrategyComputeError(f"{name} v{number} has no stored model file.")
    try:
        bundle = bundle_loads(bytes(data), sha256)
    except ModelLoadError as exc:
        raise StrategyComputeError(f"{name} v{number}: {exc.message}") from exc
    with _LOCK:
        _BUNDLES[key] = bundle
        while len(_BUNDLES) > _BUNDLES_MAX:
            _BUNDLES.popitem(last=False)
    return bundle


def _config_warmup(config: dict[str, Any]) -> int:
    features = config.get("features") or []
    if not features:
        return 0
    return int(
        features_warmup(
            features,
            timeframe=str(config.get("timeframe", "")),
            higher_timeframe=str(config.get("higher_timeframe") or ""),
        )
    )


def strategy_warmup(*, ml_strategy_id: int) -> int:
    """Bars a tick's window needs (see the module docstring); StrategyComputeError when the ML
    strategy does not exist."""
    row = (
        MLStrategy.objects.filter(pk=ml_strategy_id)
        .values_list("features", "timeframe", "higher_timeframe", "promoted_version__config")
        .first()
    )
    if row is None:
        raise StrategyComputeError(f"ML strategy {ml_strategy_id} does not exist (any more).")
    features, timeframe, higher, promoted_config = row
    current = _config_warmup({"features": features, "timeframe": timeframe, "higher_timeframe": higher})
    promoted = _config_warmup(promoted_config) if isinstance(promoted_config, dict) else 0
    return max(current, promoted)


def _refuse(message: str, *fields: str) -> ValidationFailed:
    return ValidationFailed(message, code="ml_strategy", extra={"fields": {field: [message] for field in fields}})


def assert_usable(*, ml_strategy_id: int, user: Any, timeframe: str | None, version: int = 0) -> None:
    """Refuse, naming the field, unless the ML strategy exists and is ``user``'s, ``timeframe``
    (when given) is the one it is trained on, and ``version`` (when not 0) is a version of it
    with a model. Another user's ML strategy gets the same answer as a missing one."""
    owner_id = getattr(user, "pk", None)
    row = (
        MLStrategy.objects.filter(pk=ml_strategy_id, owner_id=owner_id).values_list("name", "timeframe").first()
        if owner_id is not None
        else None
    )
    if row is None:
        raise _refuse("Choose one of your ML strategies.", "strategy", "params.model")
    name, own_timeframe = row
    if timeframe and timeframe != own_timeframe:
        raise _refuse(f"{name} is trained on {own_timeframe} candles: use the {own_timeframe} timeframe.", "timeframe")
    if version:
        usable = (
            ModelVersion.objects.filter(ml_strategy_id=ml_strategy_id, number=version)
            .exclude(artifact_sha256="")
            .exists()
        )
        if not usable:
            raise _refuse(f"{name} has no trained version {version}.", "params.version")
