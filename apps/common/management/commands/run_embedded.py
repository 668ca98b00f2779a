from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.users.seed import DEMO_USERS


class Command(BaseCommand):
    help = "Migrate, seed the demo, and run the whole platform in this process (embedded mode)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-seed", action="store_true", help="Do not create demo data.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.EMBEDDED:
            raise CommandError(
                "REDIS_URL is set: this is production mode. Run the web, worker and beat "
                "processes separately (see README), or unset REDIS_URL for embedded mode."
            )
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not options["no_seed"]:
            call_command("seed_demo")
        url = f"http://{options['host']}:{options['port']}/"
        self.stdout.write(self.style.SUCCESS(f"\nTrading platform (embedded mode) at {url}"))
        self.stdout.write(f"Demo logins (password: {settings.DEMO_PASSWORD}):")
        for spec in DEMO_USERS:
            role = "operator, /admin/ after enrolling 2FA" if spec.get("is_staff") else "trader"
            self.stdout.write(f"  {spec['email']:<22} {role}")
        self.stdout.write("Mail (sign-up confirmation, password reset) is printed here.\nCtrl-C stops.\n")

        from tradingplatform.embedded import serve

        serve(host=options["host"], port=options["port"])
