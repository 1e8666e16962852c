"""Settings for VoiceAI. Everything that differs between machines comes from
the environment through ``voiceai.env``; the defaults are the embedded ones
used by ``make run`` (SQLite, in-memory channel layer, local files, the
offline engine)."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from voiceai.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "dev-insecure-secret-key-only-for-debug" if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
PORT = env_int("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "clinics",
    "sessions.apps.ConsultationsConfig",
    "notes",
    "transcription",
    "agents",
]

MIDDLEWARE = [
    "voiceai.middleware.RequestIdMiddleware",
    "voiceai.middleware.NulByteQueryMiddleware",
    "voiceai.ops.health.HealthCheckMiddleware",
    "voiceai.ops.observability.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A clinic admin reads /admin/ in the clinic's zone, like the console.
    "clinics.admin_time_zone.AdminClinicTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username or address before the
# password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "voiceai.urls"
ASGI_APPLICATION = "voiceai.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Under ASGI every request's sync code runs in a thread of its own, so a
# persistent connection (CONN_MAX_AGE > 0) is kept by a thread that never
# comes back: one process held 74-95 PostgreSQL connections and answered 500
# ("too many clients") after ~90 creates (docs/deployment.md, "Database
# connections"). So on PostgreSQL each process borrows from a bounded psycopg
# pool and gives the connection back at the end of every request and every
# database call of the realtime pipeline (CONN_MAX_AGE 0 means "give back").
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
DATABASE_POOL = env_bool("DATABASE_POOL", True) and DATABASES["default"]["ENGINE"].endswith("postgresql")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # ``make run``: worker threads (batch jobs, note drafts) write beside
    # requests. A transaction that reads first and writes later could not
    # wait for SQLite's one write lock ("database is locked" at once);
    # IMMEDIATE takes the lock at BEGIN, waiting up to the timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
if DATABASE_POOL:
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured("DATABASE_CONN_MAX_AGE must be 0 while DATABASE_POOL is on (the pool reuses)")
    _pool_min = env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0)
    _pool_max = env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1)
    if _pool_max < _pool_min:
        raise ImproperlyConfigured("DATABASE_POOL_MAX_SIZE must be at least DATABASE_POOL_MIN_SIZE")
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    # Operators (and the pool-bound test and benchmark) see in
    # pg_stat_activity which process holds which connections.
    _options.setdefault("application_name", f"{env_str('DATABASE_APPLICATION_NAME', 'voiceai')}:{os.getpid()}")
    _options["pool"] = {
        "min_size": _pool_min,
        "max_size": _pool_max,
        # A caller waits this long for a free connection, then fails
        # instead of queueing forever.
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
        # Connections are recycled so a PostgreSQL fail-over or restart is
        # not remembered for long by idle pooled connections.
        "max_lifetime": 600.0,
        "max_idle": 120.0,
    }
# Several test runs can share one PostgreSQL server (parallel developers, CI):
# each names its own test database.
_test_db = env_str("TEST_DATABASE_NAME")
if _test_db:
    DATABASES["default"]["TEST"] = {"NAME": _test_db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 caps a pool at 100 connections and raises on the
                # 101st concurrent command; hundreds of streams per process
                # broadcast at once (measured in docs/benchmarks.md).
                "hosts": [{"address": REDIS_URL, "max_connections": 1000}],
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=10),
                "expiry": 30,
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "voiceai"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# The session relay (transcription/relay.py, docs/relay.md): events kept per
# session for resume, how long an idle session's log lives, and how far a
# subscriber may fall behind before it is dropped with a RelayGap.
RELAY_MAXLEN = env_int("RELAY_MAXLEN", 1000, minimum=10)
RELAY_IDLE_SECONDS = env_int("RELAY_IDLE_SECONDS", 3600, minimum=60)
# ... and once the session has ended: long enough for a dropped viewer to
# resume and see End; a later one gets the stored finals.
RELAY_ENDED_SECONDS = env_int("RELAY_ENDED_SECONDS", 120, minimum=10)
RELAY_QUEUE_SIZE = env_int("RELAY_QUEUE_SIZE", 1000, minimum=10)

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "ap-northeast-1")
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        # S3 with SSE-KMS under each clinic's own key (sessions/s3_storage.py).
        "BACKEND": "sessions.s3_storage.ClinicKmsS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL,
            "region_name": AWS_S3_REGION_NAME,
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# Login throttling (django-axes) on /accounts/login/ and /admin/login/: after
# LOGIN_FAILURE_LIMIT wrong passwords for one username, or from one address,
# that username (or address) is refused with 429 for LOGIN_LOCKOUT_MINUTES,
# even with the right password. `manage.py axes_reset` lifts every lockout.
# The address is the one client-IP rule's (voiceai/client_ip.py): behind the
# load balancer its last X-Forwarded-For hop, not the balancer itself (whose
# address every request shares). Each failure also writes an `auth.login_failed` audit row
# in the user's clinics (clinics.services.login_failure_audit).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = env_float("LOGIN_LOCKOUT_MINUTES", 15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "voiceai.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_CLIENT_STR_CALLABLE = "clinics.logins.axes_client_str"  # no usernames in log lines

# Request bodies: the JSON API never needs more than this; uploads have
# their own limit (BATCH_UPLOAD_MAX_BYTES).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1_000_000, minimum=1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clinics.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "clinics.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "voiceai.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["clinics.api.parsers.JSONParser"],  # deep nesting is a 400, not a 500
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "VoiceAI API",
    "DESCRIPTION": "Multi-tenant live transcription of medical consultations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LanguageEnum": "clinics.models.Language",
        "ConsentMethodEnum": "sessions.models.ConsentMethod",
        "SpeakerRoleEnum": "sessions.models.SpeakerRole",
        "RoleEnum": "clinics.models.Role",
        # Two "status" choice sets (sessions', notes'): the sessions' keeps the name it always had.
        "StatusEnum": "sessions.models.SessionStatus",
        "NoteStatusEnum": "notes.models.NoteStatus",
        "NoteEngineEnum": "notes.models.NoteEngineName",
        "NoteSectionEnum": "notes.models.NoteSection",
    },
}

# --- realtime pipeline -------------------------------------------------------
TRANSCRIPTION_ENGINE = env_choice("TRANSCRIPTION_ENGINE", "local", {"local", "fake", "aws"})
# Ask the engine to label speakers (spk_0, spk_1...: aws's show_speaker_label,
# the fake engine's spk_0), for the sessions' speaker roles. Off by default:
# it changes what Amazon Transcribe is asked for, so an operator turns it on
# knowing their languages support streaming speaker partitioning.
TRANSCRIPTION_SPEAKER_LABELS = env_bool("TRANSCRIPTION_SPEAKER_LABELS", False)
FAKE_ENGINE_MODE = env_choice("FAKE_ENGINE_MODE", "script", {"script", "echo", "refuse"})
FAKE_ENGINE_DELAY_MS = env_int("FAKE_ENGINE_DELAY_MS", 0, minimum=0)
# Echo mode ends a segment with a final every this many ms of audio (0: never).
FAKE_ENGINE_ECHO_FINAL_MS = env_int("FAKE_ENGINE_ECHO_FINAL_MS", 0, minimum=0)
LOCAL_ENGINE_MAX_DECODERS = env_int("LOCAL_ENGINE_MAX_DECODERS", 2, minimum=1)
STREAM_TOKEN_TTL_SECONDS = env_int("STREAM_TOKEN_TTL_SECONDS", 60, minimum=1)

# The MCP server (agents/, docs/mcp.md): tool calls and resource reads per
# API key per minute (Redis-counted when REDIS_URL is set).
MCP_CALLS_PER_MINUTE = env_int("MCP_CALLS_PER_MINUTE", 60, minimum=1)
STREAM_IDLE_TIMEOUT_SECONDS = env_float("STREAM_IDLE_TIMEOUT_SECONDS", 15.0)
AUDIO_FLUSH_SECONDS = env_float("AUDIO_FLUSH_SECONDS", 1.0)
SESSION_LEASE_SECONDS = env_int("SESSION_LEASE_SECONDS", 15, minimum=2)
# How often each server process looks for recordings disconnected longer
# than their clinic's grace (transcription/reaper.py); 0: never (cron only).
ABANDONED_SESSION_CHECK_SECONDS = env_float("ABANDONED_SESSION_CHECK_SECONDS", 60.0)
WS_ALLOWED_ORIGINS = env_list("WS_ALLOWED_ORIGINS")

# --- AWS Transcribe ----------------------------------------------------------
AWS_TRANSCRIBE_REGIONS = env_list("AWS_TRANSCRIBE_REGIONS", ["ap-northeast-1"])
AWS_TRANSCRIBE_ENDPOINT_URL = env_str("AWS_TRANSCRIBE_ENDPOINT_URL")
ENGINE_STREAMS_PER_REGION = env_int("ENGINE_STREAMS_PER_REGION", 25, minimum=1)
ENGINE_STARTS_PER_SECOND = env_int("ENGINE_STARTS_PER_SECOND", 25, minimum=1)
# Batch transcription uploads (POST /api/v1/transcriptions/): WAV size cap.
BATCH_UPLOAD_MAX_BYTES = env_int("BATCH_UPLOAD_MAX_BYTES", 200 * 1024 * 1024, minimum=1024)

# --- clinical notes (notes/, docs/notes.md) ------------------------------------
# The platform's note engine: extractive (offline rules, no model, the
# default) or bedrock (Amazon Bedrock's Converse API; used only for clinics
# that opted in with notes_bedrock_enabled, the others get extractive).
NOTES_ENGINE = env_choice("NOTES_ENGINE", "extractive", {"extractive", "bedrock"})
NOTES_BEDROCK_MODEL_ID = env_str("NOTES_BEDROCK_MODEL_ID", "anthropic.claude-3-5-sonnet-20240620-v1:0")
NOTES_BEDROCK_REGION = env_str("NOTES_BEDROCK_REGION", "ap-northeast-1")
NOTES_BEDROCK_ENDPOINT_URL = env_str("NOTES_BEDROCK_ENDPOINT_URL")  # a stand-in (tests); empty: AWS
NOTES_BEDROCK_TIMEOUT_SECONDS = env_float("NOTES_BEDROCK_TIMEOUT_SECONDS", 60.0)
NOTES_BEDROCK_MAX_TOKENS = env_int("NOTES_BEDROCK_MAX_TOKENS", 2000, minimum=100)
# The job: attempts for retryable failures (throttling, timeouts), the first
# retry's delay (doubled each time), how long a claimed job may run before
# another process takes it up, how often each process looks for due jobs
# (0: only when a session ends) and how long after a session ends its draft
# starts (the producer's last finals and seal land meanwhile).
NOTES_MAX_ATTEMPTS = env_int("NOTES_MAX_ATTEMPTS", 3, minimum=1)
NOTES_RETRY_BASE_SECONDS = env_float("NOTES_RETRY_BASE_SECONDS", 20.0)
NOTES_JOB_LEASE_SECONDS = env_int("NOTES_JOB_LEASE_SECONDS", 300, minimum=10)
NOTES_JOB_POLL_SECONDS = env_float("NOTES_JOB_POLL_SECONDS", 15.0)
NOTES_START_DELAY_SECONDS = env_float("NOTES_START_DELAY_SECONDS", 3.0)
# Server processes run note jobs in worker threads; off: only a process that
# calls notes.jobs.note_jobs_run_due (the test suite, a separate worker).
NOTES_WORKER_IN_PROCESS = env_bool("NOTES_WORKER_IN_PROCESS", True)

METRICS_TOKEN = env_str("METRICS_TOKEN")
# On AWS each task publishes scaling/alarm metrics to CloudWatch (voiceai/ops/cloudwatch.py).
CLOUDWATCH_METRICS_NAMESPACE = env_str("CLOUDWATCH_METRICS_NAMESPACE")
CLOUDWATCH_METRICS_SERVICE = env_str("CLOUDWATCH_METRICS_SERVICE", "voiceai")
# SIGTERM drain deadline (voiceai.ops.drain, voiceai.ops.serve). The load balancer's
# deregistration delay must exceed it.
DRAIN_SECONDS = env_float("DRAIN_SECONDS", 20.0)

# --- logging -------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
_PAYLOAD_LOG_LEVEL = "INFO" if LOG_LEVEL.upper() in {"DEBUG", "NOTSET", "TRACE"} else LOG_LEVEL
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "voiceai.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default config gives "django" a plain console handler of
        # its own when DEBUG is on; with the root's JSON handler every line
        # (each request under `make run`) came out twice. One format: JSON.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
        # One INFO line per successful sign-in otherwise; lockouts are WARNING.
        "axes": {"level": "WARNING"},
        # At DEBUG these log payloads: WebSocket frames (transcript text,
        # audio) and HTTP bodies and headers (keys). Never below INFO,
        # whatever LOG_LEVEL says.
        "uvicorn.error": {"level": _PAYLOAD_LOG_LEVEL},
        "websockets": {"level": _PAYLOAD_LOG_LEVEL},
        "botocore": {"level": _PAYLOAD_LOG_LEVEL},
        "boto3": {"level": _PAYLOAD_LOG_LEVEL},
        "s3transfer": {"level": _PAYLOAD_LOG_LEVEL},
        "urllib3": {"level": _PAYLOAD_LOG_LEVEL},
        "hpack": {"level": _PAYLOAD_LOG_LEVEL},
        "h2": {"level": _PAYLOAD_LOG_LEVEL},
        "awscrt": {"level": _PAYLOAD_LOG_LEVEL},
        "asyncio": {"level": _PAYLOAD_LOG_LEVEL},
        # redis-py's connection chatter (e.g. its maintenance-notification
        # probe on every new connection) says nothing an operator needs.
        "redis": {"level": _PAYLOAD_LOG_LEVEL},
    },
}

BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
_TLS_ONLY = BEHIND_TLS_PROXY and not DEBUG
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", _TLS_ONLY)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind the TLS load balancer the site is HTTPS only: browsers are told to
# keep it so (HSTS), and a plain-HTTP request that still arrives is
# redirected. The probes are answered before SecurityMiddleware (they come
# from the load balancer over plain HTTP); /metrics is exempt for an
# in-VPC scraper.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _TLS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _TLS_ONLY)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _TLS_ONLY)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _TLS_ONLY)
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
