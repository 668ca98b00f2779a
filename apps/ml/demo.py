"""The demo ML strategy for `make run` (called by `seed_demo` after the demo deployments):
Alice gets "Demo: BTC direction (HistGradientBoosting)" on the demo's live BTC/USDT replay, a
promoted model trained here and now, a daily retraining schedule, a drift history, and a paper
deployment of it on her "Demo paper" account, so its page shows versions, metrics, feature
importances, the out-of-sample equity curve and the drift chart from the first start, and its
deployment's page shows the model's signals arriving every few seconds.

- The series: the replay's BTC/USDT 1m (its preloaded history holds ``MIN_BARS`` bars or more),
  else BTC/USDT on another venue, the first of 1h, 15m, 5m holding at least ``MIN_BARS`` bars
  (real candles before generated ones). Without one the demo ML strategy is left out, with a
  line in the log. Only a model of the replay is deployed: the other series do not move.
- The model is small on purpose (``HISTORY_BARS`` bars, 60 boosting iterations, 4 splits):
  training takes a few seconds, so `make run` still starts quickly.
- The drift history: ``DRIFT_POINTS`` checks of the ``DRIFT_WINDOW`` bars up to earlier bars,
  ``DRIFT_STEP`` bars apart (``drift_check(as_of=...)``, which records a check without alerting
  or retraining), as many as the stored history allows.

Idempotent: an existing demo ML strategy is left alone.
"""

import logging
from collections.abc import Callable
from typing import Any

from apps.common.errors import ApplicationError
from apps.marketdata.models import CandleSeries, Instrument
from apps.ml.models import MLStrategy
from apps.strategies.models import Deployment
from apps.users.models import User

logger = logging.getLogger(__name__)
Log = Callable[[str], None]

DEMO_OWNER = "alice@demo.local"
NAME = "Demo: BTC direction (HistGradientBoosting)"
# What the model predicts, by the series' timeframe. On the replay's 1m bars: a rise of more than
# 0.3 % within the next hour, which a trade paying 0.1 % fees each way can still profit from (a
# 12-bar sign label there trades every few minutes and the fees take everything).
LABELS: dict[str, dict[str, Any]] = {
    "1m": {"kind": "forward", "horizon": 60, "threshold": 0.003},
}
DEFAULT_LABEL: dict[str, Any] = {"kind": "forward", "horizon": 12, "threshold": 0.0}
DECISIONS: dict[str, dict[str, Any]] = {
    "1m": {"threshold": 0.5, "exit_threshold": 0.45, "allow_short": False},
}
DEFAULT_DECISION: dict[str, Any] = {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False}


def demo_description(instrument: Instrument, label: dict[str, Any]) -> str:
    rise = f"by more than {label['threshold']:.1%}" if label["threshold"] > 0 else "at all"
    return (
        f"Will {instrument.symbol} rise {rise} over the next {label['horizon']} bars? A small "
        "gradient-boosted tree model on returns, volatility, RSI, MACD, Bollinger, ATR, volume and "
        "time-of-day features, validated with purged walk-forward splits. Retrained daily at 03:00 UTC; "
        "a new version replaces the promoted one only when its out-of-sample AUC is better by 0.005."
    )


SYMBOL = "BTC/USDT"
REPLAY_VENUE = "replay"
REPLAY_TIMEFRAME = "1m"
TIMEFRAMES = ("1h", "15m", "5m")  # the fallbacks, in order
MIN_BARS = 3000
HISTORY_BARS = 4000
DRIFT_WINDOW = 500
DRIFT_POINTS = 30
DRIFT_STEP = 100  # bars between the seeded drift checks
ACCOUNT_NAME = "Demo paper"  # apps.strategies.demo's account
DEPLOY_CAPITAL = "10000"


def demo_series() -> tuple[Instrument, str] | None:
    """The BTC/USDT series with enough history: the replay's 1m, else the first of TIMEFRAMES
    with MIN_BARS bars, real candles before generated ones."""
    replay = (
        CandleSeries.objects.filter(
            instrument__venue=REPLAY_VENUE,
            instrument__symbol=SYMBOL,
            timeframe=REPLAY_TIMEFRAME,
            count__gte=MIN_BARS,
        )
        .select_related("instrument")
        .first()
    )
    if replay is not None:
        return replay.instrument, replay.timeframe
    series = (
        CandleSeries.objects.filter(instrument__symbol=SYMBOL, timeframe__in=TIMEFRAMES, count__gte=MIN_BARS)
        .exclude(instrument__venue=REPLAY_VENUE)
        .select_related("instrument")
    )
    ranked = sorted(series, key=lambda s: (s.instrument.is_synthetic, TIMEFRAMES.index(s.timeframe)))
    return (ranked[0].instrument, ranked[0].timeframe) if ranked else None


def demo_config(instrument: Instrument, timeframe: str) -> dict[str, Any]:
    from apps.ml.pipeline.features import DEFAULT_FEATURES

    label = LABELS.get(timeframe, DEFAULT_LABEL)
    return {
        "name": NAME,
        "description": demo_description(instrument, label),
        "instrument_ids": [instrument.pk],
        "timeframe": timeframe,
        "higher_timeframe": "",
        "features": list(DEFAULT_FEATURES),
        "label": dict(label),
        "model_kind": "hist_gb",
        "model_params": {"max_iter": 60, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 40},
        "decision": dict(DECISIONS.get(timeframe, DEFAULT_DECISION)),
        "validation": {"n_splits": 4, "embargo": label["horizon"], "history_bars": HISTORY_BARS},
        "seed": 42,
        "promotion_metric": "auc",
        "promotion_margin": 0.005,
        "drift_threshold": 0.25,
        "drift_window": DRIFT_WINDOW,
        "retrain_on_drift": True,
        "schedule": {"every": "daily", "hour": 3, "minute": 0},
    }


def demo_ml_seed(*, log: Log | None = None) -> MLStrategy | None:
    """Create (once) Alice's demo ML strategy, train it and seed its drift history. Returns it,
    or None when the demo user or a long enough BTC/USDT series is missing."""
    from apps.ml.services import ml_strategy_create, training_run_now

    say: Log = log or logger.info
    owner = User.objects.filter(email=DEMO_OWNER).first()
    if owner is None:
        say("  no demo ML strategy: the demo user is missing")
        return None
    existing = MLStrategy.objects.filter(owner=owner, name=NAME).first()
    if existing is not None:
        return existing
    found = demo_series()
    if found is None:
        say(f"  no demo ML strategy: no {SYMBOL} series with {MIN_BARS} bars in {', '.join(TIMEFRAMES)}")
        return None
    instrument, timeframe = found
    try:
        ml = ml_strategy_create(owner=owner, data=demo_config(instrument, timeframe))
    except ApplicationError as exc:  # the platform starts anyway; the log says why
        say(f"  no demo ML strategy: {exc.message} {exc.extra.get('fields', '')}")
        return None
    version = training_run_now(ml_strategy=ml, trigger="demo")
    ml.refresh_from_db()
    if version.status != version.Status.PROMOTED:
        say(
            f"  {owner.email}: ML strategy '{ml.name}' trained, but v{version.number} {version.status}: {version.error}"
        )
        return ml
    checks = demo_drift_history(ml)
    deployment = demo_ml_deploy(ml, say) if instrument.venue == REPLAY_VENUE else None
    auc = (version.metrics or {}).get("auc")
    quality = f" (OOS AUC {auc:.3f})" if isinstance(auc, float) else ""
    deployed = f", deployed on paper as '{deployment.name}'" if deployment is not None else ""
    say(
        f"  {owner.email}: ML strategy '{ml.name}' on {instrument.symbol} @ {instrument.venue} {timeframe}, "
        f"v{version.number} promoted{quality}, {checks} drift checks, retrained daily{deployed}"
    )
    return ml


def demo_ml_deploy(ml: MLStrategy, say: Log) -> Deployment | None:
    """Start a paper deployment of the promoted model on the owner's demo paper account (None,
    with the reason logged, when the account is missing or the deployment is refused)."""
    from apps.accounts.models import TradingAccount
    from apps.ml.services import ml_deploy

    account = TradingAccount.objects.filter(owner=ml.owner, name=ACCOUNT_NAME).first()
    if account is None:
        say(f"  demo ML strategy not deployed: {ml.owner.email} has no account '{ACCOUNT_NAME}'")
        return None
    data = {
        "account_id": account.pk,
        "capital": DEPLOY_CAPITAL,
        "settings": {"sizing": {"mode": "fixed_fraction", "fraction": 0.5}},
    }
    try:
        return ml_deploy(owner=ml.owner, ml_strategy=ml, data=data)
    except ApplicationError as exc:  # the platform starts anyway; the log says why
        say(f"  demo ML strategy not deployed: {exc.message} {exc.extra.get('fields', '')}")
        return None


def demo_drift_history(ml: MLStrategy) -> int:
    """Up to DRIFT_POINTS drift checks at earlier bars DRIFT_STEP bars apart, the newest at the
    last bar, each with a full window of settled features behind it; returns how many were
    recorded."""
    from apps.marketdata.storage import candles_frame
    from apps.ml.pipeline.features import features_warmup
    from apps.ml.services import drift_check

    instrument = ml.instruments.order_by("pk").first()
    if instrument is None:
        return 0
    step = DRIFT_STEP
    warmup = features_warmup(ml.features, timeframe=ml.timeframe, higher_timeframe=ml.higher_timeframe)
    first = warmup + DRIFT_WINDOW - 1  # the earliest bar with a whole window after the warm-up
    bars = candles_frame(instrument.pk, ml.timeframe, limit=first + step * (DRIFT_POINTS - 1) + 1)
    positions = range(len(bars) - 1, first - 1, -step)
    moments = [bars.index[i].to_pydatetime() for i in positions][:DRIFT_POINTS]
    recorded = 0
    for as_of in reversed(moments):
        if drift_check(ml_strategy=ml, as_of=as_of) is not None:
            recorded += 1
    return recorded
