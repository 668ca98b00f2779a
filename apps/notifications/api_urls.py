"""API of the notifications app (see api.py)."""

from apps.notifications.api import urlpatterns

__all__ = ["urlpatterns"]
