"""The team page: owners and admins add logins to their shop with a role, change roles and
remove members; a new login chooses its password from a one-time invite link. A shop always
keeps an owner, only owners touch owners, and nothing crosses shops."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from clmsite.models import Membership, Role
from clmsite.services import MembershipRefused, do_add_member, do_invite_member, do_remove_member, invite_path, may_send_invite

pytestmark = pytest.mark.django_db


def role_of(user, tenant) -> str | None:
    membership = Membership.objects.filter(user=user, tenant=tenant).first()
    return membership.role if membership else None


def membership_id(user, tenant) -> int:
    return Membership.objects.get(user=user, tenant=tenant).pk


def invite_url(page: bytes) -> str:
    found = re.search(rb'id="invite-url">http://testserver([^<]+)<', page)
    assert found, "the page shows no invite link"
    return found.group(1).decode()


def test_a_new_login_chooses_its_password_from_the_invite_link_and_lands_in_the_shop(tenant_a, alice, client):
    # Given the owner adds a login nobody has yet
    client.force_login(alice)
    response = client.post("/settings/team/", {"username": "dana", "email": "dana@example.com", "role": "analyst"})
    assert response.status_code == 302 and response["Location"] == "/settings/team/"
    dana = get_user_model().objects.get(username="dana")
    assert dana.email == "dana@example.com" and not dana.has_usable_password()
    assert role_of(dana, tenant_a) == Role.ANALYST
    page = client.get("/settings/team/").content
    link = invite_url(page)
    assert b"invite link not used yet" in page
    assert b'id="invite-url"' not in client.get("/settings/team/").content  # shown once

    # When dana opens the link and chooses a password
    newcomer = Client()
    opened = newcomer.get(link)
    assert opened.status_code == 302 and "set-password" in opened["Location"] and link not in opened["Location"]  # the token leaves the address
    form = newcomer.get(opened["Location"])
    assert b"Choose your password" in form.content and b"dana" in form.content
    done = newcomer.post(opened["Location"], {"new_password1": "correct-horse-42", "new_password2": "correct-horse-42"})

    # Then she is logged in, in shop A, as an analyst; the link is spent; her password works
    assert done.status_code == 302 and done["Location"] == "/"
    dashboard = newcomer.get("/")
    assert dashboard.status_code == 200 and b"Shop A" in dashboard.content and b"Analyst" in dashboard.content
    spent = Client().get(link, follow=True)
    assert spent.status_code == 200 and b"This link no longer works" in spent.content
    assert Client().post("/login/", {"username": "dana", "password": "correct-horse-42"})["Location"] == "/"
    assert b"invite link not used yet" not in client.get("/settings/team/").content


def test_a_weak_password_is_refused_and_the_link_still_works(tenant_a, alice, client):
    client.force_login(alice)
    client.post("/settings/team/", {"username": "dana", "role": "viewer"})
    link = invite_url(client.get("/settings/team/").content)
    newcomer = Client()
    form_url = newcomer.get(link)["Location"]
    refused = newcomer.post(form_url, {"new_password1": "dana", "new_password2": "dana"})
    assert refused.status_code == 200 and b"too short" in refused.content
    assert not get_user_model().objects.get(username="dana").has_usable_password()
    assert newcomer.post(form_url, {"new_password1": "correct-horse-42", "new_password2": "correct-horse-42"}).status_code == 302


def test_an_existing_login_is_invited_and_reaches_the_shop_only_once_it_accepts(tenant_a, tenant_b, alice, charlie, client, mailoutbox):
    charlie.email = "charlie@example.com"
    charlie.save()
    client.force_login(alice)
    response = client.post("/settings/team/", {"username": "CHARLIE", "role": "viewer"}, follow=True)
    assert b"Invited charlie as Viewer" in response.content and b'id="invite-url"' not in response.content
    row = response.content.split(b'data-member="charlie"')[1].split(b"</tr>")[0]
    assert b"invited, not accepted yet" in row and b"charlie@example.com" not in row and b"last login" not in row  # the shop sees the name only
    assert mailoutbox[0].to == ["charlie@example.com"] and "Shop A invites you" in mailoutbox[0].subject
    charlie.refresh_from_db()
    assert charlie.check_password("charlie-pass-123")

    # Until charlie accepts, shop A is not his: no switcher entry, no switching to it
    other = Client()
    other.force_login(charlie)
    page = other.get("/customers/").content
    assert b"Shop A</strong> invites you to its team as Viewer" in page and b'<option value="%d"' % tenant_a.pk not in page
    assert other.post("/tenant/switch/", {"tenant_id": tenant_a.pk}).status_code == 404
    invitation = Membership.objects.get(user=charlie, tenant=tenant_a)
    assert client.post(f"/invitations/{invitation.pk}/accept/").status_code == 404  # alice cannot answer for him
    accepted = other.post(f"/invitations/{invitation.pk}/accept/", follow=True)
    assert b"Welcome to Shop A" in accepted.content and b"Viewer" in accepted.content
    assert Membership.objects.get(pk=invitation.pk).accepted and b"charlie@example.com" in client.get("/settings/team/").content


def test_a_declined_invitation_is_gone(tenant_a, tenant_b, alice, charlie, client):
    do_invite_member(tenant_a, "charlie", Role.ADMIN)
    other = Client()
    other.force_login(charlie)
    invitation = Membership.objects.get(user=charlie, tenant=tenant_a)
    declined = other.post(f"/invitations/{invitation.pk}/decline/", follow=True)
    assert b"Declined the invitation of Shop A" in declined.content and b"invites you" not in declined.content
    assert not Membership.objects.filter(user=charlie, tenant=tenant_a).exists()
    assert other.post(f"/invitations/{invitation.pk}/accept/").status_code == 404


def test_an_unaccepted_owner_invitation_is_no_owner(tenant_a, alice, charlie, client):
    do_invite_member(tenant_a, "charlie", Role.OWNER)
    client.force_login(alice)
    assert b"the only owner: make another owner before stepping down" in client.get("/settings/team/").content  # the page counts as the rule does
    client.post(f"/settings/team/{membership_id(alice, tenant_a)}/role/", {"role": "admin"})
    assert role_of(alice, tenant_a) == Role.OWNER  # charlie has not accepted: alice is still the only owner


def test_adding_twice_or_a_bad_name_changes_nothing_and_says_why(tenant_a, alice, bob, client):
    client.force_login(alice)
    users = get_user_model().objects.count()
    twice = client.post("/settings/team/", {"username": "bob", "role": "admin"})
    assert twice.status_code == 400 and b"bob is already in the team, as Viewer" in twice.content
    assert role_of(bob, tenant_a) == Role.VIEWER
    bad = client.post("/settings/team/", {"username": "dana smith", "role": "viewer"})
    assert bad.status_code == 400 and b"A new username takes 1 to 150" in bad.content
    bad_email = client.post("/settings/team/", {"username": "dana", "email": "not-an-address", "role": "viewer"})
    assert bad_email.status_code == 400 and b"Enter a valid email address" in bad_email.content
    assert get_user_model().objects.count() == users


def test_admins_manage_the_team_but_not_its_owners(tenant_a, alice, bob, django_user_model, client):
    erin = django_user_model.objects.create_user("erin", password="erin-pass-123")
    do_add_member(tenant_a, erin, Role.ADMIN)
    client.force_login(erin)
    page = client.get("/settings/team/").content
    assert b'<option value="owner"' not in page  # an admin cannot give what only owners give
    assert b"an owner manages owners" in page  # alice's row has no controls for her

    refused = client.post("/settings/team/", {"username": "dana", "role": "owner"})
    assert refused.status_code == 400 and not django_user_model.objects.filter(username="dana").exists()
    client.post(f"/settings/team/{membership_id(alice, tenant_a)}/role/", {"role": "viewer"})
    client.post(f"/settings/team/{membership_id(alice, tenant_a)}/remove/")
    client.post(f"/settings/team/{membership_id(erin, tenant_a)}/role/", {"role": "owner"})  # nor raise herself
    assert role_of(alice, tenant_a) == Role.OWNER and role_of(erin, tenant_a) == Role.ADMIN

    # Below owners an admin does everything
    assert client.post(f"/settings/team/{membership_id(bob, tenant_a)}/role/", {"role": "analyst"}).status_code == 302
    assert role_of(bob, tenant_a) == Role.ANALYST
    assert client.post(f"/settings/team/{membership_id(bob, tenant_a)}/remove/").status_code == 302
    assert role_of(bob, tenant_a) is None and django_user_model.objects.filter(username="bob").exists()  # the login stays

    # Stepping down below admin, erin has no team page to go back to
    assert client.post(f"/settings/team/{membership_id(erin, tenant_a)}/role/", {"role": "viewer"})["Location"] == "/"
    assert client.get("/settings/team/").status_code == 404


def test_a_shop_always_keeps_an_owner(tenant_a, alice, bob, client):
    client.force_login(alice)
    own = membership_id(alice, tenant_a)
    assert b"the only owner: make another owner before stepping down" in client.get("/settings/team/").content
    demoted = client.post(f"/settings/team/{own}/role/", {"role": "admin"}, follow=True)
    assert b"alice is the shop&#x27;s only owner" in demoted.content and role_of(alice, tenant_a) == Role.OWNER
    client.post(f"/settings/team/{own}/remove/")
    assert role_of(alice, tenant_a) == Role.OWNER

    # With a second owner, alice may step down, and then leave
    client.post(f"/settings/team/{membership_id(bob, tenant_a)}/role/", {"role": "owner"})
    assert role_of(bob, tenant_a) == Role.OWNER
    stepped = client.post(f"/settings/team/{own}/role/", {"role": "admin"})
    assert stepped["Location"] == "/settings/team/" and role_of(alice, tenant_a) == Role.ADMIN
    left = client.post(f"/settings/team/{own}/remove/")
    assert left["Location"] == "/" and role_of(alice, tenant_a) is None
    assert client.get("/").status_code == 404  # a login with no shop


def test_viewers_and_analysts_have_no_team_page(tenant_a, alice, bob, client):
    client.force_login(bob)
    assert client.get("/settings/team/").status_code == 404
    assert client.post(f"/settings/team/{membership_id(alice, tenant_a)}/remove/").status_code == 404
    assert client.post(f"/settings/team/{membership_id(bob, tenant_a)}/role/", {"role": "owner"}).status_code == 404
    assert client.post("/settings/team/", {"username": "mallory", "role": "owner"}).status_code == 404
    assert role_of(alice, tenant_a) == Role.OWNER and role_of(bob, tenant_a) == Role.VIEWER
    assert not get_user_model().objects.filter(username="mallory").exists()
    # Promoted, bob gets the page on his next request
    do_add_member(tenant_a, bob, Role.ADMIN)
    assert client.get("/settings/team/").status_code == 200


def test_no_shop_keeps_a_way_into_a_login_another_shop_takes_in(tenant_a, tenant_b, alice, charlie, client):
    # Shop B makes john, keeps his link, and lets him go; shop A then takes the unused login in
    john, _ = do_invite_member(tenant_b, "john", Role.VIEWER)
    old_link = invite_path(john.user)
    do_remove_member(tenant_b, john.pk, acting_role=Role.OWNER)
    taken, needs_link = do_invite_member(tenant_a, "John", Role.ADMIN)
    assert taken.accepted and needs_link and may_send_invite(taken)
    assert b"This link no longer works" in Client().get(old_link, follow=True).content  # B's link died with the change
    assert Client().get(invite_path(taken.user)).status_code == 302  # A's works

    # An unused login one shop holds cannot be taken in by another
    dana, _ = do_invite_member(tenant_a, "dana", Role.VIEWER)
    with pytest.raises(MembershipRefused, match="another shop has invited, not used yet"):
        do_invite_member(tenant_b, "DANA", Role.OWNER)
    assert may_send_invite(dana)
    client.force_login(alice)
    assert b'id="invite-url"' in client.post(f"/settings/team/{dana.pk}/invite/", follow=True).content


def test_odd_names_and_addresses_are_refused_or_normalised(tenant_a, alice, client, django_user_model):
    client.force_login(alice)
    long_email = client.post("/settings/team/", {"username": "longmail", "email": "a" * 250 + "@example.com", "role": "viewer"})
    assert long_email.status_code == 400 and not django_user_model.objects.filter(username="longmail").exists()
    cyrillic = client.post("/settings/team/", {"username": "\u0430lice2", "role": "viewer"})  # a Cyrillic a
    assert cyrillic.status_code == 400 and b"letters a-z" in cyrillic.content
    client.post("/settings/team/", {"username": "\uff46\uff55\uff4c\uff4c", "role": "viewer"})  # fullwidth "full"
    assert django_user_model.objects.filter(username="full").exists()  # as the login form will read it


def test_a_borrowed_session_cannot_guess_the_old_password(alice, client):
    client.force_login(alice)
    wrong = {"old_password": "guess", "new_password1": "correct-horse-42", "new_password2": "correct-horse-42"}
    for _ in range(4):
        assert client.post("/account/password/", wrong).status_code == 200
    out = client.post("/account/password/", wrong)
    assert out["Location"] == "/login/" and client.get("/account/password/").status_code == 302  # logged out
    alice.refresh_from_db()
    assert alice.check_password("alice-pass-123")


def test_a_member_removed_meanwhile_answers_404(tenant_a, alice, bob, client):
    client.force_login(alice)
    gone = membership_id(bob, tenant_a)
    client.post(f"/settings/team/{gone}/remove/")
    assert client.post(f"/settings/team/{gone}/role/", {"role": "admin"}).status_code == 404


def test_another_shops_members_answer_404_and_stay(tenant_a, tenant_b, alice, charlie, client):
    client.force_login(charlie)
    team_b = client.get("/settings/team/").content
    assert b"alice" not in team_b and b"charlie" in team_b
    foreign = membership_id(alice, tenant_a)
    for action, data in (("role", {"role": "viewer"}), ("remove", {}), ("invite", {})):
        assert client.post(f"/settings/team/{foreign}/{action}/", data).status_code == 404
    assert role_of(alice, tenant_a) == Role.OWNER


def test_password_change(alice, client):
    client.force_login(alice)
    page = client.get("/account/password/")
    assert page.status_code == 200 and b"Change your password" in page.content
    wrong = client.post("/account/password/", {"old_password": "nope", "new_password1": "correct-horse-42", "new_password2": "correct-horse-42"})
    assert wrong.status_code == 200 and b"incorrectly" in wrong.content
    done = client.post("/account/password/", {"old_password": "alice-pass-123", "new_password1": "correct-horse-42", "new_password2": "correct-horse-42"})
    assert done.status_code == 302 and client.get("/").status_code == 200  # this session stays
    alice.refresh_from_db()
    assert alice.check_password("correct-horse-42")
    assert Client().get("/account/password/").status_code == 302  # a login first


def test_add_member_command(tenant_a, alice):
    out = StringIO()
    call_command("add_member", "dana", "--tenant", "shop-a", "--role", "analyst", "--email", "dana@example.com", stdout=out)
    assert "Added dana to shop-a as analyst." in out.getvalue() and "/account/set-password/" in out.getvalue()
    dana = get_user_model().objects.get(username="dana")
    assert role_of(dana, tenant_a) == Role.ANALYST
    call_command("add_member", "dana", "--tenant", "shop-a", "--role", "owner", "--change", stdout=out)
    assert role_of(dana, tenant_a) == Role.OWNER
    with pytest.raises(CommandError, match="already in the team"):
        call_command("add_member", "dana", "--tenant", "shop-a")
    call_command("add_member", "dana", "--tenant", "shop-a", "--role", "viewer", "--change", stdout=out)
    with pytest.raises(CommandError, match="only owner"):
        call_command("add_member", "alice", "--tenant", "shop-a", "--role", "viewer", "--change")
    assert role_of(alice, tenant_a) == Role.OWNER


def test_the_team_page_lists_who_changed_access_and_keeps_it_to_the_shop(tenant_a, tenant_b, alice, bob, charlie, client):
    from clmsite.models import AccessEvent
    from clmsite.services import do_create_api_key
    from clmsite.tenancy import tenant_context

    client.force_login(alice)
    client.post("/settings/team/", {"username": "dana", "role": "viewer"})
    client.post(f"/settings/team/{membership_id(bob, tenant_a)}/role/", {"role": "analyst"})
    client.post(f"/settings/team/{membership_id(bob, tenant_a)}/remove/")
    client.post("/settings/api-keys/", {"name": "Shopify sync", "role": "viewer"})
    with tenant_context(tenant_a):
        key = AccessEvent.objects.filter(event="key_created").get()
    key_id = tenant_a.api_keys.get(name="Shopify sync").pk
    client.post(f"/settings/api-keys/{key_id}/revoke/")
    client.post(f"/settings/api-keys/{key_id}/revoke/")  # twice: one event
    do_create_api_key(tenant_a, name="CLI key")  # a command: no user
    call_command("add_member", "erin", "--tenant", "shop-a", stdout=StringIO())

    with tenant_context(tenant_a):
        events = [(e.event, e.user.username if e.user else None, e.via, e.detail) for e in AccessEvent.objects.order_by("pk")]
    assert events == [
        ("member_added", "alice", "web", "dana as Viewer (a new login)"),
        ("role_changed", "alice", "web", "bob from Viewer to Analyst"),
        ("member_removed", "alice", "web", "bob, who was Analyst"),
        ("key_created", "alice", "web", key.detail),
        ("key_revoked", "alice", "web", key.detail),
        ("key_created", None, "cli", events[5][3]),
        ("member_added", None, "cli", "erin as Viewer (a new login)"),
    ]
    assert key.detail.startswith("'Shopify sync' (Viewer, clm_")
    table = client.get("/settings/team/").content.split(b'data-testid="access-events"')[1]
    assert b"bob from Viewer to Analyst" in table and b"a command" in table

    other = Client()
    other.force_login(charlie)
    table_b = other.get("/settings/team/").content.split(b'data-testid="access-events"')[1]
    assert b"No changes yet" in table_b and b"bob" not in table_b and b"Shopify" not in table_b


def test_a_forgotten_password_is_reset_from_an_emailed_link(alice, client, mailoutbox):
    alice.email = "alice@example.com"
    alice.save()
    assert b"Forgot your password?" in client.get("/login/").content
    sent = client.post("/account/forgot-password/", {"email": "ALICE@example.com"}, follow=True)
    assert b"If a login uses that address" in sent.content
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["alice@example.com"]
    link = re.search(r"http://testserver(/account/set-password/\S+)", mailoutbox[0].body).group(1)
    form_url = client.get(link)["Location"]
    done = client.post(form_url, {"new_password1": "correct-horse-42", "new_password2": "correct-horse-42"})
    assert done["Location"] == "/" and client.get("/").status_code == 200
    alice.refresh_from_db()
    assert alice.check_password("correct-horse-42")
    assert b"This link no longer works" in Client().get(link, follow=True).content


def test_forgot_password_tells_nothing_and_floods_no_one(tenant_a, alice, client, mailoutbox):
    do_invite_member(tenant_a, "dana", Role.VIEWER, email="dana@example.com")  # invited, link not used
    for email in ("nobody@example.com", "dana@example.com"):
        answer = client.post("/account/forgot-password/", {"email": email}, follow=True)
        assert b"If a login uses that address" in answer.content
    assert mailoutbox == []  # no such login; an invited login's way in is its invite link
    alice.email = "alice@example.com"
    alice.save()
    for _ in range(5):
        client.post("/account/forgot-password/", {"email": "alice@example.com"})
    assert len(mailoutbox) == 3  # three an hour per address


def test_a_new_members_invite_is_emailed_and_a_dead_mail_server_is_said(tenant_a, alice, client, mailoutbox, settings):
    client.force_login(alice)
    added = client.post("/settings/team/", {"username": "dana", "email": "dana@example.com", "role": "viewer"}, follow=True)
    assert b"It has also been emailed to dana@example.com" in added.content
    assert len(mailoutbox) == 1 and invite_url(added.content) in mailoutbox[0].body and "Shop A" in mailoutbox[0].subject
    # A real SMTP client against a port nothing listens on
    settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "django.core.mail.backends.smtp.EmailBackend", "127.0.0.1", 1, False
    failed = client.post("/settings/team/", {"username": "erin", "email": "erin@example.com", "role": "viewer"}, follow=True)
    assert failed.status_code == 200 and b"could not be emailed to erin@example.com just now" in failed.content
    assert b'id="invite-url"' in failed.content and role_of(get_user_model().objects.get(username="erin"), tenant_a) == Role.VIEWER
    alice.email = "alice@example.com"
    alice.save()
    client.logout()
    down = client.post("/account/forgot-password/", {"email": "alice@example.com"}, follow=True)
    assert down.status_code == 200 and b"If a login uses that address" in down.content  # as if sent: addresses stay secret
