"""django-rest-knox's own migrations create `knox_authtoken` even when KNOX_TOKEN_MODEL points
at our `users.ApiToken`. Nothing uses that table, and its foreign key to users_user stops
PostgreSQL from truncating users (test flushes, `manage.py flush`), so it is dropped."""

from typing import Any

from django.db import migrations


def drop_table(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if "knox_authtoken" in connection.introspection.table_names():
        schema_editor.execute("DROP TABLE knox_authtoken")


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0001_initial"),
        ("knox", "0009_extend_authtoken_field"),
    ]
    operations = [migrations.RunPython(drop_table, migrations.RunPython.noop)]
