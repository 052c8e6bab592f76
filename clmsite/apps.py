from django.apps import AppConfig


def _membership_changed(sender: type, instance: object, **kwargs: object) -> None:
    from clmsite.tenancy import forget_memberships

    forget_memberships([instance.user_id])  # type: ignore[attr-defined]


def _tenant_changed(sender: type, instance: object, **kwargs: object) -> None:
    from clmsite.models import Membership
    from clmsite.tenancy import forget_memberships

    forget_memberships(Membership.objects.filter(tenant_id=instance.pk).values_list("user_id", flat=True))  # type: ignore[attr-defined]


def _logged_out(sender: type, request: object, user: object, **kwargs: object) -> None:
    from django.contrib import messages

    if request is not None:
        messages.info(request, "You have been logged out.", fail_silently=True)  # type: ignore[arg-type]  # no messages outside a web request (Client.logout)


class ClmsiteConfig(AppConfig):
    name = "clmsite"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save

        from clmsite import lookups
        from clmsite.models import Membership, Tenant

        lookups.register()

        # The tenant middleware caches each user's memberships with their tenants
        # (clmsite.tenancy.user_memberships): a change to either drops the cached lists.
        post_save.connect(_membership_changed, sender=Membership, dispatch_uid="clm-memberships-membership-saved")
        post_delete.connect(_membership_changed, sender=Membership, dispatch_uid="clm-memberships-membership-deleted")
        post_save.connect(_tenant_changed, sender=Tenant, dispatch_uid="clm-memberships-tenant-saved")
        post_delete.connect(_tenant_changed, sender=Tenant, dispatch_uid="clm-memberships-tenant-deleted")
        user_logged_out.connect(_logged_out, dispatch_uid="clm-logged-out-message")
