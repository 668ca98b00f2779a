"""``manage.py ml_train ID``: trains in the process and prints the outcome; bad input exits 2,
a failed training 1."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.ml import services
from apps.ml.models import ModelVersion
from tests.ml.support import config

pytestmark = pytest.mark.django_db


def test_it_trains_and_prints_the_outcome(alice, btc, capsys):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))

    call_command("ml_train", str(ml.pk), "--json")

    out = json.loads(capsys.readouterr().out)
    version = ModelVersion.objects.get(ml_strategy=ml)
    assert out["version"] == 1 and out["status"] == "promoted" == version.status
    assert out["metrics"]["auc"] == version.metrics["auc"] and version.trigger == "admin"


@pytest.mark.parametrize("raw", ["abc", "424242"])
def test_bad_input_exits_with_code_2(raw):
    with pytest.raises(CommandError) as exc:
        call_command("ml_train", raw)

    assert exc.value.returncode == 2


def test_an_active_training_exits_with_code_2(alice, btc, sent):
    ml = services.ml_strategy_create(owner=alice, data=config(btc))
    services.training_start(ml_strategy=ml)

    with pytest.raises(CommandError) as exc:
        call_command("ml_train", str(ml.pk))

    assert exc.value.returncode == 2 and "already queued or running" in str(exc.value)


def test_a_failed_training_exits_with_code_1_and_the_reason(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc, label={"threshold": 0.5}))

    with pytest.raises(CommandError) as exc:
        call_command("ml_train", str(ml.pk))

    assert exc.value.returncode == 1 and "label: The labels have one class only" in str(exc.value)
