from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent
from apps.audit.services import SECURITY_ACTIONS


def security_event_list_for_user(*, user: Any, limit: int = 50) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(user=user, action__in=SECURITY_ACTIONS).order_by("-created_at", "-id")[:limit]
