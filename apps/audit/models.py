from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.audit import chain


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Bulk UPDATE and DELETE skip Model.save()/delete(), so they are refused here too."""

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events cannot be changed.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list["AuditEvent"]:  # type: ignore[override]
        # New rows join the hash chain (apps.audit.chain) like every other write.
        return chain.append(list(objs))


class AuditEvent(models.Model):
    """One fact in the append-only audit trail.

    `actor` did `action`; `user` is whose account it concerns (they differ when staff act on a
    user). The foreign keys carry no database constraint and do nothing on delete, so removing
    a user never has to touch (and so never can alter) the trail; `actor_email` keeps who it was.
    On PostgreSQL a trigger refuses UPDATE and DELETE; the ORM refuses them everywhere.

    Every row is sealed into its user's hash chain (or the system chain) when it is written:
    `prev_id`/`prev_hash` name the chain's previous row, `hash` covers this row's content and
    that link (apps.audit.chain; `manage.py audit_verify` walks the chains).
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_email = models.CharField(max_length=254, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_id = models.BigIntegerField(null=True, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "audit_event"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            # each chain's last row, read before every append
            models.Index(fields=["user", "id"], name="audit_event_chain_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_email or '-'} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("Audit events cannot be changed.")
        chain.append([self])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")
