"""Tenancy actions: tenants, memberships, API keys. Shared by the UI, the API and the CLI."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from clmsite.models import ROLE_RANK, AccessEvent, ApiKey, Membership, Role, Tenant
from clmsite.tenancy import lock_tenant, tenant_context

log = logging.getLogger("clm.team")


@transaction.atomic
def do_create_tenant(slug: str, name: str, *, owner_username: str | None = None, currency: str = "USD") -> Tenant:
    tenant = Tenant.objects.create(slug=slug, name=name, currency=currency)
    if owner_username:
        user = get_user_model().objects.get(username=owner_username)
        Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    return tenant


def do_add_member(tenant: Tenant, user: Any, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": role})
    return membership


# --- The team: who may work in a shop, and as what ---------------------------------------


def record_access(tenant: Tenant, event: str, detail: str, acting_user: Any = None) -> None:
    """Note a change of who may reach the shop, by whom: a user on the web, or a command."""
    by = acting_user if getattr(acting_user, "pk", None) else None
    with tenant_context(tenant):
        AccessEvent.objects.create(event=event, detail=detail[:300], user=by, via="web" if by else "cli")
    log.info("access: %s %s in %s: %s", by or "a command", event, tenant.slug, detail)


def access_events(tenant: Tenant, limit: int = 20) -> list[AccessEvent]:
    with tenant_context(tenant):
        return list(AccessEvent.objects.select_related("user")[:limit])


class MembershipRefused(Exception):
    """A team change the rules forbid; its message says why, in the merchant's words."""


def team(tenant: Tenant) -> list[Membership]:
    """The shop's members, owners first, then by name; invitations not yet accepted last."""
    members = Membership.objects.filter(tenant=tenant).select_related("user")
    return sorted(members, key=lambda m: (not m.accepted, -ROLE_RANK[Role(m.role)], m.user.get_username().lower()))


def get_membership(tenant: Tenant, membership_id: int, *, lock: bool = False) -> Membership:
    """The shop's membership, or 404. ``lock`` holds its row to the end of the transaction, so a
    change and a removal of one member made at once queue instead of colliding."""
    rows = Membership.objects.filter(tenant=tenant, pk=membership_id).select_related("user")
    membership = (rows.select_for_update(of=("self",)) if lock else rows).first()
    if membership is None:
        raise Http404("No such member")
    return membership


def grantable_roles(acting_role: str) -> list[str]:
    """The roles a member may give: an owner any; an admin any but owner (owners are made by
    owners, so an admin cannot raise anyone, themselves included, above their own rank)."""
    if acting_role == Role.OWNER:
        return list(Role.values)
    if acting_role == Role.ADMIN:
        return [Role.ADMIN, Role.ANALYST, Role.VIEWER]
    return []


def _check_may_manage(acting_role: str, target_role: str, new_role: str | None = None) -> None:
    if acting_role not in (Role.OWNER, Role.ADMIN):
        raise MembershipRefused("Only owners and admins manage the team.")
    if new_role is not None and new_role not in Role.values:
        raise MembershipRefused(f"'{new_role}' is not a role: choose {', '.join(Role.values)}.")
    if Role.OWNER in (target_role, new_role) and acting_role != Role.OWNER:
        raise MembershipRefused("Only an owner can make, change or remove an owner.")


def counts_as_owner(membership: Membership) -> bool:
    """An owner of the shop who can sign in: an owner invitation not yet accepted is none, nor
    a login an invite made that has not set its password (the shop would be left with an owner
    nobody can sign in as once the link is lost)."""
    return membership.role == Role.OWNER and membership.accepted and not is_pending(membership.user)


def _check_keeps_an_owner(membership: Membership, new_role: str | None) -> None:
    """A shop always keeps an owner: nobody else can make one. The tenant's row lock makes two
    owners demoting each other at once queue, so the second sees the first's change."""
    if counts_as_owner(membership) and new_role != Role.OWNER:
        lock_tenant(membership.tenant)
        owners = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.OWNER, accepted=True).select_related("user")
        if sum(counts_as_owner(owner) for owner in owners) <= 1:
            pending = " (an owner whose invite link is not used yet does not count until they set their password)" if len(owners) > 1 else ""
            raise MembershipRefused(f"{membership.user.get_username()} is the shop's only owner who can sign in. Make someone else an owner first{pending}.")


def is_pending(user: Any) -> bool:
    """A login made by an invite and not used yet: no password of its own, never logged in."""
    return not user.has_usable_password() and user.last_login is None


def may_send_invite(membership: Membership) -> bool:
    """A new set-password link may be made for a pending login that only this shop holds: a
    link for a login another shop also holds would let this shop take it over."""
    user = membership.user
    return (is_pending(user) and membership.accepted and not (user.is_staff or user.is_superuser)
            and not Membership.objects.filter(user=user).exclude(tenant_id=membership.tenant_id).exists())


class LinkTokenGenerator(PasswordResetTokenGenerator):
    """Django's password-reset token, also bound to the shops the login belongs to: a link made
    while one shop held the login dies as soon as any shop adds or removes it, so no shop can
    keep a way into a login another shop has since taken in."""

    def _make_hash_value(self, user: Any, timestamp: int) -> str:
        shops = sorted(Membership.objects.filter(user=user).values_list("tenant_id", flat=True))
        return super()._make_hash_value(user, timestamp) + ",".join(map(str, shops))


link_tokens = LinkTokenGenerator()


def invite_path(user: Any) -> str:
    """The path of the page where an invited member sets their password (one use, for
    ``PASSWORD_RESET_TIMEOUT``, and only while the login's shops stay as they are)."""
    return reverse("set_password", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": link_tokens.make_token(user)})


def new_username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a new login, or None. New names are ASCII: a look-alike
    letter (a Cyrillic а for a Latin a) would show two names as one in the team and the log.
    A name that is a login already needs none of this: it is invited as it is."""
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        return None
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        field.run_validators(username)
        if not username or not username.isascii():
            raise ValidationError("not a username")
    except ValidationError:
        return f"A new username takes 1 to {field.max_length} letters a-z, digits and @ . + - _ (no spaces)."
    return None


def _new_login(username: str, email: str) -> Any:
    """A login without a password, for an invite (:func:`new_username_problem`)."""
    user_model = get_user_model()
    problem = new_username_problem(username)
    if problem:
        raise MembershipRefused(problem)
    if email:
        try:
            validate_email(email)
            if len(email) > user_model._meta.get_field("email").max_length:
                raise ValidationError("too long")
        except ValidationError:
            raise MembershipRefused(f"'{email[:80]}' is not an email address.") from None
    user = user_model(username=username, email=email)
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same name made at this moment by another shop
        raise MembershipRefused(f"A login named {username} has just been made elsewhere. Add {username} again to invite that login.") from None
    return user


@transaction.atomic
def do_invite_member(tenant: Tenant, username: str, role: str, *, email: str = "", acting_role: str = Role.OWNER,
                     acting_user: Any = None) -> tuple[Membership, bool]:
    """Add ``username`` to the shop with ``role``. A new name becomes a login without a
    password, in the team at once, whose owner chooses the password from an invite link. An
    existing login (any case) is invited: it joins when its owner accepts, so no shop can pull
    in someone else's login or read its details. Returns the membership and whether it needs an
    invite link."""
    user_model = get_user_model()
    username, email = user_model.normalize_username(username.strip()), email.strip()
    _check_may_manage(acting_role, Role.VIEWER, role)
    lock_tenant(tenant)  # two admins adding one name at once queue here
    user = user_model.objects.filter(username__iexact=username).order_by("pk").first()
    if user is None:
        user, accepted, note = _new_login(username, email), True, " (a new login)"
    else:
        if existing := Membership.objects.filter(tenant=tenant, user=user).first():
            state = "" if existing.accepted else ", invited and not accepted yet"
            raise MembershipRefused(f"{user.get_username()} is already in the team, as {existing.get_role_display()}{state}. Change the role in the list.")
        if is_pending(user):
            if Membership.objects.filter(user=user).exists():
                raise MembershipRefused(f"{user.get_username()} is a new login another shop has invited, not used yet. Choose another name.")
            accepted, note = True, " (a login not used yet)"  # an unused login nobody holds: as good as new
        else:
            accepted, note = False, " (invited: joins on accepting)"
    membership = Membership.objects.create(tenant=tenant, user=user, role=role, accepted=accepted)
    record_access(tenant, "member_added", f"{user.get_username()} as {membership.get_role_display()}{note}", acting_user)
    return membership, accepted and is_pending(user)


@transaction.atomic
def do_change_member_role(tenant: Tenant, membership_id: int, role: str, *, acting_role: str, acting_user: Any = None) -> Membership:
    membership = get_membership(tenant, membership_id, lock=True)
    _check_may_manage(acting_role, membership.role, role)
    if membership.role != role:
        _check_keeps_an_owner(membership, role)
        old = membership.get_role_display()
        membership.role = role
        membership.save(update_fields=["role"])
        record_access(tenant, "role_changed", f"{membership.user.get_username()} from {old} to {membership.get_role_display()}", acting_user)
    return membership


@transaction.atomic
def do_remove_member(tenant: Tenant, membership_id: int, *, acting_role: str, acting_user: Any = None) -> Membership:
    """Take the member out of the shop, or withdraw an invitation. The login stays: it may
    belong to other shops."""
    membership = get_membership(tenant, membership_id, lock=True)
    _check_may_manage(acting_role, membership.role)
    _check_keeps_an_owner(membership, None)
    membership.delete()
    what = "who was" if membership.accepted else "invited as"
    record_access(tenant, "member_removed", f"{membership.user.get_username()}, {what} {membership.get_role_display()}", acting_user)
    return membership


def do_make_invite_link(tenant: Tenant, membership_id: int, *, acting_role: str, acting_user: Any = None) -> tuple[Membership, str]:
    """A new set-password link for a pending member (see ``may_send_invite``): the member and the link's path.
    Only an owner makes one for an owner: the link signs in as them (an admin made one and became an owner)."""
    membership = get_membership(tenant, membership_id)
    _check_may_manage(acting_role, membership.role)
    if not may_send_invite(membership):
        raise MembershipRefused(f"{membership.user.get_username()} has a password already (or belongs to another shop too): they log in with it, "
                                "and can change it under their name at the top of any page.")
    # A new unusable password (Django's is random) changes what the links are signed with: the
    # links made before this one stop working, so a link sent to the wrong address can be replaced.
    membership.user.set_unusable_password()
    membership.user.save(update_fields=["password"])
    record_access(tenant, "invite_link", f"for {membership.user.get_username()}", acting_user)
    return membership, invite_path(membership.user)


# --- Invitations, as the invited login sees them ----------------------------------------


def get_invitation(user: Any, membership_id: int) -> Membership:
    """The user's own invitation, or 404: nobody answers another login's invitations."""
    invitation = Membership.objects.select_for_update(of=("self",)).filter(pk=membership_id, user=user, accepted=False).select_related("tenant").first()
    if invitation is None:
        raise Http404("No such invitation")
    return invitation


@transaction.atomic
def do_accept_invitation(user: Any, membership_id: int) -> Membership:
    invitation = get_invitation(user, membership_id)
    invitation.accepted = True
    invitation.save(update_fields=["accepted"])
    record_access(invitation.tenant, "invite_accepted", f"{user.get_username()} joined as {invitation.get_role_display()}", user)
    return invitation


@transaction.atomic
def do_decline_invitation(user: Any, membership_id: int) -> Membership:
    invitation = get_invitation(user, membership_id)
    invitation.delete()
    record_access(invitation.tenant, "invite_declined", f"{user.get_username()} declined to join as {invitation.get_role_display()}", user)
    return invitation


@transaction.atomic
def do_create_api_key(tenant: Tenant, *, role: str = Role.ANALYST, name: str = "API key", acting_user: Any = None) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is shown once and never stored."""
    Role(role)  # raises ValueError for an unknown role
    raw, lookup, key_hash = ApiKey.generate()
    key = ApiKey.objects.create(
        tenant=tenant, role=role, name=name[:100] or "API key", lookup=lookup, key_hash=key_hash,
        created_by=acting_user if getattr(acting_user, "pk", None) else None,
    )
    record_access(tenant, "key_created", f"'{key.name}' ({key.get_role_display()}, clm_{key.lookup}_…)", acting_user)
    return key, raw


def get_api_key(tenant: Tenant, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(tenant=tenant, pk=key_id).first()
    if key is None:
        raise Http404("No such API key")
    return key


@transaction.atomic
def do_revoke_api_key(tenant: Tenant, key_id: int, *, acting_user: Any = None) -> ApiKey:
    key = get_api_key(tenant, key_id)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        record_access(tenant, "key_revoked", f"'{key.name}' ({key.get_role_display()}, clm_{key.lookup}_…)", acting_user)
    return key


def authenticate_api_key(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Keys look like ``clm_<lookup>_<secret>``."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "clm":
        return None
    key = ApiKey.objects.select_related("tenant").filter(lookup=parts[1], revoked_at__isnull=True).first()
    if key is None or not key.matches(raw_key):
        return None
    if key.last_used_at is None or (timezone.now() - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key
