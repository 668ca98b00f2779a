"""Settings shared by every mode, read from the environment (django-environ).

The mode follows from the environment alone:
- no REDIS_URL: embedded (in-memory Celery broker, Channels' in-memory layer, local-memory cache);
- REDIS_URL set: Redis is the Celery broker, the cache and the Channels layer.
DATABASE_URL defaults to a SQLite file in the project folder.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

SECRET_KEY = env("SECRET_KEY", default="dev-only-not-secret-" + "x" * 40)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "tradingplatform.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_celery_beat",
    "django_prometheus",
    "apps.common",
    "apps.audit",
    "apps.users",
    "apps.marketdata",
    "apps.accounts",
    "apps.trades",
    "apps.strategies",
    "apps.backtests",
    "apps.marketplace",
    "apps.ml",
    "apps.notifications",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # First of ours: every later log line of the request carries its id.
    "apps.common.log_context.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # CSP, Permissions-Policy, Cross-Origin-Opener-Policy on every response
    "apps.common.security_headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "apps.users.middleware.SecondFactorRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "tradingplatform.urls"
ASGI_APPLICATION = "tradingplatform.asgi.application"
WSGI_APPLICATION = "tradingplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.common.context_processors.platform",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded mode runs the web server, a Celery worker and beat as threads of one process:
    # WAL lets readers run beside the writer, IMMEDIATE transactions take the write lock up
    # front (no deadlock on lock upgrade), and busy_timeout waits instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis or embedded ------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
EMBEDDED = not REDIS_URL

CACHES: dict[str, dict[str, Any]]
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "tp:channels"},
        }
    }
    CELERY_BROKER_URL = REDIS_URL

# --- Celery -----------------------------------------------------------------------------------
CELERY_TASK_QUEUES_NAMES = ["default", "ticks", "orders", "backtests", "ml"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "apps.strategies.tasks.*": {"queue": "ticks"},
    "apps.trades.tasks.*": {"queue": "orders"},
    # Copies are orders: they run beside the leader's, never behind a backtest.
    "apps.marketplace.tasks.copy_*": {"queue": "orders"},
    "apps.backtests.tasks.*": {"queue": "backtests"},
    "apps.ml.tasks.*": {"queue": "ml"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task unless this
# is set (a new PostgreSQL connection per tick: measured as 13 % of a tick's time). With it the
# fixup closes them only every 10,000 tasks; tradingplatform.celery closes the unusable and
# obsolete ones (CONN_MAX_AGE, health checks) around each task instead, as Django does around
# each request.
CELERY_DB_REUSE_MAX = 10_000
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A late-acked message is redelivered after the visibility timeout; it must outlast the
# longest task so a running task is not handed to a second worker (RELIABILITY C3).
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, float] = {
    "visibility_timeout": env.float("CELERY_VISIBILITY_TIMEOUT", default=3600)
}
if EMBEDDED:
    # The in-memory transport is polled; poll often so a tick or an event is not held back.
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.05
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "apps.common.tasks.worker_heartbeat",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    # Market data: new closed bars of live series, and replays advanced by the bars due.
    "marketdata-candles-poll": {
        "task": "apps.marketdata.tasks.candles_poll",
        "schedule": timedelta(seconds=env.int("MARKETDATA_POLL_SECONDS", default=30)),
        "options": {"expires": 25},
    },
    "marketdata-replay-step": {
        "task": "apps.marketdata.tasks.replay_step",
        "schedule": timedelta(seconds=1),
        "options": {"expires": 5},
    },
}
HEARTBEAT_MAX_AGE_SECONDS = 60
# The audit trail's hash-chain heads, exported daily outside the database (apps.audit.tasks);
# `manage.py audit_verify --heads <file>` checks the trail against one. Copy them off the host.
AUDIT_HEAD_EXPORT_DIR = env("AUDIT_HEAD_EXPORT_DIR", default=str(BASE_DIR / "var" / "audit-heads"))
CELERY_BEAT_SCHEDULE["audit-heads-export"] = {
    "task": "apps.audit.tasks.audit_heads_export",
    "schedule": crontab(hour=0, minute=15),
    "options": {"expires": 3600},
}

# --- Backtests and research jobs (apps.backtests) ---------------------------------------------
# A job's task is stopped (soft limit: marked failed) after this long; a running job with no
# progress for longer (its worker died) is failed by the reaper. It must stay below the broker's
# visibility timeout above, or a slow job would be handed to a second worker.
BACKTEST_TIME_LIMIT_SECONDS = env.int("BACKTEST_TIME_LIMIT_SECONDS", default=1800)
BACKTEST_REAP_GRACE_SECONDS = 60
# Jobs (backtests, optimisations, walk-forwards, Monte Carlo) one user may have queued or running.
BACKTEST_MAX_ACTIVE_JOBS = env.int("BACKTEST_MAX_ACTIVE_JOBS", default=10)
# Embedded mode only: a job still queued after this long lost its message (the in-memory broker
# does not survive a restart): the reaper sends it again; the claim makes duplicates harmless.
BACKTEST_REQUEUE_SECONDS = env.int("BACKTEST_REQUEUE_SECONDS", default=600)
CELERY_BEAT_SCHEDULE["backtests-jobs-reap"] = {
    "task": "apps.backtests.tasks.jobs_reap",
    "schedule": timedelta(seconds=60),
    # The default queue: the backtests queue may be busy with the very jobs being checked.
    "options": {"expires": 55, "queue": "default"},
}
# Optuna's shared studies (SQLAlchemy URL). Empty: the platform's own database, or per-study
# SQLite files under OPTUNA_DATA_DIR when that database is an in-memory SQLite (the tests).
OPTUNA_STORAGE_URL = env("OPTUNA_STORAGE_URL", default="")
OPTUNA_DATA_DIR = env("OPTUNA_DATA_DIR", default=str(BASE_DIR / "var" / "optuna"))
OPTIMISATION_MAX_TRIALS = 5000
OPTIMISATION_GRID_LIMIT = 10_000
# Trials per chunk task: big enough to amortise loading the candles, small enough to spread
# over the workers and to report progress often. TPE chunks are smaller: each chunk's sampler
# learns from the trials the other chunks have told the study so far.
OPTIMISATION_GRID_CHUNK = 50
OPTIMISATION_TPE_CHUNK = 10
MONTE_CARLO_MAX_SIMULATIONS = 100_000
WALK_FORWARD_MAX_WINDOWS = 50
# Per ccxt exchange id: extra ccxt config for market data (options, rateLimit, ...), and
# "api_url" to send the venue's API host elsewhere (a proxy, a testnet). JSON in the environment.
MARKETDATA_CCXT_CONFIG: dict[str, dict[str, Any]] = env.json("MARKETDATA_CCXT_CONFIG", default={})

# --- Live trading (apps.accounts, apps.trades, deployments in apps.strategies) ------------------
# Broker credentials are encrypted with MultiFernet under these keys (newest first; Fernet keys
# from `Fernet.generate_key()`). Outside production, none set = one key derived from SECRET_KEY.
# Rotation: put the new key first, run `manage.py rotate_secrets`, then drop the old key.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# Tests only: send a ccxt exchange's API to a local server ({"binance": "http://127.0.0.1:PORT"}).
# Settings, never user input, so a user cannot make the workers call an arbitrary host.
CCXT_API_URL_OVERRIDES: dict[str, str] = env.json("CCXT_API_URL_OVERRIDES", default={})
# The paper venue is a database write: send paper orders right after commit in the same process
# instead of through the orders queue (keeps tick-to-submit latency low).
PAPER_SEND_INLINE = env.bool("PAPER_SEND_INLINE", default=True)
# An order the venue may have received is asked about, never resent; it is given up ("the venue
# never received it") only after this many consecutive not-found answers spanning this long.
ORDER_NOT_FOUND_CHECKS = 3
ORDER_INFLIGHT_SECONDS = env.int("ORDER_INFLIGHT_SECONDS", default=30)
# Order submissions per second per trading account (token bucket); over it, sends wait.
ORDER_RATE_PER_SECOND = env.float("ORDER_RATE_PER_SECOND", default=10.0)
# Hosts an Interactive Brokers account may point the workers at (TWS / IB Gateway); "*" = any.
IB_ALLOWED_HOSTS = env.list("IB_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "::1"])
CELERY_BEAT_SCHEDULE["trades-reconcile"] = {
    "task": "apps.trades.tasks.accounts_reconcile",
    "schedule": timedelta(seconds=60),
    "options": {"expires": 55},
}
CELERY_BEAT_SCHEDULE["trades-resolve-unknown"] = {
    "task": "apps.trades.tasks.orders_resolve_unknown",
    "schedule": timedelta(seconds=10),
    "options": {"expires": 9},
}
# Marketplace: every listing's verified track record (stats_* columns) follows the prices.
CELERY_BEAT_SCHEDULE["marketplace-listings-stats"] = {
    "task": "apps.marketplace.tasks.listings_stats_refresh_all",
    "schedule": timedelta(minutes=10),
    "options": {"expires": 540},
}
# Marketplace fees (apps.marketplace.services.fees): monthly and performance fees of the month
# that just closed, accrued minutes after midnight UTC (idempotent: a second run adds nothing).
CELERY_BEAT_SCHEDULE["marketplace-fees-accrue"] = {
    "task": "apps.marketplace.tasks.fees_accrue",
    "schedule": crontab(hour=0, minute=5),
    "options": {"expires": 3600},
}
# The copy fan-out: subscriptions per chunk task, and how old a leader fill may be and still be
# copied (the sweep records older missing copies as skipped instead of trading them late).
MARKETPLACE_FANOUT_CHUNK = env.int("MARKETPLACE_FANOUT_CHUNK", default=500)
MARKETPLACE_COPY_MAX_AGE_SECONDS = env.float("MARKETPLACE_COPY_MAX_AGE_SECONDS", default=900.0)
CELERY_BEAT_SCHEDULE["marketplace-copy-sweep"] = {
    "task": "apps.marketplace.tasks.copy_fanout_sweep",
    "schedule": timedelta(seconds=60),
    "options": {"expires": 55},
}
# The platform's share of every marketplace fee (the leader gets the rest, to the last digit).
MARKETPLACE_PLATFORM_FEE_SHARE = env.str("MARKETPLACE_PLATFORM_FEE_SHARE", default="0.2")
# Dotted path of a fees.PaymentProvider class; empty = NullPaymentProvider (nothing collected).
MARKETPLACE_PAYMENT_PROVIDER = env.str("MARKETPLACE_PAYMENT_PROVIDER", default="")

# --- ML strategies (apps.ml) ------------------------------------------------------------------
# A training's task is stopped (soft limit: marked failed) after this long; a running training
# with no progress for longer plus the grace (its worker died) is failed by the reaper. It must
# stay below the broker's visibility timeout, or a long training would go to a second worker.
ML_TRAIN_TIME_LIMIT_SECONDS = env.int("ML_TRAIN_TIME_LIMIT_SECONDS", default=1800)
ML_REAP_GRACE_SECONDS = 60
# Embedded mode only: a training still queued after this long lost its message: sent again.
ML_REQUEUE_SECONDS = env.int("ML_REQUEUE_SECONDS", default=600)
# Drift: every promoted model's live features against its training data, this often; a drift
# starts a retrain at most once per this many hours per ML strategy.
ML_DRIFT_CHECK_MINUTES = env.int("ML_DRIFT_CHECK_MINUTES", default=60)
ML_DRIFT_RETRAIN_COOLDOWN_HOURS = env.float("ML_DRIFT_RETRAIN_COOLDOWN_HOURS", default=24.0)
CELERY_BEAT_SCHEDULE["ml-trainings-reap"] = {
    "task": "apps.ml.tasks.training_reap",
    "schedule": timedelta(seconds=60),
    # The default queue: the ml queue may be busy with the very trainings being checked.
    "options": {"expires": 55, "queue": "default"},
}
CELERY_BEAT_SCHEDULE["ml-drift-check"] = {
    "task": "apps.ml.tasks.drift_check_all",
    "schedule": timedelta(minutes=ML_DRIFT_CHECK_MINUTES),
    "options": {"expires": ML_DRIFT_CHECK_MINUTES * 60 - 5},
}

# --- Notifications (apps.notifications) -------------------------------------------------------
# External messages per (user, channel, event type) at most one per this many seconds; the rest
# of a burst goes out as one message at the window's end. Failed sends: retried with backoff
# base * 2^(attempt-1) (capped) until NOTIFICATIONS_MAX_ATTEMPTS, then marked failed.
# TradingView webhooks (apps.strategies.webhooks): the timestamp window, the largest body, and
# the default and highest per-deployment limit of requests a minute.
WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = env.int("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", default=300)
WEBHOOK_BODY_MAX_BYTES = env.int("WEBHOOK_BODY_MAX_BYTES", default=10_000)
WEBHOOK_RATE_PER_MINUTE = env.int("WEBHOOK_RATE_PER_MINUTE", default=30)
WEBHOOK_RATE_MAX_PER_MINUTE = env.int("WEBHOOK_RATE_MAX_PER_MINUTE", default=600)
NOTIFICATIONS_BATCH_SECONDS = env.float("NOTIFICATIONS_BATCH_SECONDS", default=30.0)
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=5)
NOTIFICATIONS_RETRY_BASE_SECONDS = env.float("NOTIFICATIONS_RETRY_BASE_SECONDS", default=10.0)
NOTIFICATIONS_RETRY_MAX_SECONDS = 1800.0
NOTIFICATIONS_CLAIM_STALE_SECONDS = 300.0
# Outgoing webhooks to private/loopback addresses (a receiver on this machine): allowed in
# embedded mode, refused in production unless turned on.
NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE = env.bool("NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", default=EMBEDDED)
# The platform's Telegram bot (from @BotFather); empty = the Telegram channel is off.
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_BOT_USERNAME = env("TELEGRAM_BOT_USERNAME", default="")
TELEGRAM_API_URL = env("TELEGRAM_API_URL", default="https://api.telegram.org")
TELEGRAM_LINK_CODE_SECONDS = 600
CELERY_BEAT_SCHEDULE["notifications-deliveries-sweep"] = {
    "task": "apps.notifications.tasks.deliveries_sweep",
    "schedule": timedelta(seconds=30),
    "options": {"expires": 25},
}
CELERY_BEAT_SCHEDULE["notifications-telegram-poll"] = {
    "task": "apps.notifications.tasks.telegram_updates_poll",
    "schedule": timedelta(seconds=env.int("TELEGRAM_POLL_SECONDS", default=5)),
    "options": {"expires": 4},
}
CELERY_BEAT_SCHEDULE["notifications-daily-summaries"] = {
    "task": "apps.notifications.tasks.summaries_send_due",
    "schedule": crontab(minute=2),
    "options": {"expires": 3000},
}

# --- Auth, allauth, 2FA -----------------------------------------------------------------------
AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
# Sign-up and password reset answer the same whether or not the address is registered.
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_RATE_LIMITS = {
    # Failed logins per address and per IP: past these the login form refuses with "Too many
    # failed login attempts" (allauth's default of 30 login posts a minute per IP answers 429).
    "login_failed": "10/m/ip,5/5m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Trading platform] "
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="platform@localhost")

OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="Trading platform")
OTP_TOTP_THROTTLE_FACTOR = 1
# A token may be created, 2FA turned off, and (later) live accounts connected only within
# this many seconds of a verified second factor.
SECOND_FACTOR_FRESH_SECONDS = 15 * 60
BACKUP_CODE_COUNT = 10

KNOX_TOKEN_MODEL = "users.ApiToken"
REST_KNOX = {
    "TOKEN_MODEL": "users.ApiToken",
    "TOKEN_TTL": timedelta(days=90),
    "AUTO_REFRESH": False,
    "TOKEN_PREFIX": "tp_",
    "AUTH_HEADER_PREFIX": "Token",
}
API_TOKEN_MAX_TTL_DAYS = 365

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.users.authentication.ApiTokenAuthentication",
        "apps.users.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.common.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min", "user": "600/min"},
    "DEFAULT_PAGINATION_CLASS": "apps.common.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trading platform API",
    "DESCRIPTION": "Owner-scoped REST API. Authenticate with `Authorization: Token <token>` "
    "(create tokens in the portal) or a session verified with the second factor.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page are for signed-in users (and their tokens), not the public.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Two "method" choice sets (an optimisation's search, a Monte Carlo's draw): name each.
    "ENUM_NAME_OVERRIDES": {
        "OptimisationMethodEnum": "apps.backtests.models.Optimisation.Method",
        "MonteCarloMethodEnum": "apps.backtests.models.MonteCarlo.Method",
        "TradingAccountKindEnum": "apps.accounts.models.TradingAccount.Kind",
        "TradingAccountStatusEnum": "apps.accounts.models.TradingAccount.Status",
        "JobStatusEnum": "apps.backtests.models.JobStatus",
        "OrderStatusEnum": "apps.trades.models.Order.Status",
        "OrderSideEnum": "apps.trades.models.Order.Side",
        "WalkForwardModeEnum": "apps.backtests.models.WalkForward.Mode",
        "DeploymentStatusEnum": "apps.strategies.models.Deployment.Status",
        "DeploymentModeEnum": [("paper", "paper"), ("live", "live")],
        "InstrumentAssetClassEnum": "apps.marketdata.models.Instrument.AssetClass",
        "ListingAssetClassEnum": "apps.marketplace.models.Listing.AssetClass",
        "ListingStatusEnum": "apps.marketplace.models.Listing.Status",
        "SubscriptionStatusEnum": "apps.marketplace.models.Subscription.Status",
        "CopyTradeStatusEnum": "apps.marketplace.models.CopyTrade.Status",
        "FeeEntryStatusEnum": "apps.marketplace.models.FeeEntry.Status",
        "NotificationEventEnum": "apps.notifications.models.Event",
        "NotificationChannelEnum": "apps.notifications.models.Channel",
        "DeliveryStatusEnum": "apps.notifications.models.Delivery.Status",
        "QuietModeEnum": "apps.notifications.models.NotificationSettings.QuietMode",
        "ModelVersionStatusEnum": "apps.ml.models.ModelVersion.Status",
        "TimeframeEnum": "apps.marketdata.timeframes.CHOICES",
    },
}

# --- i18n, static -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- E-mail -----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_AGE = 60 * 60 * 12

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Request / task ids onto each record, and no secret in any line (apps.common.log_context).
    "filters": {
        "context": {"()": "apps.common.log_context.ContextFilter"},
        "redact": {"()": "apps.common.log_context.RedactSecretsFilter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["context", "redact"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "INFO"},
        # One line per task run and per beat send (every second in the demo) would bury the
        # console, which is also where embedded mode prints e-mails. Failures still show.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        "kombu.connection": {"level": "ERROR"},
    },
}

PLATFORM_NAME = "Trading platform"
DEMO_PASSWORD = env("DEMO_PASSWORD", default="demo-password-1")
# Demo candles for `make run` (apps.marketdata.demo): live from the exchange's public OHLCV endpoint
# when DEMO_FETCH_LIVE (off by default: it needs the internet), else the files of DEMO_CANDLES_DIR
# (the Makefile points it at ../shared/data/ohlcv when that exists), else generated ("synthetic").
DEMO_CANDLES_DIR = env("DEMO_CANDLES_DIR", default="")
DEMO_FETCH_LIVE = env.bool("DEMO_FETCH_LIVE", default=False)
