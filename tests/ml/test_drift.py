"""Drift: the live window's features against the promoted version's training reference.

The model is trained on 1,900 real BTC/USDT 1h bars with scale-free features (RSI, Bollinger %b,
volume z-score, hour of day). A calm live window is the next 500 real bars; a shifted one is 500
bars of a steady climb (+0.4 % a bar), which pins RSI near 100 and %b above the upper band: far
outside anything seen in training."""

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.marketdata.models import Instrument
from apps.ml import services, tasks
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.notifications.models import Notification
from tests.ml.support import config, make_instrument, real_candles, store

pytestmark = pytest.mark.django_db

TRAINED = 1900
WINDOW = 500
DRIFT_FEATURES = ["rsi_14", "bb_pctb", "volume_z", "hour_sin"]


def climbing(after: pd.DataFrame, bars: int) -> pd.DataFrame:
    """``bars`` hourly bars after ``after``, each closing 0.4 % above the last."""
    last = float(after["close"].iloc[-1])
    close = last * np.cumprod(np.full(bars, 1.004))
    open_ = np.concatenate([[last], close[:-1]])
    index = pd.date_range(after.index[-1] + pd.Timedelta(hours=1), periods=bars, freq="1h", tz="UTC")
    volume = after["volume"].iloc[-bars:].to_numpy()
    return pd.DataFrame(
        {"open": open_, "high": close * 1.001, "low": open_ * 0.999, "close": close, "volume": volume}, index=index
    )


@pytest.fixture
def market(db: Any) -> tuple[Instrument, pd.DataFrame]:
    instrument = make_instrument(venue="drift")
    candles = real_candles(TRAINED + WINDOW)
    store(instrument, candles.iloc[:TRAINED])
    return instrument, candles


@pytest.fixture
def ml(alice, market, sent) -> MLStrategy:
    instrument, _ = market
    data = config(
        instrument,
        features=DRIFT_FEATURES,
        drift_window=WINDOW,
        drift_threshold=0.25,
        validation={"n_splits": 3, "embargo": 6, "history_bars": TRAINED},
    )
    ml = services.ml_strategy_create(owner=alice, data=data)
    version = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert version.status == "promoted", version.error
    ml.refresh_from_db()
    return ml


def test_a_calm_window_is_no_drift(ml, market, alice, pushed, django_capture_on_commit_callbacks):
    instrument, candles = market
    store(instrument, candles.iloc[TRAINED:])

    with django_capture_on_commit_callbacks(execute=True):
        check = services.drift_check(ml_strategy=ml)

    assert check is not None and check.is_drift is False
    assert set(check.psi) == set(DRIFT_FEATURES)
    assert 0.0 <= check.max_psi < 0.25 and check.max_psi == pytest.approx(max(check.psi.values()), abs=1e-6)
    assert check.n_bars == WINDOW and check.window_end == candles.index[-1].to_pydatetime()
    assert check.version_id == ml.promoted_version_id and check.retrain is None
    assert not Notification.objects.filter(event="drift_detected").exists()
    assert ModelVersion.objects.filter(ml_strategy=ml).count() == 1
    assert pushed.of(alice, "ml.drift") == [
        {"ml_strategy": ml.pk, "check": check.pk, "max_psi": round(check.max_psi, 6), "is_drift": False}
    ]


def test_a_shifted_window_is_drift_the_owner_is_told_and_a_retrain_starts(
    ml, market, alice, sent, pushed, django_capture_on_commit_callbacks
):
    instrument, candles = market
    store(instrument, climbing(candles.iloc[:TRAINED], WINDOW))

    with django_capture_on_commit_callbacks(execute=True):
        check = services.drift_check(ml_strategy=ml)

    assert check.is_drift is True and check.max_psi >= 0.25
    # RSI and %b left their training range; the hour of day did not move
    assert check.psi["rsi_14"] > 1.0 and check.psi["bb_pctb"] > 1.0 and check.psi["hour_sin"] < 0.1
    note = Notification.objects.get(user=alice, event="drift_detected")
    worst = [item["feature"] for item in note.data["worst"]]
    assert set(worst[:2]) == {"rsi_14", "bb_pctb"} and "rsi_14" in note.body
    retrain = ModelVersion.objects.get(ml_strategy=ml, number=2)
    assert (retrain.trigger, retrain.status) == ("drift", "queued")
    assert check.retrain_id == retrain.pk and sent.versions == [retrain.pk]
    assert pushed.of(alice, "ml.drift")[-1]["is_drift"] is True
    assert AuditEvent.objects.filter(action="ml.drift.detected", target_id=str(check.pk)).exists()


def test_no_second_retrain_within_the_cooldown_nor_while_one_is_active(
    ml, market, sent, settings, django_capture_on_commit_callbacks
):
    instrument, candles = market
    store(instrument, climbing(candles.iloc[:TRAINED], WINDOW))
    with django_capture_on_commit_callbacks(execute=True):
        first = services.drift_check(ml_strategy=ml)

    # while the drift retrain is queued
    again = services.drift_check(ml_strategy=ml)
    assert again.is_drift and again.retrain is None

    # it finished (failed here), but it started within the cooldown
    ModelVersion.objects.filter(ml_strategy=ml, number=2).update(status="failed")
    third = services.drift_check(ml_strategy=ml)
    assert third.is_drift and third.retrain is None

    # after the cooldown
    ModelVersion.objects.filter(ml_strategy=ml, number=2).update(
        created_at=timezone.now() - timedelta(hours=settings.ML_DRIFT_RETRAIN_COOLDOWN_HOURS, minutes=1)
    )
    fourth = services.drift_check(ml_strategy=ml)
    assert fourth.retrain is not None and fourth.retrain.number == 3
    assert len(sent.versions) == 1  # the fourth's send waits for a commit that never comes here
    # one alert when the drift began, one when the new retrain started; none for the checks between
    alerts = Notification.objects.filter(event="drift_detected").order_by("pk")
    assert [note.data["check"] for note in alerts] == [first.pk, fourth.pk]
    assert AuditEvent.objects.filter(action="ml.drift.detected").count() == 2


def test_retrain_on_drift_off_only_alerts(ml, market, alice):
    instrument, candles = market
    MLStrategy.objects.filter(pk=ml.pk).update(retrain_on_drift=False)
    store(instrument, climbing(candles.iloc[:TRAINED], WINDOW))

    check = services.drift_check(ml_strategy=ml)

    assert check.is_drift and check.retrain is None
    assert Notification.objects.filter(user=alice, event="drift_detected").count() == 1
    assert ModelVersion.objects.filter(ml_strategy=ml).count() == 1

    # still drifted an hour later: checked and recorded, but the owner was told already
    again = services.drift_check(ml_strategy=ml)
    assert again.is_drift and again.pk != check.pk
    assert Notification.objects.filter(user=alice, event="drift_detected").count() == 1


def test_a_check_as_of_a_past_bar_only_records(ml, market, alice, pushed, django_capture_on_commit_callbacks):
    instrument, candles = market
    store(instrument, climbing(candles.iloc[:TRAINED], WINDOW))
    as_of = candles.index[TRAINED - 1].to_pydatetime()

    with django_capture_on_commit_callbacks(execute=True):
        past = services.drift_check(ml_strategy=ml, as_of=as_of)

    # the window ending at the last trained bar: calm, and recorded at that time
    assert past.checked_at == as_of and past.window_end == as_of and past.n_bars == WINDOW
    assert not past.is_drift
    assert pushed.of(alice, "ml.drift") == []
    assert not Notification.objects.filter(event="drift_detected").exists()


def test_a_window_less_than_half_stored_is_skipped(ml, market):
    MLStrategy.objects.filter(pk=ml.pk).update(drift_window=2 * TRAINED)
    ml.refresh_from_db()

    assert services.drift_check(ml_strategy=ml) is None
    assert not DriftCheck.objects.exists()


def test_without_a_promoted_version_nothing_is_checked(alice, market):
    instrument, _ = market
    ml = services.ml_strategy_create(owner=alice, data=config(instrument, features=DRIFT_FEATURES))

    assert services.drift_check(ml_strategy=ml) is None


def test_the_beat_task_checks_every_promoted_model(ml, market, alice):
    instrument, candles = market
    store(instrument, candles.iloc[TRAINED:])
    services.ml_strategy_create(owner=alice, data=config(instrument, name="Untrained", features=DRIFT_FEATURES))

    tasks.drift_check_all()

    assert list(DriftCheck.objects.values_list("ml_strategy_id", flat=True)) == [ml.pk]
    assert services.drift_check_all() == 1
