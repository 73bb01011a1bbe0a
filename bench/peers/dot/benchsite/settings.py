"""Production-mode settings: DEBUG off, SQLite in WAL mode, persistent connections.

The harness passes the secret key, the database path and the toolkit's settings through the
environment; nothing here is meant for a real deployment.
"""

import os

SECRET_KEY = os.environ["DOT_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# Behind one TLS-terminating proxy, as the IdP is measured.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
# The middleware of a new Django project, less the messages framework nothing here uses.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DOT_DATABASE"],
        # Django's own advice for SQLite under concurrent writers, and the IdP's pragmas.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 5,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "CONN_MAX_AGE": None,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING_CONFIG = None

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    # The default, stated: every refresh issues a new refresh token and revokes the old one.
    "ROTATE_REFRESH_TOKEN": True,
    # Off by default; on here because the IdP detects reuse too (a replay ends the family).
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "SCOPES": {"read": "Read", "introspection": "Introspect tokens"},
}
