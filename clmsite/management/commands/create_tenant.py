from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.models import Tenant
from clmsite.services import do_create_tenant


class Command(ClmCommand):
    help = "Create a tenant (a merchant's shop), optionally with an owner."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", help="username of an existing user who becomes the owner")
        parser.add_argument("--currency", default="USD", help="ISO 4217 code of the shop's money (default USD)")

    def handle(self, *args, slug, name, owner, currency, **options):
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_slug

        from customers.services.parsing import CURRENCIES

        try:
            validate_slug(slug)
            if not slug[0].isalnum():  # "-shop" would read as an option in every later command
                raise ValidationError("leading hyphen or underscore")
        except ValidationError:
            raise CommandError(f"'{slug}' is not a slug: use letters, digits, hyphens and underscores, starting with a letter or digit.") from None
        if len(slug) > 64:
            raise CommandError(f"The slug is {len(slug)} characters long; it takes at most 64.")
        if not name.strip() or len(name) > 200:
            raise CommandError("The name takes 1 to 200 characters.")
        if currency.upper() not in CURRENCIES:
            raise CommandError(f"'{currency}' is not an ISO 4217 currency code (such as USD, EUR or GBP).")
        if clash := Tenant.objects.filter(slug__iexact=slug).first():  # "Shop" and "shop" would be told apart by case alone
            raise CommandError(f"A tenant with slug '{clash.slug}' already exists.")
        if owner and not get_user_model().objects.filter(username=owner).exists():
            raise CommandError(f"No user named '{owner}'. Create the tenant without --owner, then add one with "
                               f"`python manage.py add_member --tenant {slug} {owner} --role owner`.")
        tenant = do_create_tenant(slug, name, owner_username=owner, currency=currency.upper())
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.name})" + (f" owned by {owner}" if owner else ""))
