"""``manage.py reconcile [--account N]``: reconcile trading accounts with their venues now.

Without --account: every active account. Prints one line per account (errors, halts and
mismatches included: they are also recorded as RiskEvents, see apps.trades.services.reconcile).
Exit code 2 for an unknown account id."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import TradingAccount
from apps.trades.services.reconcile import account_reconcile, accounts_to_reconcile


class Command(BaseCommand):
    help = "Compare venues' open orders, fills and positions with ours; import what we missed; halt on mismatches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account", type=int, action="append", help="Account id (repeatable). Default: all active."
        )
        parser.add_argument("--json", action="store_true", help="Print each report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[int] = options.get("account") or []
        if ids:
            missing = sorted(set(ids) - set(TradingAccount.objects.filter(pk__in=ids).values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"No trading account with id {', '.join(map(str, missing))}.", returncode=2)
        else:
            ids = accounts_to_reconcile(include_quiet_paper=True)
        for account_id in ids:
            report = account_reconcile(account_id=account_id)
            if options.get("json"):
                self.stdout.write(json.dumps(report.as_dict()))
            else:
                self.stdout.write(report.summary())
