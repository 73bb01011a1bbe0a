"""Settings: defaults and environment variables, turned into the Flask config.

idp/infra/config_checks.py refuses the settings that are unsafe.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import click

from idp.core.scopes import DEFAULT_SCOPES

#: Every environment variable the IdP reads, with its default (None = derived).
ENV_DEFAULTS = {
    "SECRET_KEY": None,
    "SECRET_KEY_FALLBACKS": "",
    "DATABASE_URL": None,
    "IDP_ISSUER": "http://127.0.0.1:5000",
    "IDP_CODE_TTL": "60",
    "IDP_ACCESS_TOKEN_TTL": "3600",
    "IDP_REFRESH_TOKEN_TTL": str(90 * 24 * 3600),
    "IDP_REFRESH_GRACE_SECONDS": "60",
    "IDP_SECRET_OVERLAP_SECONDS": str(24 * 3600),
    "IDP_ENDED_RETENTION_SECONDS": str(7 * 24 * 3600),
    "IDP_API_RATE_LIMIT": "600 per minute",
    "IDP_INTROSPECTION_RATE_LIMIT": "20000 per minute",
    "IDP_TOKEN_RATE_LIMIT": "300 per minute",
    "IDP_CLIENT_RATE_LIMIT": "",
    "IDP_AUTH_FAILURE_RATE_LIMIT": "30 per minute;300 per hour",
    "IDP_LOGIN_PAIR_RATE_LIMIT": "5 per minute;20 per hour",
    "IDP_LOGIN_ADDRESS_RATE_LIMIT": "20 per minute;200 per hour",
    "IDP_LOGIN_ACCOUNT_RATE_LIMIT": "10 per minute;100 per hour",
    "IDP_LAST_USED_INTERVAL": "60",
    "IDP_LEAN_PATH": "1",
    "IDP_CLOCK_OFFSET_LIMIT": "2",
    "IDP_SESSION_IDLE_SECONDS": str(12 * 3600),
    "IDP_SESSION_MAX_SECONDS": str(7 * 24 * 3600),
    "IDP_ALLOW_SQLITE": "",
    "IDP_PROXY_HOPS": "0",
    "IDP_DB_POOL_SIZE": "5",
    "IDP_DB_MAX_OVERFLOW": "10",
    "IDP_DB_POOL_TIMEOUT": "5",
    "IDP_DB_LOCK_TIMEOUT_MS": "5000",
    "IDP_LOG_LEVEL": "INFO",
    "IDP_LOG_FORMAT": "text",
    "IDP_METRICS_BIND": "",
    "IDP_MAX_BODY_BYTES": str(64 * 1024),
    "IDP_SMTP_URL": "",
    "IDP_MAIL_FROM": "FlowEstate <no-reply@localhost>",
    "IDP_PASSWORD_RESET_TTL": "1800",
    "IDP_RESET_EMAIL_RATE_LIMIT": "3 per hour",
    "IDP_RESET_ADDRESS_RATE_LIMIT": "10 per minute;50 per hour",
    "IDP_TWO_STEP_RATE_LIMIT": "5 per minute;20 per hour",
    "IDP_SSF_LONG_POLL_SECONDS": "10",
    "IDP_SSF_RETENTION_SECONDS": str(7 * 24 * 3600),
    "IDP_SSF_INACTIVITY_SECONDS": "3600",
    "IDP_SSF_MAX_STREAMS": "100",
    "IDP_SSF_PUSH_TIMEOUT": "5",
    "IDP_SSF_PUSH_BACKOFF_MAX": "300",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_KEY_PREFIX": "idp",
}

#: Seconds a rate-limit counter call may take before the store counts as down.
COUNTER_STORE_TIMEOUT = 0.5


class ConfigError(click.ClickException, RuntimeError):
    """Raised when the settings are unsafe for the mode the IdP would run in.

    A ClickException so ``flask`` prints just the message; a RuntimeError so gunicorn's
    arbiter does the same when the check runs in its ``on_starting`` hook.
    """


def is_loopback_issuer(issuer: str) -> bool:
    """Development mode exists only for an http issuer on a loopback host."""
    parts = urlsplit(issuer)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _int(env: dict, name: str) -> int:
    """Read one integer setting, naming it when it is not a number."""
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {env[name]!r}.") from None


def _seconds(env: dict, name: str) -> float:
    """Read one setting in seconds, fractions allowed, naming it when it is not a number."""
    try:
        return float(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {env[name]!r}.") from None


def metrics_address(bind: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) of the metrics listener, as (host, port)."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"IDP_METRICS_BIND must be host:port, e.g. 127.0.0.1:9100, got {bind!r}.")
    return host, int(port)


def database_url(url: str) -> str:
    """Send bare PostgreSQL URLs to psycopg 3, the driver we ship (psycopg2 is not installed)."""
    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def counter_store_options(uri: str) -> dict:
    """Short socket timeouts, so an unreachable Redis costs milliseconds, not a request."""
    if uri.startswith(("redis://", "rediss://", "redis+")):
        return {"socket_timeout": COUNTER_STORE_TIMEOUT,
                "socket_connect_timeout": COUNTER_STORE_TIMEOUT}
    return {}


def _dev_secret_key(instance_path: str) -> str:
    """Keep one random development key in the instance folder so restarts keep sessions."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written whole to a private file of its own (never readable by others even for a moment),
    # then linked into place: the link is atomic and fails if the name exists, so when several
    # processes start at once on a fresh checkout (gunicorn's master and others beside it),
    # one key wins and the rest read it complete, never half written.
    draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(key)
    try:
        os.link(draft, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        draft.unlink()
    return key


def build_config(instance_path: str, environ=None) -> dict:
    """Turn environment variables into the Flask config mapping."""
    env = dict(ENV_DEFAULTS)
    source = os.environ if environ is None else environ
    env.update({k: v for k, v in source.items() if k in ENV_DEFAULTS and v != ""})
    issuer = env["IDP_ISSUER"].rstrip("/")
    development = is_loopback_issuer(issuer)
    url = database_url(env["DATABASE_URL"] or f"sqlite:///{Path(instance_path) / 'idp.sqlite3'}")
    secret_key = env["SECRET_KEY"]
    if secret_key is None and development:
        secret_key = _dev_secret_key(instance_path)
    config = {
        "SECRET_KEY": secret_key,
        # Previous keys, newest first: Flask checks sessions against them and refresh seals
        # made before a key rotation still open (idp/oauth/refresh_token.py); nothing new uses them.
        "SECRET_KEY_FALLBACKS": [
            key.strip() for key in env["SECRET_KEY_FALLBACKS"].split(",") if key.strip()
        ],
        "IDP_DEVELOPMENT": development,
        "IDP_ISSUER": issuer,
        "SQLALCHEMY_DATABASE_URI": url,
        "IDP_CODE_TTL": _int(env, "IDP_CODE_TTL"),
        "IDP_ACCESS_TOKEN_TTL": _int(env, "IDP_ACCESS_TOKEN_TTL"),
        "IDP_REFRESH_TOKEN_TTL": _int(env, "IDP_REFRESH_TOKEN_TTL"),
        "IDP_REFRESH_GRACE_SECONDS": _int(env, "IDP_REFRESH_GRACE_SECONDS"),
        "IDP_SECRET_OVERLAP_SECONDS": _int(env, "IDP_SECRET_OVERLAP_SECONDS"),
        "IDP_ENDED_RETENTION_SECONDS": _int(env, "IDP_ENDED_RETENTION_SECONDS"),
        "IDP_LAST_USED_INTERVAL": _int(env, "IDP_LAST_USED_INTERVAL"),
        "IDP_CLOCK_OFFSET_LIMIT": _seconds(env, "IDP_CLOCK_OFFSET_LIMIT"),
        "IDP_SESSION_IDLE_SECONDS": _int(env, "IDP_SESSION_IDLE_SECONDS"),
        "IDP_SESSION_MAX_SECONDS": _int(env, "IDP_SESSION_MAX_SECONDS"),
        "IDP_API_RATE_LIMIT": env["IDP_API_RATE_LIMIT"],
        "IDP_INTROSPECTION_RATE_LIMIT": env["IDP_INTROSPECTION_RATE_LIMIT"],
        "IDP_TOKEN_RATE_LIMIT": env["IDP_TOKEN_RATE_LIMIT"],
        "IDP_CLIENT_RATE_LIMIT": env["IDP_CLIENT_RATE_LIMIT"],
        "IDP_AUTH_FAILURE_RATE_LIMIT": env["IDP_AUTH_FAILURE_RATE_LIMIT"],
        "IDP_LOGIN_PAIR_RATE_LIMIT": env["IDP_LOGIN_PAIR_RATE_LIMIT"],
        "IDP_LOGIN_ADDRESS_RATE_LIMIT": env["IDP_LOGIN_ADDRESS_RATE_LIMIT"],
        "IDP_LOGIN_ACCOUNT_RATE_LIMIT": env["IDP_LOGIN_ACCOUNT_RATE_LIMIT"],
        "IDP_ALLOW_SQLITE": env["IDP_ALLOW_SQLITE"].lower() in ("1", "true", "yes"),
        "IDP_LEAN_PATH": env["IDP_LEAN_PATH"].lower() in ("1", "true", "yes"),
        "IDP_PROXY_HOPS": _int(env, "IDP_PROXY_HOPS"),
        "IDP_DB_POOL_SIZE": _int(env, "IDP_DB_POOL_SIZE"),
        "IDP_DB_MAX_OVERFLOW": _int(env, "IDP_DB_MAX_OVERFLOW"),
        "IDP_DB_POOL_TIMEOUT": _int(env, "IDP_DB_POOL_TIMEOUT"),
        "IDP_DB_LOCK_TIMEOUT_MS": _int(env, "IDP_DB_LOCK_TIMEOUT_MS"),
        "IDP_LOG_LEVEL": env["IDP_LOG_LEVEL"].upper(),
        "IDP_LOG_FORMAT": env["IDP_LOG_FORMAT"].lower(),
        "IDP_METRICS_BIND": env["IDP_METRICS_BIND"],
        # Account mail and two-step sign-in (idp/infra/mail.py, idp/signin/).
        "IDP_SMTP_URL": env["IDP_SMTP_URL"],
        "IDP_MAIL_FROM": env["IDP_MAIL_FROM"],
        "IDP_PASSWORD_RESET_TTL": _int(env, "IDP_PASSWORD_RESET_TTL"),
        "IDP_RESET_EMAIL_RATE_LIMIT": env["IDP_RESET_EMAIL_RATE_LIMIT"],
        "IDP_RESET_ADDRESS_RATE_LIMIT": env["IDP_RESET_ADDRESS_RATE_LIMIT"],
        "IDP_TWO_STEP_RATE_LIMIT": env["IDP_TWO_STEP_RATE_LIMIT"],
        # Shared Signals (docs/ssf.md, "Configuration").
        "IDP_SSF_LONG_POLL_SECONDS": _seconds(env, "IDP_SSF_LONG_POLL_SECONDS"),
        "IDP_SSF_RETENTION_SECONDS": _int(env, "IDP_SSF_RETENTION_SECONDS"),
        "IDP_SSF_INACTIVITY_SECONDS": _int(env, "IDP_SSF_INACTIVITY_SECONDS"),
        "IDP_SSF_MAX_STREAMS": _int(env, "IDP_SSF_MAX_STREAMS"),
        "IDP_SSF_PUSH_TIMEOUT": _seconds(env, "IDP_SSF_PUSH_TIMEOUT"),
        "IDP_SSF_PUSH_BACKOFF_MAX": _int(env, "IDP_SSF_PUSH_BACKOFF_MAX"),
        "IDP_SCOPES": dict(DEFAULT_SCOPES),
        "RATELIMIT_STORAGE_URI": env["RATELIMIT_STORAGE_URI"],
        "RATELIMIT_STORAGE_OPTIONS": counter_store_options(env["RATELIMIT_STORAGE_URI"]),
        "RATELIMIT_KEY_PREFIX": env["RATELIMIT_KEY_PREFIX"],
        # When Redis fails, Flask-Limiter counts in this process instead (idp/counters.py
        # decides per limit whether that or nothing applies) and never turns the failure
        # into an error response.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        # Rate-limit headers are written on the 429 itself (idp/web/errors.py), see there why.
        "RATELIMIT_HEADERS_ENABLED": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": issuer.startswith("https://"),
        "SESSION_COOKIE_NAME": "fe_idp_session",
        # A visitor's signed cookie (before sign-in) is held to the idle limit as well.
        "PERMANENT_SESSION_LIFETIME": _int(env, "IDP_SESSION_IDLE_SECONDS"),
        "WTF_CSRF_TIME_LIMIT": None,
        # Werkzeug refuses a larger body with 413 when it is read; idp/web/errors.py answers it.
        "MAX_CONTENT_LENGTH": _int(env, "IDP_MAX_BODY_BYTES"),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
    }
    return config
