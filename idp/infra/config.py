"""Settings: defaults, environment variables, and the production safety check."""

import logging
import math
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import click
from limits import parse_many

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
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_KEY_PREFIX": "idp",
}

#: Settings that are lifetimes and must be positive.
POSITIVE_SECONDS = (
    "IDP_CODE_TTL", "IDP_ACCESS_TOKEN_TTL", "IDP_REFRESH_TOKEN_TTL", "IDP_ENDED_RETENTION_SECONDS",
    "IDP_PASSWORD_RESET_TTL",
)
#: Settings that are rate limits in the ``limits`` notation ("600 per minute").
RATE_LIMITS = (
    "IDP_API_RATE_LIMIT", "IDP_INTROSPECTION_RATE_LIMIT", "IDP_TOKEN_RATE_LIMIT",
    "IDP_AUTH_FAILURE_RATE_LIMIT", "IDP_LOGIN_PAIR_RATE_LIMIT", "IDP_LOGIN_ADDRESS_RATE_LIMIT",
    "IDP_LOGIN_ACCOUNT_RATE_LIMIT", "IDP_RESET_EMAIL_RATE_LIMIT", "IDP_RESET_ADDRESS_RATE_LIMIT",
    "IDP_TWO_STEP_RATE_LIMIT",
)
#: Rate limits that are off when empty.
OPTIONAL_RATE_LIMITS = ("IDP_CLIENT_RATE_LIMIT",)
#: OWASP ASVS L2 (2.2.1): at most this many failed sign-ins an hour for one account.
MAX_ACCOUNT_FAILURES_PER_HOUR = 100
#: Log output formats: one human-readable line, or one JSON object per line.
LOG_FORMATS = ("text", "json")
#: Seconds a rate-limit counter call may take before the store counts as down.
COUNTER_STORE_TIMEOUT = 0.5
#: Bounds of IDP_MAX_BODY_BYTES. The largest body the IdP takes (an API key form with every
#: scope, a token request) is under 2 KiB, so 4 KiB refuses nothing real; above 1 MiB the limit
#: no longer protects workers that hold one request each (docs/OPERATIONS.md).
MIN_BODY_BYTES = 4 * 1024
MAX_BODY_BYTES = 1024 * 1024

#: Values that must never serve as a production SECRET_KEY.
WEAK_SECRETS = {"dev", "secret", "changeme", "change-me", "development", "test", "password"}

MIN_SECRET_KEY_LENGTH = 32

#: Longest refresh grace window, in seconds. Inside the window a rotated refresh token is taken
#: for a retry and answered with its successor, so a stolen token replayed within it goes
#: undetected: reuse detection (RFC 9700 §4.14.2) is blind for exactly this long. Connectors
#: retry a lost response within seconds; five minutes still covers a short planned database
#: maintenance (docs/OPERATIONS.md) without leaving a thief a long blind spot.
MAX_REFRESH_GRACE_SECONDS = 300


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
    # Created private, never readable by others even for a moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(key)
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
        # made before a key rotation still open (idp/oauth/grants.py); nothing new uses them.
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


def _check_values(config: dict) -> None:
    """Settings that are wrong in any mode: lifetimes, rate limits, log settings."""
    for name in POSITIVE_SECONDS:
        if config[name] <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds, got {config[name]}.")
    if config["IDP_REFRESH_GRACE_SECONDS"] < 0:
        raise ConfigError("IDP_REFRESH_GRACE_SECONDS must not be negative.")
    # A bound of 0 (or nan) would fail every readiness probe: no two clocks agree exactly.
    if not 0 < config["IDP_CLOCK_OFFSET_LIMIT"] < math.inf:
        raise ConfigError("IDP_CLOCK_OFFSET_LIMIT must be a positive number of seconds, got "
                          f"{config['IDP_CLOCK_OFFSET_LIMIT']}.")
    if config["IDP_REFRESH_GRACE_SECONDS"] > MAX_REFRESH_GRACE_SECONDS:
        raise ConfigError(
            f"IDP_REFRESH_GRACE_SECONDS must be at most {MAX_REFRESH_GRACE_SECONDS}: a replayed "
            f"refresh token goes undetected that long, got {config['IDP_REFRESH_GRACE_SECONDS']}."
        )
    _check_session_lifetimes(config)
    for name in RATE_LIMITS + OPTIONAL_RATE_LIMITS:
        if name in OPTIONAL_RATE_LIMITS and not config[name]:
            continue
        try:
            parse_many(config[name])
        except ValueError:
            raise ConfigError(
                f"{name} must be a rate such as '600 per minute', got {config[name]!r}."
            ) from None
    if not any(item.get_expiry() >= 3600 and item.amount <= MAX_ACCOUNT_FAILURES_PER_HOUR
               for item in parse_many(config["IDP_LOGIN_ACCOUNT_RATE_LIMIT"])):
        raise ConfigError(
            "IDP_LOGIN_ACCOUNT_RATE_LIMIT must cap failed sign-ins at "
            f"{MAX_ACCOUNT_FAILURES_PER_HOUR} an hour or fewer, e.g. '10 per minute;100 per "
            f"hour', got {config['IDP_LOGIN_ACCOUNT_RATE_LIMIT']!r}."
        )
    if not isinstance(logging.getLevelName(config["IDP_LOG_LEVEL"]), int):
        raise ConfigError(
            f"IDP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {config['IDP_LOG_LEVEL']!r}."
        )
    if config["IDP_LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"IDP_LOG_FORMAT must be text or json, got {config['IDP_LOG_FORMAT']!r}.")
    if config["IDP_METRICS_BIND"]:
        metrics_address(config["IDP_METRICS_BIND"])
    body = config["MAX_CONTENT_LENGTH"]
    if not isinstance(body, int) or not MIN_BODY_BYTES <= body <= MAX_BODY_BYTES:
        raise ConfigError(
            f"IDP_MAX_BODY_BYTES must be between {MIN_BODY_BYTES} and {MAX_BODY_BYTES}, got {body}."
        )


def _strong_key(key: str) -> bool:
    """Long, not a known weak word, and not one character repeated."""
    return (len(key) >= MIN_SECRET_KEY_LENGTH and key.lower() not in WEAK_SECRETS
            and len(set(key)) >= 10)


def _check_session_lifetimes(config: dict) -> None:
    """A session ends when idle or at its absolute end; the idle limit fits inside the other."""
    idle, longest = config["IDP_SESSION_IDLE_SECONDS"], config["IDP_SESSION_MAX_SECONDS"]
    # last_seen_at is written once a minute (idp/web/sessions.py): a shorter idle limit would end
    # sessions that are in use.
    if idle < 120:
        raise ConfigError(f"IDP_SESSION_IDLE_SECONDS must be at least 120, got {idle}.")
    if not idle <= longest <= 366 * 24 * 3600:
        raise ConfigError(
            "IDP_SESSION_MAX_SECONDS must be at least IDP_SESSION_IDLE_SECONDS and at most a "
            f"year, got {longest}."
        )


def check_config(config: dict) -> None:
    """Refuse settings that are unsafe; one clear message per problem (SPEC §7)."""
    _check_values(config)
    if config["IDP_DEVELOPMENT"]:
        if not config.get("SECRET_KEY"):
            raise ConfigError("SECRET_KEY is empty.")
        return
    issuer = config["IDP_ISSUER"]
    if not issuer.startswith("https://"):
        raise ConfigError(
            f"IDP_ISSUER must be an https URL outside development (got {issuer!r}); "
            "development mode exists only for http://127.0.0.1:PORT or http://localhost:PORT."
        )
    if not _strong_key(config.get("SECRET_KEY") or ""):
        raise ConfigError(
            f"SECRET_KEY must be a random value of at least {MIN_SECRET_KEY_LENGTH} characters "
            "in production, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    # Flask accepts a session signed with any fallback, so a weak one is as bad as a weak key.
    if not all(_strong_key(key) for key in config.get("SECRET_KEY_FALLBACKS") or ()):
        raise ConfigError(
            "SECRET_KEY_FALLBACKS must hold only former SECRET_KEY values, each a random value "
            f"of at least {MIN_SECRET_KEY_LENGTH} characters, separated by commas."
        )
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") and not config["IDP_ALLOW_SQLITE"]:
        raise ConfigError(
            "DATABASE_URL points at SQLite outside development; use PostgreSQL "
            "(postgresql+psycopg://...) or set IDP_ALLOW_SQLITE=1 to accept a single-host SQLite."
        )
