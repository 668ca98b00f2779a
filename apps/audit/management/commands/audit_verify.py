"""`manage.py audit_verify`: walk every chain of the audit trail (apps.audit.chain).

Exit 0 and "intact" when every row matches its hash and every link holds; exit 1 naming the
first broken row (the smallest id of an edited or deleted row) otherwise.
  --export PATH   also write the chains' latest heads as JSON there (an external copy);
  --heads PATH    check against heads exported earlier: each must still be there, unchanged
                  (this covers a chain's last rows, which no later row links to);
  --database      which database connection to check (a restored copy, for one).
"""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import audit_heads_write, audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chains; exit 1 naming the first broken row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", metavar="PATH", help="write the latest chain heads (JSON) to PATH")
        parser.add_argument("--heads", metavar="PATH", help="check against chain heads exported earlier")
        parser.add_argument("--database", default="default", help="the database connection to check")

    def handle(self, *args: Any, **options: Any) -> None:
        exported: dict[str, Any] | None = None
        if options["heads"]:
            try:
                exported = json.loads(Path(options["heads"]).read_text())
            except (OSError, ValueError) as error:
                raise CommandError(f"cannot read the exported heads {options['heads']}: {error}") from error
        verdict = audit_verify(using=options["database"], exported=exported)
        if options["export"]:
            path = audit_heads_write(Path(options["export"]), using=options["database"])
            self.stdout.write(f"chain heads written to {path}")
        if verdict.intact:
            self.stdout.write(self.style.SUCCESS(f"intact: {verdict.rows} rows in {verdict.chains} chains"))
            return
        self.stderr.write(
            f"BROKEN at id {verdict.broken_id}: {verdict.reason} ({verdict.rows} rows in {verdict.chains} chains)"
        )
        raise SystemExit(1)
