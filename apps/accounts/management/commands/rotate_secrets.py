"""``python manage.py rotate_secrets``: re-encrypt every trading account's credentials under the
newest key of FIELD_ENCRYPTION_KEYS (MultiFernet.rotate).

Rotation: put the new key first in FIELD_ENCRYPTION_KEYS (the old ones after it), restart, run
this, then remove the old keys. Idempotent: a token already under the newest key is left as it
is, so a second run rotates nothing. Each account is updated only if its token did not change
meanwhile (a reconnect racing the rotation wins).

A token no configured key can open (tampered, or encrypted under a key already removed) marks
that account needs_reconnect (audited; its owner is told) and the run carries on with the rest.
Exit status: 0 when every token was readable; 1 (after processing everything and printing the
counts) when any was not, so a deploy script stops before the old key is dropped.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts import crypto, services
from apps.accounts.models import TradingAccount

UNREADABLE_REASON = (
    "The stored credentials could not be decrypted during key rotation. Reconnect the account with its key."
)


class Command(BaseCommand):
    help = "Re-encrypt every trading account's credentials under the newest FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Accounts read per query.")

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = current = 0
        unreadable: list[int] = []
        accounts = (
            TradingAccount.objects.exclude(credentials_encrypted="")
            .only("pk", "credentials_encrypted")
            .order_by("pk")
            .iterator(chunk_size=options["batch_size"])
        )
        for account in accounts:
            token = account.credentials_encrypted
            if crypto.is_current(token):
                current += 1
                continue
            try:
                new_token = crypto.reencrypt(token)
            except crypto.CredentialsUnreadableError:
                unreadable.append(account.pk)
                services.account_mark_needs_reconnect(account_id=account.pk, reason=UNREADABLE_REASON)
                self.stderr.write(f"WARNING: account {account.pk}: credentials unreadable, marked needs_reconnect")
                continue
            updated = TradingAccount.objects.filter(pk=account.pk, credentials_encrypted=token).update(
                credentials_encrypted=new_token
            )
            if updated:
                rotated += 1
            else:
                current += 1  # changed meanwhile (a reconnect): already written under the newest key
        self.stdout.write(f"rotated {rotated}, already current {current}, unreadable {len(unreadable)}")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} account(s) had credentials no configured key can read and were marked "
                f"needs_reconnect: {', '.join(map(str, unreadable[:50]))}"
            )
