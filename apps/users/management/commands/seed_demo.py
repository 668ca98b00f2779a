"""Seed the demo: an operator and two traders, each with a known password. Idempotent."""

from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.users.models import User
from apps.users.seed import DEMO_USERS


class Command(BaseCommand):
    help = "Create the demo users (and, as later apps add them, demo data). Safe to run twice."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            self._users()
        self.stdout.write("Demo users ready: " + ", ".join(u["email"] for u in DEMO_USERS))

        from apps.marketdata.demo import demo_seed

        # Outside any transaction: the markets may be fetched over the network, and each
        # series is written in its own transaction.
        demo_seed(log=self.stdout.write)

        from apps.strategies.demo import demo_deployments_seed

        # A paper account and a running paper deployment on the replay market.
        leader = demo_deployments_seed(log=self.stdout.write)

        from apps.marketplace.demo import demo_marketplace_seed

        # That deployment listed and approved, and Bob copying it with a paper account.
        demo_marketplace_seed(leader=leader, log=self.stdout.write)

        from apps.ml.demo import demo_ml_seed

        # An ML strategy with a promoted model (trained now, a few seconds), a daily retraining
        # schedule and a drift history.
        demo_ml_seed(log=self.stdout.write)

    def _users(self) -> None:
        for spec in DEMO_USERS:
            user, created = User.objects.get_or_create(
                email=spec["email"],
                defaults={k: v for k, v in spec.items() if k != "email"},
            )
            if created:
                user.set_password(settings.DEMO_PASSWORD)
                user.save(update_fields=["password"])
            EmailAddress.objects.update_or_create(
                user=user, email=user.email, defaults={"verified": True, "primary": True}
            )
