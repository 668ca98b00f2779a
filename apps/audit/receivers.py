from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

from apps.audit.services import audit_record

_FLAGS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


def record_admin_log_entry(sender: type, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    audit_record(
        action=f"admin.{_FLAGS.get(instance.action_flag, 'acted')}",
        actor=instance.user,
        user=None,
        details={
            "model": instance.content_type.model if instance.content_type else "",
            "object_id": instance.object_id or "",
            "object": instance.object_repr,
            "change": instance.get_change_message(),
        },
    )
