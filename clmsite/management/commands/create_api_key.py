from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._tenant import tenant_from_slug
from clmsite.models import Role
from clmsite.services import do_create_api_key


class Command(ClmCommand):
    help = "Create an API key for a tenant. The key is printed once, as the last word of the last line."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--role", default=Role.ANALYST, choices=[r.value for r in Role], help="default: analyst")
        parser.add_argument("--name", default="CLI key")

    def handle(self, *args, tenant, role, name, **options):
        if not name.strip() or len(name) > 100:
            raise CommandError(f"The key's name takes 1 to 100 characters; this one has {len(name.strip())}.")
        key, raw = do_create_api_key(tenant_from_slug(tenant), role=role, name=name)
        self.stdout.write(f"Created {role} key '{key.name}' for {tenant}. It is shown only once; store it safely.")
        self.stdout.write(f"API key: {raw}")
