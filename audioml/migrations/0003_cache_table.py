"""The shared cache table (CACHES["default"]: workers' stats for /api/ready, login throttling, prediction slots).

`migrate` creates it, so a deployment that never ran `createcachetable` still works; `createcachetable` stays
harmless (it skips tables that exist)."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("audioml", "0002_audit_event")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop, elidable=True)]
