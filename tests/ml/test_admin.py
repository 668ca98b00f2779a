"""The ML admin: ML strategies with their versions inline and a link to their schedule; versions
filterable by status (failed trainings with their error); read-only facts, the model file never
shown; "Retrain now", "Roll back", "Promote", "Cancel" through the services; drift checks
read-only; and the schedule itself is django-celery-beat's Periodic task on the same site."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.ml import services
from apps.ml.models import MLStrategy, ModelVersion
from tests.factories import UserFactory
from tests.ml.support import config
from tests.users.steps import verified_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(staff, enable_2fa):
    return verified_client(staff, enable_2fa(staff))


@pytest.fixture
def ml(alice, btc, sent) -> MLStrategy:
    ml = services.ml_strategy_create(owner=alice, data=config(btc, schedule={"every": "daily", "hour": 3, "minute": 0}))
    services.training_run_now(ml_strategy=ml, trigger="manual")  # v1 promoted
    services.training_run_now(ml_strategy=ml, trigger="manual")  # v2 rejected
    services.ml_strategy_update(ml_strategy=ml, data={"label": {"threshold": 0.5}})
    services.training_run_now(ml_strategy=ml, trigger="manual")  # v3 failed: one class
    ml.refresh_from_db()
    return ml


def version(ml: MLStrategy, number: int) -> ModelVersion:
    return ModelVersion.objects.get(ml_strategy=ml, number=number)


def test_the_strategy_page_shows_its_versions_and_links_its_schedule(staff_client, ml, django_assert_max_num_queries):
    with django_assert_max_num_queries(15):
        listing = staff_client.get("/admin/ml/mlstrategy/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "alice@example.com" in body and "Daily at 03:00 UTC" in body and "v1 (AUC" in body

    page = staff_client.get(f"/admin/ml/mlstrategy/{ml.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert f'href="/admin/django_celery_beat/periodictask/{ml.schedule_id}/change/"' in body
    assert "does not beat v1" in body  # v2's comparison, inline
    assert "label: The labels have one class only" in body  # v3's error, inline
    assert 'name="name"' not in body  # facts, not a form


def test_an_operator_sets_changes_and_turns_off_the_schedule(staff_client, staff, ml):
    url = f"/admin/ml/mlstrategy/{ml.pk}/schedule/"
    assert f'href="{url}"' in staff_client.get(f"/admin/ml/mlstrategy/{ml.pk}/change/").content.decode()
    page = staff_client.get(url)
    assert page.status_code == 200 and 'id="schedule-now">Daily at 03:00 UTC<' in page.content.decode()

    response = staff_client.post(
        url, {"schedule_every": "weekly", "schedule_time": "02:30", "schedule_weekday": "6", "schedule_cron": ""}
    )

    assert response.status_code == 302 and response["Location"] == f"/admin/ml/mlstrategy/{ml.pk}/change/"
    ml.refresh_from_db()
    assert services.ml_schedule_describe(ml_strategy=ml)["text"] == "Weekly on Sunday at 02:30 UTC"
    event = AuditEvent.objects.filter(action="ml.schedule.updated").order_by("-pk").first()
    assert event.actor == staff and event.user_id == ml.owner_id

    # a bad cron expression is shown at its field and changes nothing
    bad = staff_client.post(url, {"schedule_every": "cron", "schedule_cron": "*/5 * * * *"})
    html = bad.content.decode()
    assert bad.status_code == 200
    assert re.search(r'id="id_schedule_cron_error"><li>Retrain at most once an hour', html), html
    assert services.ml_schedule_describe(ml_strategy=ml)["every"] == "weekly"

    staff_client.post(url, {"schedule_every": "off"})
    ml.refresh_from_db()
    assert ml.schedule is None and services.ml_schedule_describe(ml_strategy=ml)["text"] == "Off"


def test_the_periodic_task_admin_is_on_the_platform_site(staff_client, ml):
    response = staff_client.get(f"/admin/django_celery_beat/periodictask/{ml.schedule_id}/change/")

    assert response.status_code == 200
    assert f"ml-retrain-{ml.pk}" in response.content.decode()


def test_failed_trainings_are_found_by_status_with_their_error(staff_client, ml):
    response = staff_client.get("/admin/ml/modelversion/", {"status__exact": "failed"})

    body = response.content.decode()
    assert response.status_code == 200
    assert "label: The labels have one class only" in body
    assert f"/admin/ml/modelversion/{version(ml, 3).pk}/change/" in body
    assert f"/admin/ml/modelversion/{version(ml, 1).pk}/change/" not in body


def test_a_version_page_shows_metrics_but_never_the_model_file(staff_client, ml):
    v1 = version(ml, 1)

    response = staff_client.get(f"/admin/ml/modelversion/{v1.pk}/change/")

    body = response.content.decode()
    assert response.status_code == 200
    assert v1.artifact_sha256 in body and "&quot;auc&quot;" in body
    assert 'name="artifact"' not in body and "Artifact:" not in body
    assert staff_client.get("/admin/ml/modelversion/add/").status_code == 403


def test_no_admin_page_reads_a_model_file(staff_client, staff, ml):
    """The model file (megabytes) is never read to show a page: not the promoted version's on
    its ML strategy's page, nor the replaced version's on a version's page."""
    services.version_promote(version=version(ml, 2), actor=staff)  # v2 replaced v1
    pages = (
        "/admin/ml/mlstrategy/",
        f"/admin/ml/mlstrategy/{ml.pk}/change/",
        "/admin/ml/modelversion/",
        f"/admin/ml/modelversion/{version(ml, 2).pk}/change/",
        "/admin/ml/driftcheck/",
    )
    for url in pages:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200, url
        read = [q["sql"] for q in queries.captured_queries if re.search(r'"artifact"|\.artifact\b', q["sql"])]
        assert read == [], url


def test_retrain_now_queues_a_training_by_the_operator(
    staff_client, staff, ml, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post("/admin/ml/mlstrategy/", {"action": "retrain_now", "_selected_action": [ml.pk]})

    queued = version(ml, 4)
    assert (queued.status, queued.trigger, queued.requested_by) == ("queued", "admin", staff)
    assert sent.versions[-1] == queued.pk


def test_promote_then_roll_back_through_the_actions(staff_client, staff, ml):
    staff_client.post("/admin/ml/modelversion/", {"action": "promote", "_selected_action": [version(ml, 2).pk]})
    ml.refresh_from_db()
    assert ml.promoted_version.number == 2
    assert AuditEvent.objects.get(action="ml.version.promoted", target_id=str(version(ml, 2).pk)).actor == staff

    staff_client.post("/admin/ml/mlstrategy/", {"action": "roll_back", "_selected_action": [ml.pk]})
    ml.refresh_from_db()
    assert ml.promoted_version.number == 1


def test_a_refused_action_says_why_and_changes_nothing(staff_client, ml):
    response = staff_client.post(
        "/admin/ml/modelversion/", {"action": "promote", "_selected_action": [version(ml, 3).pk]}, follow=True
    )

    assert "only a rejected or retired version" in response.content.decode()
    ml.refresh_from_db()
    assert ml.promoted_version.number == 1


def test_cancel_and_retrain_from_the_versions(staff_client, ml, sent):
    staff_client.post("/admin/ml/modelversion/", {"action": "retrain", "_selected_action": [version(ml, 1).pk]})
    assert version(ml, 4).status == "queued"

    staff_client.post("/admin/ml/modelversion/", {"action": "cancel", "_selected_action": [version(ml, 4).pk]})
    assert version(ml, 4).status == "cancelled"


def test_drift_checks_are_read_only(staff_client, ml):
    check = services.drift_check(ml_strategy=ml)

    listing = staff_client.get("/admin/ml/driftcheck/")
    page = staff_client.get(f"/admin/ml/driftcheck/{check.pk}/change/")

    assert listing.status_code == 200 and page.status_code == 200
    assert 'name="max_psi"' not in page.content.decode()


def test_staff_who_may_only_view_cannot_run_actions(ml, enable_2fa, sent):
    viewer = UserFactory(email="viewer@example.com", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_mlstrategy"), Permission.objects.get(codename="view_modelversion")
    )
    client = verified_client(viewer, enable_2fa(viewer))

    listing = client.get("/admin/ml/mlstrategy/")
    assert listing.status_code == 200 and "retrain_now" not in listing.content.decode()
    client.post("/admin/ml/mlstrategy/", {"action": "retrain_now", "_selected_action": [ml.pk]})
    client.post("/admin/ml/modelversion/", {"action": "promote", "_selected_action": [version(ml, 2).pk]})

    client.post(f"/admin/ml/mlstrategy/{ml.pk}/schedule/", {"schedule_every": "off"})

    assert ModelVersion.objects.filter(ml_strategy=ml).count() == 3
    ml.refresh_from_db()
    assert ml.promoted_version.number == 1
    assert services.ml_schedule_describe(ml_strategy=ml)["text"] == "Daily at 03:00 UTC"


def test_outsiders_cannot_open_the_admin(client, mallory, ml):
    client.force_login(mallory)

    assert client.get("/admin/ml/mlstrategy/").status_code == 302
