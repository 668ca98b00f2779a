"""Writes of the notifications app. ``notify`` is what every other app calls.

- notify.py: ``notify(...)`` (the in-app row, the live event, the deliveries it plans),
  ``notify_many(...)`` (the same for a bulk write's thousands), ``notify_threshold(...)``, mark read.
- deliveries.py: sending a delivery (and its batch) on a channel, retries, the sweep.
- preferences.py: channel settings, webhook secret, alert rules.
- telegram_link.py: linking a Telegram chat by a one-time code (beat polls getUpdates).
- summaries.py: the daily P&L summary at each user's chosen hour.
"""

from apps.notifications.services.notify import NotificationItem, notify, notify_many, notify_threshold

__all__ = ["NotificationItem", "notify", "notify_many", "notify_threshold"]
