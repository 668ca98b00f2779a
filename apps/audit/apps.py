from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.db.models.signals import post_save

        from apps.audit.receivers import record_admin_log_entry

        # Every change made in the admin (Django writes a LogEntry) lands in the audit trail.
        post_save.connect(record_admin_log_entry, sender=LogEntry, dispatch_uid="audit-admin-log")
