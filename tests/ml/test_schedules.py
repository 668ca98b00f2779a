"""Retraining schedules: one django-celery-beat PeriodicTask per ML strategy, on a UTC crontab,
created, changed and removed by the service; its description and next run; and the scheduled
task, which starts a training unless one is active."""

from datetime import UTC, datetime

import pytest
from django_celery_beat.models import PeriodicTask

from apps.audit.models import AuditEvent
from apps.common.errors import ValidationFailed
from apps.ml import services, tasks
from apps.ml.models import MLStrategy, ModelVersion
from tests.ml.support import config

pytestmark = pytest.mark.django_db

# A Monday.
NOW = datetime(2024, 1, 1, 10, 30, tzinfo=UTC)


def crontab_of(ml: MLStrategy) -> tuple[str, str, str, str, str, str]:
    task = PeriodicTask.objects.select_related("crontab").get(name=f"ml-retrain-{ml.pk}")
    row = task.crontab
    return (row.minute, row.hour, row.day_of_month, row.month_of_year, row.day_of_week, str(row.timezone))


def test_a_daily_schedule_is_a_periodic_task_running_the_retrain_task(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "daily", "hour": 3, "minute": 5})

    task = PeriodicTask.objects.get(name=f"ml-retrain-{ml.pk}")
    assert task.task == "apps.ml.tasks.ml_retrain_scheduled" == tasks.ml_retrain_scheduled.name
    assert task.args == f"[{ml.pk}]" and task.enabled and task.queue == "default"
    assert crontab_of(ml) == ("5", "3", "*", "*", "*", "UTC")
    ml.refresh_from_db()
    assert ml.schedule_id == task.pk
    assert AuditEvent.objects.filter(action="ml.schedule.updated", target_id=str(ml.pk)).exists()


def test_weekly_counts_weekdays_from_monday_and_cron_is_kept_as_written(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "weekly", "weekday": 0, "hour": 4, "minute": 0})
    # cron counts from Sunday = 0: Monday is 1
    assert crontab_of(ml) == ("0", "4", "*", "*", "1", "UTC")

    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "weekly", "weekday": 6, "hour": 4, "minute": 0})
    assert crontab_of(ml)[4] == "0"  # Sunday

    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "cron", "cron": "30 */6 * * 1-5"})
    assert crontab_of(ml) == ("30", "*/6", "*", "*", "1-5", "UTC")
    # changed in place: still one task
    assert PeriodicTask.objects.filter(name__startswith="ml-retrain-").count() == 1


def test_off_removes_the_task(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "hourly", "minute": 0})

    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "off"})

    ml.refresh_from_db()
    assert ml.schedule is None
    assert not PeriodicTask.objects.filter(name=f"ml-retrain-{ml.pk}").exists()
    assert services.ml_schedule_describe(ml_strategy=ml) == {
        "every": "off",
        "hour": None,
        "minute": None,
        "weekday": None,
        "cron": "",
        "text": "Off",
        "next_run": None,
        "enabled": False,
    }


def test_a_schedule_given_on_create_and_update(alice, btc):
    ml = services.ml_strategy_create(owner=alice, data=config(btc, schedule={"every": "hourly", "minute": 15}))
    assert crontab_of(ml)[:2] == ("15", "*")

    services.ml_strategy_update(ml_strategy=ml, data={"schedule": {"every": "daily", "hour": 23, "minute": 59}})
    assert crontab_of(ml)[:2] == ("59", "23")

    services.ml_strategy_update(ml_strategy=ml, data={"schedule": None})
    assert not PeriodicTask.objects.filter(name=f"ml-retrain-{ml.pk}").exists()


def test_a_bad_schedule_changes_nothing(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "daily", "hour": 3, "minute": 0})

    with pytest.raises(ValidationFailed) as exc:
        services.ml_schedule_set(ml_strategy=ml, schedule={"every": "cron", "cron": "0 3 * * * *"})

    assert "schedule.cron" in exc.value.extra["fields"]
    assert crontab_of(ml) == ("0", "3", "*", "*", "*", "UTC")


@pytest.mark.parametrize(
    ("spec", "text", "next_run"),
    [
        ({"every": "hourly", "minute": 15}, "Hourly at minute 15", datetime(2024, 1, 1, 11, 15, tzinfo=UTC)),
        ({"every": "daily", "hour": 3, "minute": 0}, "Daily at 03:00 UTC", datetime(2024, 1, 2, 3, 0, tzinfo=UTC)),
        ({"every": "daily", "hour": 10, "minute": 45}, "Daily at 10:45 UTC", datetime(2024, 1, 1, 10, 45, tzinfo=UTC)),
        (
            {"every": "weekly", "weekday": 2, "hour": 3, "minute": 0},
            "Weekly on Wednesday at 03:00 UTC",
            datetime(2024, 1, 3, 3, 0, tzinfo=UTC),
        ),
        (
            {"every": "weekly", "weekday": 0, "hour": 9, "minute": 0},
            "Weekly on Monday at 09:00 UTC",
            datetime(2024, 1, 8, 9, 0, tzinfo=UTC),
        ),
        ({"every": "cron", "cron": "0 */6 * * *"}, "Cron “0 */6 * * *” (UTC)", datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        ({"every": "cron", "cron": "0 0 1 * *"}, "Cron “0 0 1 * *” (UTC)", datetime(2024, 2, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_describe_says_when_it_runs_next(ml, spec, text, next_run):
    services.ml_schedule_set(ml_strategy=ml, schedule=spec)
    ml.refresh_from_db()

    described = services.ml_schedule_describe(ml_strategy=ml, now=NOW)

    assert described["text"] == text
    assert described["next_run"] == next_run
    assert described["enabled"] is True
    assert described["every"] == spec["every"]


def test_a_task_disabled_by_an_operator_has_no_next_run(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "daily", "hour": 3, "minute": 0})
    PeriodicTask.objects.filter(name=f"ml-retrain-{ml.pk}").update(enabled=False)
    ml.refresh_from_db()

    described = services.ml_schedule_describe(ml_strategy=ml, now=NOW)

    assert described["enabled"] is False and described["next_run"] is None
    assert described["text"] == "Daily at 03:00 UTC (disabled)"


def test_the_scheduled_task_starts_a_training(ml, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.ml_retrain_scheduled(ml.pk)

    version = ModelVersion.objects.get(ml_strategy=ml)
    assert (version.number, version.status, version.trigger) == (1, "queued", "schedule")
    assert sent.versions == [version.pk]


def test_the_scheduled_task_does_nothing_while_a_training_is_active(ml, sent, django_capture_on_commit_callbacks):
    ModelVersion.objects.create(ml_strategy=ml, owner=ml.owner, number=1, status="running")

    with django_capture_on_commit_callbacks(execute=True):
        tasks.ml_retrain_scheduled(ml.pk)

    assert ModelVersion.objects.filter(ml_strategy=ml).count() == 1
    assert sent.versions == []


def test_a_schedule_left_by_a_deleted_strategy_deletes_itself(ml):
    services.ml_schedule_set(ml_strategy=ml, schedule={"every": "daily", "hour": 3, "minute": 0})
    pk = ml.pk
    # the owner deleted (cascade): the task is left behind
    MLStrategy.objects.filter(pk=pk).update(schedule=None)
    MLStrategy.objects.filter(pk=pk).delete()

    tasks.ml_retrain_scheduled(pk)

    assert not PeriodicTask.objects.filter(name=f"ml-retrain-{pk}").exists()
