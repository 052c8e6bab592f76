from django.apps import AppConfig


class ClmsiteConfig(AppConfig):
    name = "clmsite"
    verbose_name = "Tenancy"
