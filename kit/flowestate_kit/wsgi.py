"""The kit as plain WSGI middleware: protect any WSGI application's paths with the IdP.

For a service that is not Flask (or wants one gate in front of all its routes)::

    app = BearerMiddleware(app, "https://id.flowestate.example/oauth/introspect",
                           client_id, client_secret,
                           rules={"/api/v1/leads": ("leads:read",),
                                  "POST /api/v1/leads": ("leads:write",),
                                  "/api/v1/whoami": ()})

A request under one of the ``rules`` (a path prefix, optionally led by a method) reaches the
application only with an active bearer holding that rule's scopes, found in
``environ["flowestate.bearer"]`` (a :class:`~flowestate_kit.judge.Bearer`); the longest
matching prefix wins, and a rule naming the method wins over one that does not. Every refusal
is answered here with the SPEC §4 JSON and headers, from the same
:mod:`flowestate_kit.answers` the IdP and the Flask adapter use. Other paths pass untouched.

With a revocation stream (``stream=Receiver(...)`` or ``ssf_configuration_url=...``, see
:mod:`flowestate_kit.ssf`) each event evicts the verdicts it names and a healthy stream lets
active verdicts be cached up to ``stream_ttl``; a push stream's endpoint is served here, at
the path of its ``push_url``, before any rule.
"""

import json
import logging
import time

from limits.strategies import FixedWindowRateLimiter

from flowestate_kit import counting
from flowestate_kit.answers import Denial
from flowestate_kit.answers import denial_parts
from flowestate_kit.answers import scope_denial
from flowestate_kit.answers import unavailable_parts
from flowestate_kit.judge import CallerLimited
from flowestate_kit.judge import IdpUnavailable
from flowestate_kit.judge import Judge
from flowestate_kit.local_counters import LocalCounters

__all__ = ["ENVIRON_KEY", "BearerMiddleware", "caller_address"]

log = logging.getLogger(__name__)

#: Where the application finds the judged bearer.
ENVIRON_KEY = "flowestate.bearer"
#: Reason phrases of the statuses the middleware answers itself.
REASONS = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 429: "TOO MANY REQUESTS",
           503: "SERVICE UNAVAILABLE"}


def caller_address(environ: dict) -> str:
    """The default caller key: the request's address, IPv6 by /64."""
    return counting.address_key(environ.get("REMOTE_ADDR"))


def _rule(spec: str, scopes) -> tuple[str | None, str, tuple[str, ...]]:
    """``"/path"`` or ``"METHOD /path"`` and its scopes, as (method or None, prefix, scopes)."""
    method, _, path = spec.strip().rpartition(" ")
    if not path.startswith("/"):
        raise ValueError(f"a rule is a path prefix, optionally led by a method: {spec!r}")
    if isinstance(scopes, str):
        scopes = scopes.split()
    return (method.strip().upper() or None), path.rstrip("/") or "/", tuple(scopes)


class BearerMiddleware(Judge):
    """A :class:`Judge` in front of a WSGI application; see the module docstring."""

    def __init__(self, app, introspection_url: str, client_id: str, client_secret: str, *,
                 rules: dict, rate_limit: str | None = None, storage=None, key_prefix: str = "",
                 caller_key=caller_address, **options):
        """Wrap ``app``; ``rules`` map a path prefix (or ``"METHOD /prefix"``) to its scopes.

        ``rate_limit`` (None: off) counts requests per credential, and the unknown bearers of
        each ``caller_key(environ)`` are counted too, in ``storage`` (a ``limits`` storage such
        as Redis shared with other processes; by default counters in this process) under
        ``key_prefix``. ``options`` are :class:`Judge`'s.
        """
        super().__init__(introspection_url, client_id, client_secret,
                         shared_counters=self._counters, **options)
        if rate_limit is not None:
            counting.parse_many(rate_limit)  # a typo fails at start, not per request
        self.app = app
        parsed = [_rule(spec, scopes) for spec, scopes in rules.items()]
        # Longest prefix first; at equal length a rule naming the method first.
        self.rules = sorted(parsed, key=lambda r: (len(r[1]), r[0] is not None), reverse=True)
        self.rate_limit = rate_limit
        self.strategy = FixedWindowRateLimiter(storage or LocalCounters())
        self.key_prefix = key_prefix
        self.caller_key = caller_key
        stream = self.stream
        self.push = (stream.push_endpoint() if stream is not None
                     and getattr(stream, "push_path", None) is not None else None)

    def _counters(self):
        """The counters of ``storage`` (the judge falls back to its own when they fail)."""
        return self.strategy, self.key_prefix

    def scopes_for(self, method: str, path: str) -> tuple[str, ...] | None:
        """The scopes the first matching rule needs, or None when no rule protects the path."""
        for rule_method, prefix, scopes in self.rules:
            if rule_method is not None and rule_method != method:
                continue
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return scopes
        return None

    def __call__(self, environ, start_response):
        """Judge the bearer of a protected path; answer a refusal or call the application."""
        if self.push is not None and environ.get("PATH_INFO") == self.push.path:
            return self.push(environ, start_response)
        scopes = self.scopes_for(environ.get("REQUEST_METHOD", "GET").upper(),
                                 environ.get("PATH_INFO") or "/")
        if scopes is None:
            return self.app(environ, start_response)
        try:
            verdict = self.judge(environ.get("HTTP_AUTHORIZATION"),
                                 caller=self.caller_key(environ))
        except IdpUnavailable as error:
            log.warning("bearer not judged: %s", error)
            return _answer(start_response, *unavailable_parts())
        except CallerLimited as refused:
            return _answer(start_response,
                           *counting.rate_limited_parts(refused.usage, time.time()))
        if isinstance(verdict, Denial):
            return _answer(start_response, *denial_parts(verdict))
        usage = None
        if self.rate_limit is not None:
            usage = counting.count(self.strategy, self.rate_limit, verdict.rate_key,
                                   self.key_prefix)
        now = time.time()
        if usage is not None and not usage.allowed:
            return _answer(start_response, *counting.rate_limited_parts(usage, now))
        extra = usage.headers(now) if usage is not None else {}
        refusal = scope_denial(verdict.scopes, scopes)
        if refusal is not None:
            status, body, headers = denial_parts(refusal)
            return _answer(start_response, status, body, {**headers, **extra})
        environ[ENVIRON_KEY] = verdict

        def start_with_limits(status, headers, exc_info=None):
            """The application's answer, with the rate-limit headers added."""
            return start_response(status, [*headers, *extra.items()], exc_info)

        return self.app(environ, start_with_limits if extra else start_response)


def _answer(start_response, status: int, body: dict, headers: dict) -> list[bytes]:
    """Send a §4 JSON answer."""
    data = json.dumps(body, separators=(",", ":")).encode("utf-8") + b"\n"
    start_response(f"{status} {REASONS[status]}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
        *headers.items()])
    return [data]
