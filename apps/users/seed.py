"""Demo accounts for `make run`."""

from typing import Any

DEMO_USERS: list[dict[str, Any]] = [
    {"email": "admin@demo.local", "display_name": "Operator", "is_staff": True, "is_superuser": True},
    {"email": "alice@demo.local", "display_name": "Alice (leader)"},
    {"email": "bob@demo.local", "display_name": "Bob (follower)"},
]
