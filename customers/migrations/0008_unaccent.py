# The unaccent extension behind accent-insensitive search (clmsite.lookups). PostgreSQL only;
# on SQLite the function is registered on each connection. unaccent is a trusted extension
# (PostgreSQL 13+): a user with CREATE on the database may create it. A user who may not gets a
# warning, not a failed migration: search then matches accents as typed (clmsite.lookups falls
# back to icontains) until an administrator runs CREATE EXTENSION unaccent.
import warnings

from django.db import DatabaseError, migrations, transaction


def create_unaccent(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'unaccent'")
        if cursor.fetchone():
            return
        try:
            with transaction.atomic(using=connection.alias):  # a savepoint: a refusal leaves the migration's transaction usable
                cursor.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        except DatabaseError as exc:
            warnings.warn(f"Could not create the unaccent extension ({exc}); search will match accents as typed. "
                          "Ask a database administrator to run: CREATE EXTENSION unaccent;", stacklevel=1)
    connection.clm_has_unaccent = None  # asked again by the next search


class Migration(migrations.Migration):
    dependencies = [("customers", "0007_order_status_lower_case")]

    operations = [migrations.RunPython(create_unaccent, migrations.RunPython.noop)]
