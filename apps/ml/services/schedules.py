"""Retraining schedules: one django-celery-beat PeriodicTask per ML strategy.

The task is named ``ml-retrain-<id>``, runs ``apps.ml.tasks.ml_retrain_scheduled`` with args
``[id]`` on the default queue (it only starts a training, which then runs on the ``ml`` queue),
on a CrontabSchedule in UTC. Operators edit it in the admin (django-celery-beat's Periodic tasks;
the ML strategy's admin page links to it); ``ml_schedule_describe`` reads whatever it is now.

The portal and the API speak a small spec:

    {"every": "off"}
    {"every": "hourly", "minute": 15}
    {"every": "daily", "hour": 3, "minute": 0}
    {"every": "weekly", "weekday": 0, "hour": 3, "minute": 0}      weekday 0 = Monday
    {"every": "cron", "cron": "0 */6 * * *"}                      m h dom mon dow (dow 0 = Sunday, as cron)

A schedule fires at most once an hour (one minute of the hour): a training takes minutes, and
a schedule that fires while one is still running does nothing anyway.
"""

import json
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.audit.services import audit_record
from apps.common.errors import ValidationFailed
from apps.ml.models import MLStrategy
from apps.users.models import User

TASK = "apps.ml.tasks.ml_retrain_scheduled"
EVERY = ("off", "hourly", "daily", "weekly", "cron")
SPEC_KEYS = ("every", "hour", "minute", "weekday", "cron")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def task_name(ml_strategy_id: int) -> str:
    return f"ml-retrain-{ml_strategy_id}"


def _error(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, code="ml_invalid", extra={"fields": {field: [message]}})


def _int(spec: dict[str, Any], key: str, low: int, high: int, what: str) -> int:
    from apps.ml.services.strategies import number

    return int(number(spec.get(key, 0), f"schedule.{key}", low=low, high=high, integer=True, what=what))


def schedule_clean(spec: Any) -> dict[str, Any]:
    """The spec validated and normalised (only the keys its ``every`` uses), errors at
    ``schedule.<key>``. None or {} means off."""
    if spec in (None, {}, ""):
        return {"every": "off"}
    if not isinstance(spec, dict):
        raise _error('The schedule must be an object such as {"every": "daily", "hour": 3}.', "schedule")
    for key in spec:
        if key not in SPEC_KEYS:
            raise _error(f"Unknown schedule setting; this takes: {', '.join(SPEC_KEYS)}.", f"schedule.{key}")
    every = spec.get("every", "off")
    if every not in EVERY:
        raise _error(f"Choose how often: {', '.join(EVERY)}.", "schedule.every")
    if every == "off":
        return {"every": "off"}
    if every == "cron":
        text = spec.get("cron")
        if not isinstance(text, str) or not text.strip():
            raise _error("Give a cron expression: minute hour day-of-month month day-of-week.", "schedule.cron")
        parts = text.split()
        if len(parts) != 5:
            raise _error(
                "A cron expression has five fields: minute hour day-of-month month day-of-week (e.g. 0 */6 * * *).",
                "schedule.cron",
            )
        try:
            parsed = crontab(
                minute=parts[0], hour=parts[1], day_of_month=parts[2], month_of_year=parts[3], day_of_week=parts[4]
            )
        except (ValueError, TypeError) as exc:
            raise _error(f"This cron expression does not parse: {exc}", "schedule.cron") from None
        if len(parsed.minute) != 1:  # type: ignore[attr-defined]  # set by crontab.__init__
            raise _error("Retrain at most once an hour: give one minute (e.g. 0 */6 * * *).", "schedule.cron")
        return {"every": "cron", "cron": " ".join(parts)}
    clean: dict[str, Any] = {"every": every, "minute": _int(spec, "minute", 0, 59, "The minute")}
    if every in ("daily", "weekly"):
        clean["hour"] = _int(spec, "hour", 0, 23, "The hour")
    if every == "weekly":
        clean["weekday"] = _int(spec, "weekday", 0, 6, "The weekday (0 = Monday)")
    return clean


def _crontab_fields(spec: dict[str, Any]) -> dict[str, str]:
    every = spec["every"]
    if every == "cron":
        minute, hour, dom, month, dow = spec["cron"].split()
        return {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month, "day_of_week": dow}
    fields = {"minute": str(spec["minute"]), "hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*"}
    if every in ("daily", "weekly"):
        fields["hour"] = str(spec["hour"])
    if every == "weekly":
        # Celery's (and cron's) day of week counts from Sunday = 0; the spec's from Monday = 0.
        fields["day_of_week"] = str((int(spec["weekday"]) + 1) % 7)
    return fields


def schedule_apply(*, ml_strategy: MLStrategy, spec: dict[str, Any]) -> None:
    """Make the PeriodicTask match a cleaned spec (create, change, or delete it for "off").
    Call inside the transaction that changes the ML strategy."""
    task = PeriodicTask.objects.filter(pk=ml_strategy.schedule_id).first() if ml_strategy.schedule_id else None
    if spec.get("every", "off") == "off":
        if task is not None:
            MLStrategy.objects.filter(pk=ml_strategy.pk).update(schedule=None)
            ml_strategy.schedule = None
            task.delete()
        return
    crontab_row, _ = CrontabSchedule.objects.get_or_create(**_crontab_fields(spec), timezone="UTC")
    if task is None:
        # A task left behind under this name (its link cleared by hand) is taken over.
        task = PeriodicTask.objects.filter(name=task_name(ml_strategy.pk)).first() or PeriodicTask(
            name=task_name(ml_strategy.pk)
        )
    task.task = TASK
    task.args = json.dumps([ml_strategy.pk])
    task.kwargs = "{}"
    task.queue = "default"
    task.crontab = crontab_row
    task.interval = None
    task.solar = None
    task.clocked = None
    task.enabled = True
    task.description = f"Retrain the ML strategy “{ml_strategy.name}” (#{ml_strategy.pk}) of {ml_strategy.owner.email}."
    task.save()
    if ml_strategy.schedule_id != task.pk:
        MLStrategy.objects.filter(pk=ml_strategy.pk).update(schedule=task)
        ml_strategy.schedule = task


def ml_schedule_set(
    *, ml_strategy: MLStrategy, schedule: dict[str, Any] | None, actor: User | None = None
) -> MLStrategy:
    """Set (or with None / ``{"every": "off"}`` remove) the ML strategy's retraining schedule.
    Errors name ``schedule.<key>``. Audited."""
    spec = schedule_clean(schedule)
    with transaction.atomic():
        locked = MLStrategy.objects.select_for_update(of=("self",)).select_related("owner").get(pk=ml_strategy.pk)
        schedule_apply(ml_strategy=locked, spec=spec)
        audit_record(
            action="ml.schedule.updated",
            actor=actor or locked.owner,
            user=locked.owner,
            target=locked,
            details={"schedule": spec},
        )
    ml_strategy.schedule = locked.schedule
    return locked


def _spec_of(task: PeriodicTask) -> dict[str, Any]:
    """The spec a task's crontab reads as (an operator may have written anything there)."""
    row = task.crontab
    if row is None:
        return {"every": "cron", "cron": ""}
    fields = (row.minute, row.hour, row.day_of_month, row.month_of_year, row.day_of_week)
    minute, hour, dom, month, dow = fields
    if minute.isdigit() and dom == "*" and month == "*":
        if hour == "*" and dow == "*":
            return {"every": "hourly", "minute": int(minute)}
        if hour.isdigit() and dow == "*":
            return {"every": "daily", "hour": int(hour), "minute": int(minute)}
        if hour.isdigit() and dow.isdigit() and int(dow) <= 7:
            return {"every": "weekly", "weekday": (int(dow) - 1) % 7, "hour": int(hour), "minute": int(minute)}
    return {"every": "cron", "cron": " ".join(fields)}


def _text(spec: dict[str, Any]) -> str:
    every = spec["every"]
    if every == "off":
        return "Off"
    if every == "hourly":
        return f"Hourly at minute {spec['minute']:02d}"
    if every == "daily":
        return f"Daily at {spec['hour']:02d}:{spec['minute']:02d} UTC"
    if every == "weekly":
        return f"Weekly on {WEEKDAYS[spec['weekday']]} at {spec['hour']:02d}:{spec['minute']:02d} UTC"
    return f"Cron “{spec['cron']}” (UTC)"


def _next_run(task: PeriodicTask, now: datetime) -> datetime | None:
    if not task.enabled or task.crontab is None:
        return None
    schedule = task.crontab.schedule
    # The first minute after `now` the crontab matches (at most one a week apart for specs
    # made here; an operator's exotic crontab is searched a year ahead).
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    when = start
    horizon = start + timedelta(days=366)
    while when < horizon:
        local = when.astimezone(schedule.tz) if getattr(schedule, "tz", None) else when
        if (
            local.month in schedule.month_of_year
            and local.day in schedule.day_of_month
            and (local.isoweekday() % 7) in schedule.day_of_week
        ):
            if local.hour in schedule.hour:
                if local.minute in schedule.minute:
                    return when
                when += timedelta(minutes=1)
                continue
            when = (when + timedelta(hours=1)).replace(minute=0)
            continue
        when = (when + timedelta(days=1)).replace(hour=0, minute=0)
    return None


def ml_schedule_describe(*, ml_strategy: MLStrategy, now: datetime | None = None) -> dict[str, Any]:
    """The schedule as the spec plus ``text`` ("Daily at 03:00 UTC"), ``next_run`` (aware UTC,
    None when off or disabled) and ``enabled`` (an operator may disable the task in the admin)."""
    # Through the relation: a list that select_related("schedule__crontab") reads no more rows.
    task = ml_strategy.schedule if ml_strategy.schedule_id else None
    base: dict[str, Any] = {"every": "off", "hour": None, "minute": None, "weekday": None, "cron": ""}
    if task is None:
        return {**base, "text": "Off", "next_run": None, "enabled": False}
    spec = _spec_of(task)
    text = _text(spec) + ("" if task.enabled else " (disabled)")
    return {
        **base,
        **spec,
        "text": text,
        "next_run": _next_run(task, now or timezone.now()),
        "enabled": bool(task.enabled),
    }
