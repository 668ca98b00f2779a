"""The daily P&L summary, sent to each user at the local hour they chose.

The figures come from the apps that own them: a higher app registers a provider,
``register_summary_provider(fn)`` with ``fn(user_id, since, until) -> list[str] | None`` (lines
of text; None or [] = nothing to report), in its AppConfig.ready(). apps.trades registers the
realized P&L, fees and fills of the last 24 hours. A user with nothing to report still gets the
summary ("no trading"), so its absence means something is wrong.

Beat runs ``summaries_send_due`` every hour (a few minutes past); a summary is sent once per
local day (``daily_summary_sent_on``), so a second run in the same hour sends nothing.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from apps.notifications.models import Event, NotificationSettings
from apps.notifications.services.notify import notify

logger = logging.getLogger(__name__)

SummaryProvider = Callable[[int, datetime, datetime], list[str] | None]
_providers: list[SummaryProvider] = []


def register_summary_provider(provider: SummaryProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def summary_lines(user_id: int, since: datetime, until: datetime) -> list[str]:
    lines: list[str] = []
    for provider in _providers:
        try:
            lines.extend(provider(user_id, since, until) or [])
        except Exception:
            logger.exception("daily summary provider %r failed for user %s", provider, user_id)
    return lines


def summary_send(*, prefs: NotificationSettings, now: datetime) -> bool:
    """Send the user's summary for the local day ``now`` falls on, unless already sent."""
    local = now.astimezone(ZoneInfo(prefs.timezone or "UTC"))
    with transaction.atomic():
        claimed = (
            NotificationSettings.objects.filter(pk=prefs.pk)
            .exclude(daily_summary_sent_on=local.date())
            .update(daily_summary_sent_on=local.date())
        )
        if not claimed:
            return False
        lines = summary_lines(prefs.user_id, now - timedelta(hours=24), now)
        notify(
            user_id=prefs.user_id,
            event=Event.DAILY_SUMMARY,
            title=f"Daily summary for {local.date().isoformat()}",
            body="\n".join(lines) if lines else "No trading in the last 24 hours.",
            data={"date": local.date().isoformat(), "lines": lines},
            dedupe_key=f"summary:{local.date().isoformat()}",
        )
    return True


def summaries_send_due(*, now: datetime | None = None) -> int:
    """Beat (hourly): the summaries whose local hour is now. Returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    for prefs in NotificationSettings.objects.filter(daily_summary_hour__isnull=False).iterator():
        try:
            local = now.astimezone(ZoneInfo(prefs.timezone or "UTC"))
        except Exception:
            logger.warning("user %s has an unknown time zone %r", prefs.user_id, prefs.timezone)
            continue
        if local.hour != prefs.daily_summary_hour or prefs.daily_summary_sent_on == local.date():
            continue
        try:
            sent += summary_send(prefs=prefs, now=now)
        except Exception:
            logger.exception("daily summary of user %s failed", prefs.user_id)
    return sent
