"""ML strategies: create and update validate every field and name it, nothing is stored on a
refusal, updates are partial, the instruments and timeframes are fixed once a version exists,
and deleting is refused while a deployment trades it."""

import pytest
from django_celery_beat.models import PeriodicTask

from apps.audit.models import AuditEvent
from apps.common.errors import Conflict, ValidationFailed
from apps.ml import services
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.estimators import model_params_validate
from apps.ml.pipeline.features import DEFAULT_FEATURES
from tests.ml.support import FEATURES, SMALL_MODEL, config, make_instrument

pytestmark = pytest.mark.django_db


def fields_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, list[str]]:
    return dict(exc.value.extra["fields"])


def test_create_stores_the_validated_configuration_and_audits(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc, description="  hourly BTC  "))

    ml.refresh_from_db()
    assert ml.owner == alice and ml.name == "BTC direction" and ml.description == "hourly BTC"
    assert list(ml.instruments.values_list("pk", flat=True)) == [btc.pk]
    assert ml.timeframe == "1h" and ml.higher_timeframe == ""
    assert ml.features == FEATURES
    assert ml.label["kind"] == "forward" and ml.label["horizon"] == 6
    assert ml.model_kind == "hist_gb" and ml.model_params["max_iter"] == 20
    assert ml.decision == {"threshold": 0.52, "exit_threshold": 0.5, "allow_short": False}
    assert ml.validation == {"n_splits": 3, "embargo": 6, "history_bars": 2000}
    assert ml.schedule is None and ml.promoted_version is None
    event = AuditEvent.objects.get(action="ml.strategy.created")
    assert event.user_id == alice.pk and event.target_id == str(ml.pk)


def test_missing_keys_take_the_defaults(alice, btc):
    ml = services.ml_strategy_create(
        owner=alice, data={"name": "Defaults", "instrument_ids": [btc.pk], "timeframe": "1h"}
    )

    assert ml.features == list(DEFAULT_FEATURES)
    assert ml.label == {**ml.label, "kind": "forward", "horizon": 12}
    assert ml.decision == {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False}
    assert ml.validation == {"n_splits": 5, "embargo": 12, "history_bars": 20_000}
    assert (ml.model_kind, ml.seed, ml.promotion_metric, ml.promotion_margin) == ("hist_gb", 42, "auc", 0.005)
    assert (ml.drift_threshold, ml.drift_window, ml.retrain_on_drift) == (0.25, 500, True)


BAD_INPUT = [
    ({"name": "  "}, "name"),
    ({"name": "x" * 121}, "name"),
    ({"description": 5}, "description"),
    ({"instrument_ids": []}, "instrument_ids"),
    ({"instrument_ids": "1"}, "instrument_ids"),
    ({"instrument_ids": ["abc"]}, "instrument_ids"),
    ({"instrument_ids": [987654]}, "instrument_ids"),
    ({"timeframe": "7m"}, "timeframe"),
    ({"timeframe": "4h"}, "instrument_ids"),  # no 4h candles stored
    ({"higher_timeframe": "9h"}, "higher_timeframe"),
    ({"higher_timeframe": "1h"}, "higher_timeframe"),  # not a multiple of 2..24 of 1h
    ({"features": ["no_such_feature"]}, "features"),
    ({"features": []}, "features"),
    ({"features": ["htf_rsi_14"]}, "features"),  # no higher timeframe chosen
    # 1d over 1h: the daily RSI settles after (300 + 1) x 24 = 7,224 hourly bars, more than a tick reads.
    ({"higher_timeframe": "1d", "features": ["ret_1", "htf_rsi_14"]}, "features"),
    ({"features": "rsi_14"}, "features"),
    ({"label": {"kind": "sideways"}}, "label.kind"),
    ({"label": {"horizon": 0}}, "label.horizon"),
    ({"label": "forward"}, "label"),
    ({"model_kind": "svm"}, "model_kind"),
    ({"model_params": {"max_iter": 1}}, "model_params.max_iter"),
    ({"model_params": {"colour": 1}}, "model_params.colour"),
    ({"decision": {"threshold": 0.3}}, "decision.threshold"),
    ({"decision": {"threshold": 0.6, "exit_threshold": 0.7}}, "decision.exit_threshold"),
    ({"decision": {"allow_short": "maybe"}}, "decision.allow_short"),
    ({"decision": {"stop": 0.1}}, "decision.stop"),
    ({"validation": {"n_splits": 1}}, "validation.n_splits"),
    ({"validation": {"embargo": -1}}, "validation.embargo"),
    ({"validation": {"history_bars": 10}}, "validation.history_bars"),
    ({"validation": {"history_bars": 2.5}}, "validation.history_bars"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"promotion_metric": "f1"}, "promotion_metric"),
    ({"promotion_margin": -0.1}, "promotion_margin"),
    ({"promotion_margin": "lots"}, "promotion_margin"),
    ({"drift_threshold": 0}, "drift_threshold"),
    ({"drift_window": 5}, "drift_window"),
    ({"retrain_on_drift": "sometimes"}, "retrain_on_drift"),
    ({"schedule": {"every": "monthly"}}, "schedule.every"),
    ({"schedule": {"every": "daily", "hour": 24}}, "schedule.hour"),
    ({"schedule": {"every": "hourly", "minute": 60}}, "schedule.minute"),
    ({"schedule": {"every": "weekly", "weekday": 7}}, "schedule.weekday"),
    ({"schedule": {"every": "cron", "cron": "0 3 * *"}}, "schedule.cron"),
    ({"schedule": {"every": "cron", "cron": "61 3 * * *"}}, "schedule.cron"),
    ({"schedule": {"every": "cron", "cron": "* * * * *"}}, "schedule.cron"),  # every minute
    ({"schedule": {"every": "daily", "at": "03:00"}}, "schedule.at"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(
    ("override", "field"), BAD_INPUT, ids=[f"{field}-{i}" for i, (_, field) in enumerate(BAD_INPUT)]
)
def test_bad_input_names_the_field_and_stores_nothing(alice, btc, override, field):
    with pytest.raises(ValidationFailed) as exc:
        services.ml_strategy_create(owner=alice, data=config(btc, **override))

    assert field in fields_of(exc), fields_of(exc)
    assert fields_of(exc)[field][0]
    assert not MLStrategy.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="ml-retrain-").exists()
    assert not AuditEvent.objects.filter(action__startswith="ml.").exists()


def test_every_problem_of_a_request_is_reported_at_once(alice, btc):
    with pytest.raises(ValidationFailed) as exc:
        services.ml_strategy_create(
            owner=alice,
            data=config(btc, name="", model_kind="svm", decision={"threshold": 2}, validation={"n_splits": 0}),
        )

    assert {"name", "model_kind", "decision.threshold", "validation.n_splits"} <= set(fields_of(exc))


def test_a_name_is_unique_per_owner_only(alice, bob, btc):
    services.ml_strategy_create(owner=alice, data=config(btc))

    with pytest.raises(ValidationFailed) as exc:
        services.ml_strategy_create(owner=alice, data=config(btc))
    assert "name" in fields_of(exc)
    assert services.ml_strategy_create(owner=bob, data=config(btc)).owner == bob


def test_numbers_from_a_form_arrive_as_strings(alice, btc):
    ml = services.ml_strategy_create(
        owner=alice,
        data=config(btc, seed="7", promotion_margin="0.01", validation={"n_splits": "4"}, retrain_on_drift="false"),
    )

    assert (ml.seed, ml.promotion_margin, ml.validation["n_splits"], ml.retrain_on_drift) == (7, 0.01, 4, False)


def test_update_is_partial_and_merges_the_nested_settings(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))

    services.ml_strategy_update(ml_strategy=ml, data={"label": {"horizon": 24}, "decision": {"allow_short": True}})

    ml.refresh_from_db()
    assert ml.label["kind"] == "forward" and ml.label["horizon"] == 24
    assert ml.decision == {"threshold": 0.52, "exit_threshold": 0.5, "allow_short": True}
    assert ml.features == FEATURES and ml.model_params["max_iter"] == 20
    event = AuditEvent.objects.get(action="ml.strategy.updated")
    assert event.details["fields"] == ["decision", "label"]


def test_changing_the_model_family_resets_its_parameters(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))

    services.ml_strategy_update(ml_strategy=ml, data={"model_kind": "logistic"})

    ml.refresh_from_db()
    # the logistic family's own defaults, none of hist_gb's
    assert ml.model_kind == "logistic" and "max_leaf_nodes" not in ml.model_params
    assert ml.model_params == model_params_validate("logistic", {})


def test_a_refused_update_changes_nothing(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))

    with pytest.raises(ValidationFailed) as exc:
        services.ml_strategy_update(ml_strategy=ml, data={"name": "New name", "features": ["nope"]})

    assert "features" in fields_of(exc)
    ml.refresh_from_db()
    assert ml.name == "BTC direction" and ml.features == FEATURES


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeframe": "5m"}, "timeframe"),
        ({"higher_timeframe": "4h"}, "higher_timeframe"),
        ({"instrument_ids": []}, "instrument_ids"),
    ],
)
def test_instruments_and_timeframes_are_fixed_once_a_version_exists(alice, btc, change, field):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))
    ModelVersion.objects.create(ml_strategy=ml, owner=alice, number=1, status="failed")
    if field == "instrument_ids":
        change = {"instrument_ids": [make_instrument("ETH/USDT").pk]}

    with pytest.raises(ValidationFailed) as exc:
        services.ml_strategy_update(ml_strategy=ml, data=change)

    assert field in fields_of(exc) and "cannot change" in fields_of(exc)[field][0]


def test_the_same_instruments_and_timeframe_may_be_sent_again_after_training(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))
    ModelVersion.objects.create(ml_strategy=ml, owner=alice, number=1, status="failed")

    services.ml_strategy_update(
        ml_strategy=ml, data={"instrument_ids": [btc.pk], "timeframe": "1h", "features": ["rsi_14"]}
    )

    ml.refresh_from_db()
    assert ml.features == ["rsi_14"]


def test_delete_removes_the_strategy_its_versions_and_its_schedule(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc, schedule={"every": "daily", "hour": 3, "minute": 0}))
    version = ModelVersion.objects.create(ml_strategy=ml, owner=alice, number=1, status="promoted", artifact_sha256="a")
    MLStrategy.objects.filter(pk=ml.pk).update(promoted_version=version)
    ml.refresh_from_db()

    services.ml_strategy_delete(ml_strategy=ml)

    assert not MLStrategy.objects.exists() and not ModelVersion.objects.exists()
    assert not PeriodicTask.objects.filter(name=f"ml-retrain-{ml.pk}").exists()
    assert AuditEvent.objects.filter(action="ml.strategy.deleted", target_id=str(ml.pk)).exists()


def test_delete_is_refused_while_a_deployment_trades_it(alice, btc):
    from apps.accounts.models import TradingAccount
    from apps.strategies.models import Deployment

    ml = services.ml_strategy_create(owner=alice, data=config(btc))
    account = TradingAccount.objects.create(owner=alice, name="Paper", kind="paper", exchange_id="paper")
    deployment = Deployment.objects.create(
        owner=alice,
        account=account,
        name="ml",
        strategy_key="ml",
        params={"model": ml.pk, "version": 0},
        timeframe="1h",
        capital="1000",
        status="paper",
    )

    with pytest.raises(Conflict):
        services.ml_strategy_delete(ml_strategy=ml)
    assert MLStrategy.objects.filter(pk=ml.pk).exists()

    Deployment.objects.filter(pk=deployment.pk).update(status="stopped")
    services.ml_strategy_delete(ml_strategy=ml)
    assert not MLStrategy.objects.filter(pk=ml.pk).exists()


def test_small_model_constant_is_valid_for_the_pipeline(alice, btc):
    # The suite's small model is a valid hist_gb configuration (guards the fixtures themselves).
    ml = services.ml_strategy_create(owner=alice, data=config(btc))
    assert {key: ml.model_params[key] for key in SMALL_MODEL} == SMALL_MODEL
