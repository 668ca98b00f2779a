from pathlib import Path

from celery import shared_task
from django.conf import settings

from apps.audit.services import audit_heads_write


@shared_task(acks_late=True, time_limit=600, ignore_result=True)
def audit_heads_export() -> None:
    """Daily: the audit chains' latest heads to AUDIT_HEAD_EXPORT_DIR, outside the database."""
    audit_heads_write(Path(settings.AUDIT_HEAD_EXPORT_DIR))
