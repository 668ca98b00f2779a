"""Train an ML strategy now, in this process, and print the outcome.

    python manage.py ml_train ID [--json]

Runs the same training as the task (`training_run_now`: queued, claimed, trained, compared with
the promoted version). Prints the version's status, metrics and the comparison's reason (with
--json, one JSON object). Exit codes: 0 promoted or rejected, 1 the training failed (its reason
printed), 2 bad input (no such ML strategy, a training already active).
"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.errors import ApplicationError
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.services import training_run_now


class Command(BaseCommand):
    help = "Train an ML strategy now (in this process) and print the outcome."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ml_strategy_id", help="The ML strategy's id.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = options["ml_strategy_id"]
        try:
            pk = int(raw)
        except (TypeError, ValueError):
            raise CommandError(f"The ML strategy id is a number, not {raw!r}.", returncode=2) from None
        ml_strategy = MLStrategy.objects.filter(pk=pk).first()
        if ml_strategy is None:
            raise CommandError(f"There is no ML strategy {pk}.", returncode=2)
        try:
            version = training_run_now(ml_strategy=ml_strategy, trigger=ModelVersion.Trigger.ADMIN)
        except ApplicationError as exc:
            raise CommandError(exc.message, returncode=2) from None
        outcome = {
            "ml_strategy": ml_strategy.pk,
            "version": version.number,
            "status": version.status,
            "error": version.error,
            "metrics": version.metrics,
            "reason": (version.comparison or {}).get("reason", ""),
            "n_samples": version.n_samples,
        }
        if options["json"]:
            self.stdout.write(json.dumps(outcome, default=str))
        else:
            self.stdout.write(f"{ml_strategy.name} v{version.number}: {version.get_status_display()}")
            if version.error:
                self.stdout.write(f"  error: {version.error}")
            for key in ("auc", "log_loss", "accuracy", "sharpe"):
                if key in (version.metrics or {}):
                    self.stdout.write(f"  {key}: {version.metrics[key]}")
            if outcome["reason"]:
                self.stdout.write(f"  {outcome['reason']}")
        if version.status == ModelVersion.Status.FAILED:
            raise CommandError(f"The training failed: {version.error}", returncode=1)
