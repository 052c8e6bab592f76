# The unaccent extension behind accent-insensitive search (clmsite.lookups). PostgreSQL only;
# on SQLite the function is registered on each connection. unaccent is a trusted extension
# (PostgreSQL 13+): the database's owner may create it.
from django.contrib.postgres.operations import UnaccentExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("customers", "0007_order_status_lower_case")]

    operations = [UnaccentExtension()]
