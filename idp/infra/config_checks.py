"""The settings check: refuse values that are wrong in any mode, or unsafe in production."""

import logging
import math

from limits import parse_many

from idp.infra.config import ConfigError
from idp.infra.config import metrics_address

#: Settings that are lifetimes and must be positive.
POSITIVE_SECONDS = (
    "IDP_CODE_TTL", "IDP_ACCESS_TOKEN_TTL", "IDP_REFRESH_TOKEN_TTL", "IDP_ENDED_RETENTION_SECONDS",
    "IDP_PASSWORD_RESET_TTL", "IDP_SSF_RETENTION_SECONDS", "IDP_SSF_INACTIVITY_SECONDS",
    "IDP_SSF_PUSH_BACKOFF_MAX",
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
#: Bounds of IDP_MAX_BODY_BYTES. The largest body the IdP takes (an API key form with every
#: scope, a token request) is under 2 KiB, so 4 KiB refuses nothing real; above 1 MiB the limit
#: no longer protects workers that hold one request each (docs/OPERATIONS.md).
MIN_BODY_BYTES = 4 * 1024
MAX_BODY_BYTES = 1024 * 1024

#: Values that must never serve as a production SECRET_KEY.
WEAK_SECRETS = {"dev", "secret", "changeme", "change-me", "development", "test", "password"}

#: Shortest production SECRET_KEY (or fallback) accepted.
MIN_SECRET_KEY_LENGTH = 32

#: Longest refresh grace window, in seconds. Inside the window a rotated refresh token is taken
#: for a retry and answered with its successor, so a stolen token replayed within it goes
#: undetected: reuse detection (RFC 9700 §4.14.2) is blind for exactly this long. Connectors
#: retry a lost response within seconds; five minutes still covers a short planned database
#: maintenance (docs/OPERATIONS.md) without leaving a thief a long blind spot.
MAX_REFRESH_GRACE_SECONDS = 300

#: Longest SSF long poll: a waiting poll holds a worker (one request per process, the sync
#: worker), and gunicorn restarts a worker silent for IDP_WORKER_TIMEOUT (30 s by default).
MAX_SSF_LONG_POLL_SECONDS = 20
#: Longest wait for one push request; a slow receiver holds that stream's queue meanwhile.
MAX_SSF_PUSH_TIMEOUT = 60


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
    _check_ssf(config)
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


def _check_ssf(config: dict) -> None:
    """The Shared Signals timings: a poll may return at once (0), a push needs some time."""
    poll = config["IDP_SSF_LONG_POLL_SECONDS"]
    if not 0 <= poll <= MAX_SSF_LONG_POLL_SECONDS:
        raise ConfigError(f"IDP_SSF_LONG_POLL_SECONDS must be between 0 and "
                          f"{MAX_SSF_LONG_POLL_SECONDS}, got {poll}.")
    if config["IDP_SSF_MAX_STREAMS"] < 1:
        raise ConfigError(f"IDP_SSF_MAX_STREAMS must be at least 1, got "
                          f"{config['IDP_SSF_MAX_STREAMS']}.")
    push = config["IDP_SSF_PUSH_TIMEOUT"]
    if not 0 < push <= MAX_SSF_PUSH_TIMEOUT:
        raise ConfigError(f"IDP_SSF_PUSH_TIMEOUT must be more than 0 and at most "
                          f"{MAX_SSF_PUSH_TIMEOUT} seconds, got {push}.")


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
