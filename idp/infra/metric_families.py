"""Every metric the IdP exports, and how one answer is counted into them (idp/infra/metrics.py
turns them on and is what the rest of the code calls).

Labels are bounded sets the code names (endpoints, outcomes, reasons, limits), never a path,
a client, a credential or anything a caller sends.
"""

import logging
from functools import wraps
from time import perf_counter

from flask import request
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from sqlalchemy import event
from werkzeug.exceptions import HTTPException

#: Endpoints whose latency is kept as a histogram: the paths every API call and refresh takes.
HOT_ENDPOINTS = ("api.me", "oauth.introspect", "oauth.token")
#: Latency buckets in seconds: these paths take about a millisecond; 5 s is the lock timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Lock-wait buckets in seconds, up to the default IDP_DB_LOCK_TIMEOUT_MS.
LOCK_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Grant types counted by name; anything else a client sends is counted as ``other``.
GRANT_TYPES = ("authorization_code", "refresh_token")
#: Token endpoint results counted by name (RFC 6749 §5.2 and our fault and limit codes).
TOKEN_ERRORS = (
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_grant_type", "invalid_scope", "rate_limited", "temporarily_unavailable",
)
#: Refresh outcomes that hand out tokens, so they count only when the answer is a 200.
ISSUING_OUTCOMES = ("rotated", "grace_replay")
#: WSGI environ keys kept per request: when it reached the app, the limit it breached and
#: how its refresh was settled.
STARTED = "idp.infra.metrics.started"
LIMIT = "idp.infra.metrics.limit"
REFRESH = "idp.infra.metrics.refresh"

log = logging.getLogger(__name__)


def quiet(record):
    """Log, never raise, when recording fails (a full disk under the metrics directory, say):
    a metric must not fail the request, or roll back the transaction, it describes."""

    @wraps(record)
    def recording(*args):
        try:
            record(*args)
        except Exception:
            log.exception("recording a metric failed")

    return recording


def stamp(wsgi_app):
    """WSGI middleware noting when the request reached the app, for the latency histogram."""

    def stamped(environ, start_response):
        """Note the start, then run the app."""
        environ[STARTED] = perf_counter()
        return wsgi_app(environ, start_response)

    return stamped


class Metrics:
    """Every metric of the IdP, made once per process."""

    def __init__(self, registry: CollectorRegistry):
        """Create (and register in ``registry``) each metric."""
        self.registry = registry
        self.requests = Counter(
            "idp_http_requests", "Answers by Flask endpoint and HTTP status.",
            ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "idp_http_request_duration_seconds", "Time to answer the hot paths.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.token_requests = Counter(
            "idp_oauth_token_requests", "Token endpoint answers by grant type and result.",
            ["grant_type", "result"], registry=registry)
        self.refreshes = Counter(
            "idp_oauth_refresh_outcomes", "How refresh requests were settled.",
            ["outcome"], registry=registry)
        self.connections_ended = Counter(
            "idp_connections_ended", "Connections ended, by reason.", ["reason"],
            registry=registry)
        self.rate_limited = Counter(
            "idp_rate_limit_refusals", "Requests refused with 429, by the limit breached.",
            ["limit"], registry=registry)
        self.database_faults = Counter(
            "idp_database_faults", "Database faults answered 503, by kind.", ["kind"],
            registry=registry)
        self.lock_wait = Histogram(
            "idp_db_lock_wait_seconds", "Time spent taking a database lock.", ["lock"],
            buckets=LOCK_BUCKETS, registry=registry)
        # livesum: the pool of a worker that died holds nothing any more.
        self.pool_in_use = Gauge(
            "idp_db_pool_in_use", "Database connections checked out of the pools.",
            registry=registry, multiprocess_mode="livesum")
        self.pool_capacity = Gauge(
            "idp_db_pool_capacity", "Connections the pools may open (size plus overflow).",
            registry=registry, multiprocess_mode="livesum")
        self.clock_offset = Gauge(
            "idp_clock_offset_seconds", "This host's wall clock minus the database's clock.",
            registry=registry, multiprocess_mode="livemostrecent")
        # Children made once: labels() takes a lock and builds a key on every call.
        self._answers = {}
        self._latency = {name: self.latency.labels(name) for name in HOT_ENDPOINTS}

    def answered(self, endpoint: str, status: int, seconds: float | None) -> None:
        """Count one answer; time it when it is a hot path's."""
        key = (endpoint, status)
        child = self._answers.get(key)
        if child is None:
            child = self._answers[key] = self.requests.labels(endpoint, str(status))
        child.inc()
        if seconds is not None and endpoint in self._latency:
            self._latency[endpoint].observe(seconds)

    @quiet
    def count_answer(self, response) -> None:
        """Count the answer Flask made by endpoint and status, and the token endpoint's
        outcomes."""
        current = request._get_current_object()  # one context lookup, not one per attribute
        environ = current.environ
        endpoint = current.endpoint or "unmatched"
        self._count(endpoint, response, environ)
        if endpoint == "oauth.token":
            self._count_token_answer(response, environ.get(REFRESH))

    @quiet
    def count(self, endpoint: str, response, environ: dict) -> None:
        """Count an answer made outside Flask's dispatch (the lean path) as Flask's are."""
        self._count(endpoint, response, environ)

    def _count(self, endpoint: str, response, environ: dict) -> None:
        """Count one answer by endpoint and status (and its limit when it is a 429)."""
        started = environ.get(STARTED)
        status = response.status_code
        self.answered(endpoint, status, perf_counter() - started if started else None)
        if status == 429:
            self.rate_limited.labels(environ.get(LIMIT, "other")).inc()

    def _count_token_answer(self, response, refresh_outcome: str | None) -> None:
        """Count a token endpoint answer by grant type and result, and its refresh outcome."""
        try:
            grant_type = request.form.get("grant_type")
        except HTTPException:  # a body refused unread (413, 415) cannot be read here either
            grant_type = None
        if grant_type not in GRANT_TYPES:
            grant_type = "other"
        if response.status_code == 200:
            result = "issued"
        else:
            body = response.get_json(silent=True)
            result = body.get("error") if isinstance(body, dict) else None
            result = result if result in TOKEN_ERRORS else "other"
        self.token_requests.labels(grant_type, result).inc()
        # A rotation whose commit then failed answered 503: nothing was handed out.
        if refresh_outcome and (response.status_code == 200
                                or refresh_outcome not in ISSUING_OUTCOMES):
            self.refreshes.labels(refresh_outcome).inc()

    def watch_pool(self, engine, config) -> None:
        """Keep the pool gauges: connections in use, and the capacity they count against."""
        if engine.dialect.name != "sqlite":
            # SQLite's pool is SQLAlchemy's default, not sized by these settings.
            self.pool_capacity.set(config["IDP_DB_POOL_SIZE"] + config["IDP_DB_MAX_OVERFLOW"])
        in_use = quiet(self.pool_in_use.inc)
        returned = quiet(self.pool_in_use.dec)

        @event.listens_for(engine, "checkout")
        def _checked_out(_dbapi_connection, _record, _proxy):
            in_use()

        @event.listens_for(engine, "checkin")
        def _checked_in(_dbapi_connection, _record):
            returned()
