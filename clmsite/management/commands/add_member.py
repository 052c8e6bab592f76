from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._tenant import tenant_from_slug
from clmsite.models import Role
from clmsite.services import MembershipRefused, do_change_member_role, do_invite_member, invite_path


class Command(ClmCommand):
    help = ("Add a login to a shop's team with a role, creating the login when there is none of that name "
            "(or, with --change, give a member a new role). The same rules as the Team page, acting as an owner.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--role", default=Role.VIEWER, choices=[r.value for r in Role], help="default: viewer")
        parser.add_argument("--email", default="", help="for a new login only")
        parser.add_argument("--change", action="store_true", help="the login is a member already: change its role")

    def handle(self, *args, username, tenant, role, email, change, **options):
        shop = tenant_from_slug(tenant)
        try:
            if change:
                membership = shop.memberships.filter(user__username__iexact=username.strip()).first()
                if membership is None:
                    raise MembershipRefused(f"{username} is not in the team of {shop.slug}; add them without --change.")
                membership = do_change_member_role(shop, membership.pk, role, acting_role=Role.OWNER)
                self.stdout.write(f"{membership.user.get_username()} is now {membership.role} in {shop.slug}.")
                return
            membership, needs_link = do_invite_member(shop, username, role, email=email, acting_role=Role.OWNER)
        except MembershipRefused as refusal:
            raise CommandError(str(refusal)) from None
        name = membership.user.get_username()
        if not membership.accepted:
            self.stdout.write(f"Invited {name} to {shop.slug} as {role}: {name} has a login already and joins on accepting the invitation, "
                              "shown at the top of their pages.")
            return
        self.stdout.write(f"Added {name} to {shop.slug} as {role}.")
        if needs_link:
            self.stdout.write(f"{name} has no password yet. Set one with `python manage.py changepassword {name}`, "
                              f"or send them this page of the site, where they choose it (valid for a few days): {invite_path(membership.user)}")
