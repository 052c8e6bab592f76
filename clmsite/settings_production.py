"""The hardened profile: ``DJANGO_SETTINGS_MODULE=clmsite.settings_production``.

It passes ``manage.py check --deploy`` and refuses to start with the demo secret key.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from clmsite.settings import *  # noqa: F403
from clmsite.settings import INSECURE_DEV_SECRET_KEY, SECRET_KEY, env_bool

DEBUG = False
# docker-compose.yml's placeholder, public in the repository like the dev key.
COMPOSE_PLACEHOLDER_KEY = "change-me-to-a-long-random-string-of-at-least-fifty-characters"
if SECRET_KEY in (INSECURE_DEV_SECRET_KEY, COMPOSE_PLACEHOLDER_KEY) or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("Set SECRET_KEY to a random string of at least 50 characters.")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
WHITENOISE_USE_FINDERS = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
