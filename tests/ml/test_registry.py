"""The model registry: promoting a rejected or retired version by hand (owner or operator),
rolling back through the promotions in order, and who may do either."""

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import Conflict, NotFound
from apps.ml import services
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.errors import ModelLoadError
from apps.notifications.models import Notification
from tests.ml.support import corrupt, fresh

pytestmark = pytest.mark.django_db


def promoted_number(ml: MLStrategy) -> int | None:
    ml.refresh_from_db()
    return ml.promoted_version.number if ml.promoted_version else None


@pytest.fixture
def three(ml, sent) -> list[ModelVersion]:
    """v1 promoted by training, v2 and v3 rejected (the same model scores the same: not better)."""
    return [services.training_run_now(ml_strategy=ml, trigger="manual") for _ in range(3)]


def test_the_owner_promotes_a_rejected_version_by_hand(ml, alice, three):
    v1, v2, _ = three
    assert [v.status for v in three] == ["promoted", "rejected", "rejected"]

    services.version_promote(version=v2, actor=alice, reason="I prefer this one")

    assert promoted_number(ml) == 2
    assert (fresh(v1).status, fresh(v2).status) == ("retired", "promoted")
    assert fresh(v2).replaced_id == v1.pk
    event = AuditEvent.objects.get(action="ml.version.promoted", target_id=str(v2.pk))
    assert event.actor_id == alice.pk and event.details["how"] == "manual" and event.details["previous"] == 1
    # the owner did it: no notification about it (only the training's promotion of v1)
    assert Notification.objects.filter(user=alice, event="model_promoted").count() == 1


def test_an_operator_promotes_and_the_owner_is_told(ml, alice, staff, three):
    services.version_promote(version=three[2], actor=staff)

    assert promoted_number(ml) == 3
    note = Notification.objects.filter(user=alice, event="model_promoted").order_by("-pk").first()
    assert "v3" in note.title and "operator" in note.title
    assert AuditEvent.objects.get(action="ml.version.promoted", target_id=str(three[2].pk)).actor_id == staff.pk


def test_another_user_cannot_promote(ml, mallory, three):
    with pytest.raises(NotFound):
        services.version_promote(version=three[1], actor=mallory)

    assert promoted_number(ml) == 1


@pytest.mark.parametrize("status", ["promoted", "failed", "cancelled", "queued", "running"])
def test_only_a_rejected_or_retired_version_with_a_model_is_promoted(ml, alice, three, status):
    version = three[1]
    ModelVersion.objects.filter(pk=version.pk).update(status=status)
    if status == "promoted":
        MLStrategy.objects.filter(pk=ml.pk).update(promoted_version=version)

    with pytest.raises(Conflict):
        services.version_promote(version=fresh(version), actor=alice)


def test_rollback_walks_back_through_the_promotions(ml, alice, three):
    _, v2, v3 = three
    services.version_promote(version=v2, actor=alice)
    services.version_promote(version=v3, actor=alice)
    assert promoted_number(ml) == 3

    assert services.version_rollback(ml_strategy=ml, actor=alice).number == 2
    assert (fresh(v3).status, fresh(v2).status) == ("retired", "promoted")
    assert services.version_rollback(ml_strategy=ml, actor=alice).number == 1
    assert promoted_number(ml) == 1 and fresh(v2).status == "retired"

    with pytest.raises(Conflict):
        services.version_rollback(ml_strategy=ml, actor=alice)
    assert promoted_number(ml) == 1
    events = AuditEvent.objects.filter(action="ml.version.rolled_back").order_by("pk")
    assert [(e.details["previous"], e.details["number"]) for e in events] == [(3, 2), (2, 1)]


def test_rollback_with_nothing_promoted_is_a_conflict(ml, alice):
    with pytest.raises(Conflict):
        services.version_rollback(ml_strategy=ml, actor=alice)


def test_another_user_cannot_roll_back(ml, alice, mallory, three):
    services.version_promote(version=three[1], actor=alice)

    with pytest.raises(NotFound):
        services.version_rollback(ml_strategy=ml, actor=mallory)
    assert promoted_number(ml) == 2


def test_a_training_that_wins_after_a_rollback_replaces_the_restored_version(ml, alice, three):
    v1, v2, _ = three
    services.version_promote(version=v2, actor=alice)
    services.version_rollback(ml_strategy=ml, actor=alice)
    ModelVersion.objects.filter(pk=v1.pk).update(metrics={**fresh(v1).metrics, "auc": 0.0})

    v4 = services.training_run_now(ml_strategy=ml, trigger="manual")

    assert v4.status == "promoted" and v4.replaced_id == v1.pk
    assert services.version_rollback(ml_strategy=ml, actor=alice).number == 1


def test_a_version_whose_model_file_does_not_load_is_not_promoted(ml, alice, staff, three):
    v1, v2, _ = three
    corrupt(v2)

    for actor in (alice, staff):
        with pytest.raises(ModelLoadError) as exc:
            services.version_promote(version=v2, actor=actor)
        assert exc.value.message == "v2 cannot be promoted: The model file is corrupt (hash mismatch)."
        assert exc.value.extra["fields"] == {"artifact": [exc.value.message]}

    assert promoted_number(ml) == 1
    assert (fresh(v1).status, fresh(v2).status) == ("promoted", "rejected")
    assert not AuditEvent.objects.filter(action="ml.version.promoted", target_id=str(v2.pk)).exists()


def test_nor_rolled_back_to(ml, alice, three):
    v1, v2, _ = three
    services.version_promote(version=v2, actor=alice)
    ModelVersion.objects.filter(pk=v1.pk).update(artifact=None)

    with pytest.raises(ModelLoadError) as exc:
        services.version_rollback(ml_strategy=ml, actor=alice)

    assert exc.value.message == "Cannot roll back to v1: The model file is missing."
    assert promoted_number(ml) == 2 and fresh(v1).status == "retired"
    assert not AuditEvent.objects.filter(action="ml.version.rolled_back").exists()
