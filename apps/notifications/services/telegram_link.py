"""Linking a Telegram chat to a user with a one-time code.

The settings page makes a code (``telegram_link_start``; valid ``TELEGRAM_LINK_CODE_SECONDS``,
600). The user sends it to the platform's bot (``/start CODE`` or just ``CODE``). Beat polls the
Bot API's getUpdates (``telegram_updates_poll``) and links the chat whose message carries a
valid code; a wrong or expired code is refused with a reply, and nothing is linked. A code is
used once. Progress through the updates is kept in TelegramCursor, so each update is handled
once (a reply may repeat if the process dies between linking and saving the cursor).
"""

import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.notifications.channels import DeliveryError, telegram
from apps.notifications.models import NotificationSettings, TelegramCursor
from apps.notifications.services.preferences import notification_settings_get_or_create

logger = logging.getLogger(__name__)

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 8
CODE_RE = re.compile(r"[A-Za-z0-9]{6,16}")


def _code_seconds() -> int:
    return int(getattr(settings, "TELEGRAM_LINK_CODE_SECONDS", 600))


@transaction.atomic
def telegram_link_start(*, user: Any, request: Any = None) -> NotificationSettings:
    """A new one-time link code for the user (the previous one stops working)."""
    prefs = notification_settings_get_or_create(user=user)
    prefs = NotificationSettings.objects.select_for_update().get(pk=prefs.pk)
    prefs.telegram_link_code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    prefs.telegram_link_expires_at = timezone.now() + timedelta(seconds=_code_seconds())
    prefs.save(update_fields=["telegram_link_code", "telegram_link_expires_at", "updated_at"])
    audit_record(action="notifications.telegram_link_started", actor=user, target=prefs, request=request)
    return prefs


@transaction.atomic
def telegram_unlink(*, user: Any, request: Any = None) -> NotificationSettings:
    prefs = notification_settings_get_or_create(user=user)
    prefs = NotificationSettings.objects.select_for_update().get(pk=prefs.pk)
    prefs.telegram_chat_id = ""
    prefs.telegram_username = ""
    prefs.telegram_link_code = ""
    prefs.telegram_link_expires_at = None
    prefs.save()
    audit_record(action="notifications.telegram_unlinked", actor=user, target=prefs, request=request)
    return prefs


@transaction.atomic
def telegram_link_by_code(*, code: str, chat_id: str, username: str = "") -> str:
    """Link ``chat_id`` to the user whose code this is. Returns the reply for the chat."""
    code = code.strip().upper()
    prefs = (
        NotificationSettings.objects.select_for_update().select_related("user").filter(telegram_link_code=code).first()
        if code
        else None
    )
    if prefs is None:
        return "That code is not valid. Open Notifications → Settings on the platform and send the code shown there."
    if prefs.telegram_link_expires_at is None or prefs.telegram_link_expires_at <= timezone.now():
        return "That code has expired. Make a new one on the platform's notification settings page."
    prefs.telegram_chat_id = str(chat_id)[:40]
    prefs.telegram_username = (username or "")[:80]
    prefs.telegram_link_code = ""
    prefs.telegram_link_expires_at = None
    prefs.save()
    audit_record(
        action="notifications.telegram_linked",
        user=prefs.user,
        target=prefs,
        details={"chat_id": prefs.telegram_chat_id},
    )
    return f"Linked. Notifications for {prefs.user.email} will arrive in this chat."


def _code_in(text: str) -> str:
    words = [w for w in text.split() if not w.startswith("/")]
    for word in reversed(words):
        if CODE_RE.fullmatch(word):
            return word
    return ""


def telegram_updates_poll() -> int:
    """Beat: handle the bot's new messages (link codes). Returns how many updates were read.
    Does nothing without TELEGRAM_BOT_TOKEN."""
    if not telegram.is_configured():
        return 0
    cursor, _ = TelegramCursor.objects.get_or_create(pk=1)
    try:
        updates = telegram.get_updates(cursor.last_update_id + 1)
    except DeliveryError as exc:
        logger.warning("telegram getUpdates failed: %s", exc)
        return 0
    last = cursor.last_update_id
    for update in updates:
        update_id = int(update.get("update_id", 0))
        if update_id <= last:
            continue
        last = update_id
        message = update.get("message") or {}
        chat = message.get("chat") or {}
        if not chat.get("id") or chat.get("type", "private") != "private":
            continue
        code = _code_in(str(message.get("text") or ""))
        if not code:
            reply = "Send the link code shown on the platform's notification settings page."
        else:
            reply = telegram_link_by_code(code=code, chat_id=str(chat["id"]), username=str(chat.get("username") or ""))
        try:
            telegram.send_text(str(chat["id"]), reply)
        except DeliveryError as exc:
            logger.warning("telegram reply to chat failed: %s", exc)
    TelegramCursor.objects.filter(pk=1).update(last_update_id=last, polled_at=timezone.now())
    return len(updates)
