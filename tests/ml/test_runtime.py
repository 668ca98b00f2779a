"""The ``ml`` strategy at run time: the promoted model loaded once per process, its warm-up, who
may use it (another user's ML strategy cannot be deployed or backtested by id), and a model file
that fails to load, which fails a tick and a backtest with the reason and changes nothing else."""

from decimal import Decimal
from typing import Any

import pytest

from apps.backtests.models import Backtest
from apps.backtests.services import backtest_create, backtest_run
from apps.common.errors import ValidationFailed
from apps.marketdata import services as market_services
from apps.ml import runtime, services
from apps.ml.models import ModelVersion
from apps.ml.pipeline.bundle import bundle_signals
from apps.ml.pipeline.features import features_warmup
from apps.strategies.errors import StrategyComputeError
from apps.strategies.models import Deployment, TickRun
from apps.strategies.registry import get_strategy
from apps.strategies.services import deployments
from tests.ml.support import config, corrupt, make_instrument, paper_account, real_candles, store
from tests.strategies.deploy_support import ticks_inline

pytestmark = pytest.mark.django_db

__all__ = ["ticks_inline"]


@pytest.fixture
def trained(ml, sent) -> ModelVersion:
    version = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert version.status == "promoted", version.error
    return version


def test_no_promoted_model_is_a_readable_error(ml):
    with pytest.raises(StrategyComputeError) as exc:
        runtime.bundle_for(ml_strategy_id=ml.pk)

    assert exc.value.message == "BTC direction has no promoted model yet: train it first."


def test_the_model_is_loaded_once_and_each_call_costs_one_query(trained, ml, django_assert_num_queries):
    first = runtime.bundle_for(ml_strategy_id=ml.pk)

    with django_assert_num_queries(1):
        again = runtime.bundle_for(ml_strategy_id=ml.pk)

    assert again is first
    assert first.features == ml.features


def test_a_new_promotion_is_picked_up_by_the_next_call(trained, ml, alice):
    first = runtime.bundle_for(ml_strategy_id=ml.pk)
    candidate = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert candidate.status == "rejected"

    services.version_promote(version=candidate, actor=alice)

    assert runtime.bundle_for(ml_strategy_id=ml.pk) is not first
    # a version asked for by number is that one
    assert runtime.bundle_for(ml_strategy_id=ml.pk, version=1) is first


def test_the_strategy_gives_the_bundles_signals(trained, ml):
    candles = real_candles(800)
    strategy = get_strategy("ml", {"model": ml.pk})

    frame = strategy.compute(candles)

    expected = bundle_signals(runtime.bundle_for(ml_strategy_id=ml.pk), candles)
    for column in ("enter_long", "exit_long", "enter_short", "exit_short"):
        assert frame[column].equals(expected[column]), column


def test_the_warmup_is_the_larger_of_the_promoted_and_the_current_features(trained, ml):
    promoted = features_warmup(ml.features, timeframe="1h", higher_timeframe="")
    assert runtime.strategy_warmup(ml_strategy_id=ml.pk) == promoted

    services.ml_strategy_update(ml_strategy=ml, data={"features": ["ret_1"]})
    assert runtime.strategy_warmup(ml_strategy_id=ml.pk) == promoted

    services.ml_strategy_update(ml_strategy=ml, data={"features": [*ml.features, "dist_support", "ret_48", "vol_48"]})
    bigger = features_warmup([*ml.features, "dist_support", "ret_48", "vol_48"], timeframe="1h", higher_timeframe="")
    assert runtime.strategy_warmup(ml_strategy_id=ml.pk) == max(bigger, promoted)


def test_a_missing_ml_strategy_is_a_readable_error():
    with pytest.raises(StrategyComputeError):
        runtime.strategy_warmup(ml_strategy_id=424242)
    with pytest.raises(StrategyComputeError):
        runtime.bundle_for(ml_strategy_id=424242)


def test_assert_usable_checks_the_owner_and_the_timeframe(ml, alice, mallory):
    runtime.assert_usable(ml_strategy_id=ml.pk, user=alice, timeframe="1h")
    runtime.assert_usable(ml_strategy_id=ml.pk, user=alice, timeframe=None)

    with pytest.raises(ValidationFailed) as exc:
        runtime.assert_usable(ml_strategy_id=ml.pk, user=mallory, timeframe="1h")
    assert set(exc.value.extra["fields"]) == {"strategy", "params.model"}
    assert exc.value.message == "Choose one of your ML strategies."

    with pytest.raises(ValidationFailed) as exc:
        runtime.assert_usable(ml_strategy_id=ml.pk, user=alice, timeframe="4h")
    assert set(exc.value.extra["fields"]) == {"timeframe"}

    with pytest.raises(ValidationFailed) as exc:
        runtime.assert_usable(ml_strategy_id=424242, user=alice, timeframe="1h")
    assert exc.value.message == "Choose one of your ML strategies."


def test_another_users_ml_strategy_cannot_be_deployed_by_id(trained, ml, mallory):
    account = paper_account(mallory)

    with pytest.raises(ValidationFailed) as exc:
        deployments.deployment_create(
            owner=mallory,
            account_id=account.pk,
            instrument_ids=[ml.instruments.get().pk],
            timeframe="1h",
            capital=Decimal("1000"),
            strategy_key="ml",
            params={"model": ml.pk, "version": 0},
        )

    assert "strategy" in exc.value.extra["fields"]
    assert not Deployment.objects.filter(owner=mallory).exists()


def test_an_ml_deployment_cannot_move_to_another_timeframe(trained, ml, alice):
    deployment = services.ml_deploy(
        owner=alice, ml_strategy=ml, data={"account_id": paper_account(alice).pk, "capital": "1000", "start": False}
    )

    with pytest.raises(ValidationFailed) as exc:
        deployments.deployment_update(deployment=deployment, timeframe="4h")

    assert "timeframe" in exc.value.extra["fields"]


def test_another_users_ml_strategy_cannot_be_backtested_by_id(trained, ml, mallory, btc):
    with pytest.raises(ValidationFailed) as exc:
        backtest_create(
            owner=mallory,
            strategy_key="ml",
            params={"model": ml.pk},
            rule_set_id=None,
            instrument_id=btc.pk,
            timeframe="1h",
            start_at=None,
            end_at=None,
            settings=None,
        )

    assert "strategy" in exc.value.extra["fields"]
    assert not Backtest.objects.exists()


def test_nor_through_the_api(trained, ml, mallory, btc, api_client):
    api_client.force_authenticate(mallory)

    response = api_client.post(
        "/api/v1/backtests/",
        {"strategy": "ml", "params": {"model": ml.pk}, "instrument": btc.pk, "timeframe": "1h"},
        format="json",
    )

    assert response.status_code == 400
    assert "strategy" in response.json()["error"]["fields"]
    assert not Backtest.objects.exists()


def test_a_corrupted_model_fails_a_backtest_with_the_reason(trained, ml, alice, django_capture_on_commit_callbacks):
    corrupt(trained)
    backtest = services.ml_backtest_start(owner=alice, ml_strategy=ml, data={})

    backtest_run(backtest_id=backtest.pk)

    backtest.refresh_from_db()
    assert backtest.status == "failed"
    assert backtest.error == "BTC direction v1: The model file is corrupt (hash mismatch)."
    # nothing else changed: the version is still the promoted one
    ml.refresh_from_db()
    assert ml.promoted_version_id == trained.pk and ModelVersion.objects.get(pk=trained.pk).status == "promoted"


@pytest.fixture
def live_btc(db: Any) -> tuple[Any, Any]:
    """Another BTC/USDT market whose newest real bars are fed one by one (the first ones stored)."""
    instrument = make_instrument(venue="live")
    candles = real_candles(2005)
    store(instrument, candles.iloc[:2000])
    return instrument, candles


def test_a_corrupted_model_fails_the_tick_with_the_reason(
    alice, sent, live_btc, ticks_inline, caplog, django_capture_on_commit_callbacks
):
    instrument, candles = live_btc
    ml = services.ml_strategy_create(owner=alice, data=config(instrument))
    version = services.training_run_now(ml_strategy=ml, trigger="manual")
    deployment = services.ml_deploy(
        owner=alice, ml_strategy=ml, data={"account_id": paper_account(alice).pk, "capital": "1000"}
    )
    corrupt(version)

    with caplog.at_level("WARNING"), django_capture_on_commit_callbacks(execute=True):
        market_services.candles_store_closed(
            instrument=instrument, timeframe="1h", frame=candles.iloc[2000:2001], source="test"
        )

    run = TickRun.objects.get(deployment=deployment)
    assert run.outcome == "error"
    assert "BTC direction v1: The model file is corrupt (hash mismatch)." in caplog.text
    deployment.refresh_from_db()
    assert deployment.status == "paper"


def test_a_tick_reads_just_the_warm_up_of_an_ml_strategy_and_the_usual_window_of_others():
    """An ML strategy's warm-up is exact (its features on that window equal the full history's),
    so a tick hands it that many bars (never fewer than WINDOW_MIN, which risk sizing's ATR needs)
    instead of four times as many, each of which would get a prediction it does not use."""
    from apps.strategies.services import ticks

    ml_strategy = get_strategy("ml", {"model": 1})
    sma = get_strategy("sma_cross", {"fast": 10, "slow": 30})

    assert ticks._window(ml_strategy, 1004) == 1004
    assert ticks._window(ml_strategy, 120) == ticks.WINDOW_MIN
    assert ticks._window(ml_strategy, 9000) == ticks.WINDOW_MAX
    assert ticks._window(sma, 120) == 120 * ticks.WINDOW_WARMUP_MULTIPLE
    assert ticks._window(sma, 30) == ticks.WINDOW_MIN
