"""Production: PostgreSQL, Redis, HTTPS behind a proxy. Every secret comes from the environment.

Required: SECRET_KEY, ALLOWED_HOSTS (no "*") and REDIS_URL (the web, worker and beat processes
are separate, so the in-memory broker and layer of embedded mode cannot work). A missing one
stops the process at start with django-environ's ImproperlyConfigured naming the variable.
The TLS-terminating proxy in front must set X-Forwarded-Proto.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import REDIS_URL, env

DEBUG = False
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY.strip():
    # `SECRET_KEY=` left empty in .env reaches us as "", which django-environ accepts.
    raise ImproperlyConfigured("Set the SECRET_KEY environment variable (it is empty).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the site's host names; '*' is refused in production.")
if not REDIS_URL:
    raise ImproperlyConfigured(
        "Set the REDIS_URL environment variable: production runs web, worker and beat as separate "
        "processes, which share the Celery broker, the cache and the Channels layer through Redis."
    )
if not env.list("FIELD_ENCRYPTION_KEYS", default=[]):
    raise ImproperlyConfigured(
        "Set FIELD_ENCRYPTION_KEYS (comma-separated Fernet keys, newest first): broker credentials "
        "are encrypted with them, and production never derives a key from SECRET_KEY."
    )
ACCOUNT_EMAIL_VERIFICATION = "mandatory"

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "apps.common.log_format.JsonFormatter",
        }
    },
    # Each line carries request_id / task_id / user_id when known; secrets are redacted
    # (apps.common.log_context).
    "filters": {
        "context": {"()": "apps.common.log_context.ContextFilter"},
        "redact": {"()": "apps.common.log_context.RedactSecretsFilter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context", "redact"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
# Workers keep the JSON console handler above instead of Celery's own formatter.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
