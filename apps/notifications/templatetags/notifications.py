"""``{% notification_bell %}`` (the top bar's bell with the unread count) and ``get_item``."""

from typing import Any

from django import template

from apps.notifications.selectors import notification_unread_count

register = template.Library()


@register.inclusion_tag("notifications/_bell.html", takes_context=True)
def notification_bell(context: dict[str, Any]) -> dict[str, Any]:
    user = context.get("user")
    unread = notification_unread_count(user_id=user.pk) if user is not None and user.is_authenticated else 0
    return {"unread": unread}


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, key)
