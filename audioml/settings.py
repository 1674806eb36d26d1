"""AudioML settings. Everything that differs between a laptop and production comes from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value not in ("", "True", "False"):
        raise ImproperlyConfigured(f"{name}={value!r}: use True or False")
    return value == "True"


def envint(name: str, default: int, minimum: int = 0) -> int:
    raw = os.getenv(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value}: must be at least {minimum}")
    return value


def envfloat(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.getenv(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value}: must be at least {minimum}")
    return value


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envdevice(name: str, default: str) -> str:
    """A torch device for training or predictions: auto, cpu, cuda or cuda:N (checked without importing torch)."""
    import re

    value = os.getenv(name, default).strip()
    if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+", value):
        raise ImproperlyConfigured(f"{name}={value!r}: use auto, cpu, cuda or cuda:N")
    return value


def envtrainers(name: str) -> dict:
    """External trainers as JSON: {"piper": {"command": ["..."], "layout": "ljspeech", "tasks": ["synthesis"],
    "timeout": 21600, "silence_timeout": 600}}; each is checked now, so a typo stops the start."""
    import json

    from training_app.external import TrainerSpec

    raw = os.getenv(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ImproperlyConfigured(f"{name}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name}: expected an object of trainer names")
    try:
        return {key: TrainerSpec.from_setting(key, spec) for key, spec in value.items()}
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


def database_from_url(url: str) -> dict:
    """Turn DATABASE_URL (sqlite:///path or postgres://user:pass@host:port/name) into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as dj-database-url reads them.
        path = unquote(parsed.path)[1:]
        return sqlite_database(Path(path) if path else DATA_DIR / "audioml.sqlite3")
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "audioml",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": envint("DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"connect_timeout": 5},
        }
    raise ImproperlyConfigured(f"DATABASE_URL={url!r}: use sqlite:///path or postgres://user@host:port/name")


def sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # IMMEDIATE transactions and a generous timeout keep the worker and the web process
        # from failing each other with "database is locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }


def s3_storage_options(bucket: str) -> dict:
    """django-storages' S3 backend for the bucket, configured from its own AWS_* variables. Names are never
    overwritten (a taken name gets a suffix, as on local disk), objects are private and every download URL is
    presigned; a slow or unreachable endpoint fails a request in seconds instead of hanging a probe. Every upload
    carries its SHA-256 for the server to check (and to report back: audioml/storage.py stored_sha256), and files
    up to 64 MB go in one PUT, so that this checksum covers the whole object."""
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    return {
        "bucket_name": bucket,
        "endpoint_url": os.getenv("AWS_S3_ENDPOINT_URL") or None,
        "region_name": os.getenv("AWS_S3_REGION_NAME") or None,
        "access_key": os.getenv("AWS_S3_ACCESS_KEY_ID") or os.getenv("AWS_ACCESS_KEY_ID") or None,
        "secret_key": os.getenv("AWS_S3_SECRET_ACCESS_KEY") or os.getenv("AWS_SECRET_ACCESS_KEY") or None,
        "location": os.getenv("AWS_LOCATION", "").strip("/"),
        "addressing_style": os.getenv("AWS_S3_ADDRESSING_STYLE") or None,
        "signature_version": "s3v4",
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
        "object_parameters": {"ChecksumAlgorithm": "SHA256"},
        "transfer_config": TransferConfig(
            multipart_threshold=64 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4
        ),
        "client_config": Config(
            connect_timeout=envint("AWS_S3_CONNECT_TIMEOUT", 5, minimum=1),
            read_timeout=envint("AWS_S3_READ_TIMEOUT", 60, minimum=1),
            retries={"max_attempts": 3, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": os.getenv("AWS_S3_ADDRESSING_STYLE") or "auto"},
        ),
    }


DATA_DIR = Path(os.getenv("AUDIOML_DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def load_secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data folder."""
    if key := os.getenv("SECRET_KEY"):
        return key
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        tmp = key_file.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        os.replace(tmp, key_file)
    return key_file.read_text().strip()


SECRET_KEY = load_secret_key()
DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# Behind HTTPS in production these must be on; the local run command serves plain http and keeps them off.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "False")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", "False")
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", "False")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "False")
# Behind a reverse proxy every request comes from the proxy's address: name the header it sets to the client's
# (X-Real-IP, X-Forwarded-For) for the audit trail and login throttling. Only with a proxy that always sets it.
CLIENT_ADDRESS_HEADER = os.getenv("CLIENT_ADDRESS_HEADER", "")
if envbool("USE_X_FORWARDED_PROTO", "False"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "ninja",
    "audioml",
    "datasets_app",
    "training_app",
    "registry_app",
]

MIDDLEWARE = [
    "audioml.middleware.RequestIdMiddleware",
    "audioml.middleware.ApiMethodNotAllowedMiddleware",
    "audioml.metrics.RequestMetricsMiddleware",
    "audioml.middleware.UploadLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "audioml.middleware.OutOfSpaceMiddleware",
]

ROOT_URLCONF = "audioml.urls"
WSGI_APPLICATION = "audioml.wsgi.application"
ASGI_APPLICATION = "audioml.asgi.application"

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
            ],
        },
    },
]

DATABASE_URL = os.getenv("DATABASE_URL", "")
DATABASES = {
    "default": database_from_url(DATABASE_URL) if DATABASE_URL else sqlite_database(DATA_DIR / "audioml.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed-login throttling (audioml/login_throttle.py): short, capped waits per account; a long lock per address.
LOGIN_THROTTLE_WINDOW_SECONDS = envint("LOGIN_THROTTLE_WINDOW_SECONDS", 900, minimum=1)
LOGIN_ACCOUNT_FAILURES = envint("LOGIN_ACCOUNT_FAILURES", 5, minimum=1)
LOGIN_ACCOUNT_LOCK_SECONDS = envint("LOGIN_ACCOUNT_LOCK_SECONDS", 2, minimum=1)
LOGIN_ACCOUNT_LOCK_MAX_SECONDS = envint("LOGIN_ACCOUNT_LOCK_MAX_SECONDS", 60, minimum=1)
LOGIN_ADDRESS_FAILURES = envint("LOGIN_ADDRESS_FAILURES", 20, minimum=1)
LOGIN_ADDRESS_LOCK_SECONDS = envint("LOGIN_ADDRESS_LOCK_SECONDS", 900, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", DATA_DIR / "media")).resolve()
# Media (clips, artifacts): local files under MEDIA_ROOT, or an S3-compatible bucket when AWS_STORAGE_BUCKET_NAME
# is set (django-storages; see audioml/storage.py for what differs between the two).
AWS_STORAGE_BUCKET_NAME = os.getenv("AWS_STORAGE_BUCKET_NAME", "").strip()
# Presigned download URLs (audio players, artifact downloads) live this long: a player keeps seeking with the URL
# it was redirected to, so it must outlast a listening session on an open page. STORAGE_PUBLIC_ENDPOINT_URL signs
# them for the address browsers reach the bucket at, when it differs from AWS_S3_ENDPOINT_URL.
STORAGE_URL_EXPIRE_SECONDS = envint("STORAGE_URL_EXPIRE_SECONDS", 3600, minimum=10)
STORAGE_PUBLIC_ENDPOINT_URL = os.getenv("STORAGE_PUBLIC_ENDPOINT_URL", "").strip()
STORAGES = {
    "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_storage_options(AWS_STORAGE_BUCKET_NAME)}
    if AWS_STORAGE_BUCKET_NAME
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Where training workers keep per-job working folders and the feature cache (local disk, not the media storage).
WORK_DIR = Path(os.getenv("AUDIOML_WORK_DIR", DATA_DIR / "work")).resolve()
# The feature cache is pruned to this size, least recently used entries first (0 turns caching into recomputing).
FEATURE_CACHE_MAX_BYTES = envint("FEATURE_CACHE_MAX_BYTES", 5 * 1024**3)
# With object storage, each training machine keeps the clips it has fetched under $AUDIOML_WORK_DIR/clip-cache
# (a later job on the same clips downloads nothing), pruned to this size, least recently used first.
CLIP_CACHE_MAX_BYTES = envint("CLIP_CACHE_MAX_BYTES", 20 * 1024**3)
# Large uploads are spooled here (not the system /tmp) so that the sweeper can find what a killed process left.
FILE_UPLOAD_TEMP_DIR = str(Path(os.getenv("FILE_UPLOAD_TEMP_DIR", WORK_DIR / "uploads")).resolve())
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# The sweeper (audioml/sweep.py) removes files without rows once they are older than this (longer than any
# upload, import or registration takes), every SWEEP_INTERVAL_MINUTES on the default worker cluster.
SWEEP_MIN_AGE_SECONDS = envint("SWEEP_MIN_AGE_SECONDS", 3600, minimum=0)
SWEEP_INTERVAL_MINUTES = envint("SWEEP_INTERVAL_MINUTES", 60, minimum=1)

# Uploads. The request limit applies to a whole multipart request; larger requests get 413.
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 512 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_NUMBER_FILES = envint("DATA_UPLOAD_MAX_NUMBER_FILES", 2000, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
CLIP_MIN_SECONDS = envfloat("CLIP_MIN_SECONDS", 0.1)
CLIP_MAX_SECONDS = envfloat("CLIP_MAX_SECONDS", 60.0, minimum=0.1)
# Background recordings (long ordinary audio for wake-word evaluation) have their own limit: 4 hours.
BACKGROUND_MAX_SECONDS = envfloat("BACKGROUND_MAX_SECONDS", 4 * 3600.0, minimum=1.0)
ZIP_MAX_ENTRIES = envint("ZIP_MAX_ENTRIES", 20000, minimum=1)
ZIP_MAX_RATIO = envint("ZIP_MAX_RATIO", 200, minimum=1)
INGEST_WORKERS = envint("INGEST_WORKERS", os.cpu_count() or 1, minimum=1)

# Predictions: bounded so that one user cannot starve the web threads (see registry_app/limits.py).
PREDICT_MAX_FILE_SECONDS = envfloat("PREDICT_MAX_FILE_SECONDS", 600.0, minimum=1.0)
PREDICT_MAX_REQUEST_SECONDS = envfloat("PREDICT_MAX_REQUEST_SECONDS", 1200.0, minimum=1.0)
PREDICT_MAX_CONCURRENT_PER_USER = envint("PREDICT_MAX_CONCURRENT_PER_USER", 2, minimum=1)
# Per web process; half of its threads by default, so the other half always serve the panel and the probes.
PREDICT_WORKERS = envint("PREDICT_WORKERS", max(1, envint("WEB_THREADS", 4, minimum=1) // 2), minimum=1)
# Shadow versions score in the background on this many threads per web process, with at most this many
# requests waiting (more are dropped and counted; see registry_app/traffic.py).
SHADOW_WORKERS = envint("SHADOW_WORKERS", 1, minimum=1)
SHADOW_QUEUE_SIZE = envint("SHADOW_QUEUE_SIZE", 32, minimum=0)
# How often the default worker cluster deletes logged predictions older than their model's retention.
PREDICTION_LOG_EXPIRY_MINUTES = envint("PREDICTION_LOG_EXPIRY_MINUTES", 60, minimum=1)

# django-q2. Two clusters share the ORM broker (or Redis when Q_REDIS_URL is set): the default one for short
# tasks and "training", which runs one long job at a time. A training task must never be handed out twice,
# so retry is far longer than the longest allowed job, max_attempts is 1 and each task claims its job
# atomically; a heartbeat reaper fails jobs whose worker died.
TRAINING_TIMEOUT = envint("TRAINING_TIMEOUT", 6 * 3600, minimum=60)
# Admin-configured external trainers a job may run instead of the built-in one (training_app/external.py).
EXTERNAL_TRAINERS = envtrainers("AUDIOML_EXTERNAL_TRAINERS")
Q_WORKERS = envint("Q_WORKERS", 1, minimum=1)
# Where training runs (training_app/ml/device.py): auto = a free GPU of this machine when it has one (several
# workers on a machine with several GPUs each take their own), else the CPU; cpu; cuda (a free GPU, required);
# cuda:N (that GPU). Predictions in the web process run on INFERENCE_DEVICE (the tiny models answer fast on one
# CPU thread; auto = the first GPU when there is one).
TRAINING_DEVICE = envdevice("TRAINING_DEVICE", "auto")
INFERENCE_DEVICE = envdevice("INFERENCE_DEVICE", "cpu")
HEARTBEAT_STALE_SECONDS = envint("HEARTBEAT_STALE_SECONDS", 120, minimum=10)
_q_base = {
    "orm": "default",
    "timeout": 600,
    "retry": 1800,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 500,
    "catch_up": False,
    "label": "Task queue",
    "poll": 1,
}
if redis_url := os.getenv("Q_REDIS_URL"):
    _q_base.pop("orm")
    _q_base["redis"] = redis_url
Q_CLUSTER = {
    **_q_base,
    "name": "default",
    "workers": envint("Q_DEFAULT_WORKERS", 1, minimum=1),
    "ALT_CLUSTERS": {
        "training": {
            "workers": Q_WORKERS,
            "recycle": 1,
            "queue_limit": 1,
            "timeout": TRAINING_TIMEOUT,
            "retry": TRAINING_TIMEOUT * 3,
            "max_attempts": 1,
            "ack_failures": True,
            "daemonize_workers": False,
        },
    },
}

# Prometheus metrics are collected across all web and worker processes through files in this folder
# (prometheus-client's multiprocess mode); scripts/run.sh empties it at start.
PROMETHEUS_MULTIPROC_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "prometheus")))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
# Optional bearer token for Prometheus scrapers; staff API tokens and staff sessions work too.
METRICS_TOKEN = os.getenv("METRICS_TOKEN", "")

# Every paginated API list: limit/offset with bounds (a huge value is a 422, not a database error).
NINJA_PAGINATION_CLASS = "audioml.pagination.LimitOffsetPagination"

# A cache every process shares (the database), so that the web process can see the workers' django-q2 stats.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "audioml_cache",
        "TIMEOUT": 300,
        # Culling (a third of the entries once there are more) would forget prediction slots and heartbeats.
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}

LOG_LEVEL = os.getenv("LOG_LEVEL", "INFO")
LOG_FORMAT = os.getenv("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "audioml.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "audioml.middleware.JsonLogFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
    },
}
