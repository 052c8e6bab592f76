from django.core.management.base import CommandError

from clmsite.models import Tenant


def tenant_from_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        known = ", ".join(Tenant.objects.values_list("slug", flat=True)[:20]) or "none yet"
        raise CommandError(f"No tenant with slug '{slug}' (known: {known}). Create one with create_tenant.")
    return tenant
