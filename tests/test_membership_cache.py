"""The middleware's cached memberships follow every change to memberships and tenants."""

from __future__ import annotations

import pytest

from clmsite.models import Membership, Role, Tenant
from clmsite.services import do_add_member

pytestmark = pytest.mark.django_db


def test_role_change_applies_on_the_next_page(tenant_a, alice, client):
    client.force_login(alice)
    assert client.get("/settings/api-keys/").status_code == 200  # owner: cached now
    do_add_member(tenant_a, alice, Role.VIEWER)
    assert client.get("/settings/api-keys/").status_code == 404
    assert client.get("/customers/").status_code == 200


def test_removed_membership_loses_the_tenant_at_once(tenant_a, alice, client):
    client.force_login(alice)
    assert client.get("/customers/").status_code == 200
    Membership.objects.filter(user=alice, tenant=tenant_a).delete()
    assert client.get("/customers/").status_code == 404


def test_new_membership_and_renamed_tenant_show_at_once(tenant_a, tenant_b, alice, client):
    client.force_login(alice)
    assert b"Shop B" not in client.get("/customers/").content
    do_add_member(tenant_b, alice, Role.VIEWER)
    assert b"Shop B" in client.get("/customers/").content  # the tenant switcher lists it
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    tenant.name = "Shop A renamed"
    tenant.save()
    assert b"Shop A renamed" in client.get("/customers/").content


def test_deleted_tenant_is_gone_at_once(tenant_a, tenant_b, alice, client):
    do_add_member(tenant_b, alice, Role.VIEWER)
    client.force_login(alice)
    assert client.get("/customers/").status_code == 200
    Tenant.objects.filter(pk=tenant_a.pk).delete()
    page = client.get("/customers/")
    assert page.status_code == 200 and b"Shop A" not in page.content and b"Shop B" in page.content


def test_a_list_read_before_the_commit_is_not_served_after_it(tenant_a, alice, client):
    """The race the generation closes: a page reads the old rows, the change commits and
    forgets the list, then that page stores what it read. The next page must not get it."""
    from django.core.cache import cache

    from clmsite.tenancy import _generation, _memberships_key

    client.force_login(alice)
    assert client.get("/settings/api-keys/").status_code == 200  # owner
    generation = _generation(alice.pk)  # the slow page's generation, read before the rows
    stale = list(Membership.objects.filter(user=alice).select_related("tenant"))
    do_add_member(tenant_a, alice, Role.VIEWER)  # the change commits and forgets
    cache.set(_memberships_key(alice.pk, generation), stale)  # the slow page stores the old rows
    assert client.get("/settings/api-keys/").status_code == 404
