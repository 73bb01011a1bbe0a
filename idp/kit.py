"""The resource-server kit (SPEC §11): protect another Flask service's views with the IdP.

A service such as the FlowEstate API registers as a resource server (``flask resource-server
create``) and wraps its views::

    protector = ResourceProtector("https://id.flowestate.example/oauth/introspect",
                                  client_id, client_secret, limiter=limiter)

    @app.get("/api/v1/leads")
    @protector.require_scopes("leads:read")
    def leads():
        org_id = g.credential.org_id   # the only source of the organization
        ...

Each request's bearer is judged by the IdP's introspection endpoint over HTTP and answered
exactly as SPEC §4 says, with the same JSON and headers the IdP itself sends. Values that
cannot be a credential are refused here, without a call. Verdicts are cached, keyed by a
SHA-256 digest of the token (never the token itself): an active one for at most
``min(active_ttl, exp - now)`` and an inactive one for at most ``inactive_ttl`` seconds, so a
disabled key or an ended connection stops working within ``active_ttl`` (30 s by default).
The cache holds at most ``cache_size`` verdicts, least recently used out first.

When the IdP cannot be reached, times out or answers anything but a 200 introspection
response, the view answers 503 with ``Retry-After`` and nothing is cached: a 401 would tell
Zapier and Make that the credential is dead when only the judge was away.
"""

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import field
from functools import wraps

import requests
from flask import current_app
from flask import g
from flask import request

from idp import ratelimit
from idp.core import secrets as cs
from idp.core.bearer import UNKNOWN
from idp.core.bearer import Denial
from idp.core.bearer import check_shape
from idp.core.bearer import denial_from_dict
from idp.core.bearer import parse_authorization
from idp.core.bearer import unavailable_parts
from idp.core.scopes import parse_scope
from idp.guard import denial_response
from idp.guard import json_response
from idp.guard import respond

log = logging.getLogger(__name__)

#: Kinds of bearer introspection may call active.
TOKEN_TYPES = ("api_key", "access_token")


class IdpUnavailable(Exception):
    """Introspection gave no usable answer (unreachable, timed out, 5xx, not our JSON)."""


@dataclass(frozen=True)
class Bearer:
    """An active credential as introspection described it (SPEC §5.5)."""

    token_type: str
    org_id: str
    scopes: frozenset[str]
    issued_at: int | None = None
    expires_at: int | None = None
    key_id: str | None = None
    client_id: str | None = None
    user_id: str | None = None
    username: str | None = None
    connection_id: str | None = None
    #: The whole introspection answer, for anything else a view needs.
    claims: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def rate_key(self) -> str:
        """What rate limits count against: the key or the connection (SPEC §10)."""
        return self.key_id if self.token_type == "api_key" else self.connection_id

    @classmethod
    def from_claims(cls, claims: dict) -> "Bearer":
        """Build from an active answer; IdpUnavailable when it is not one we can trust."""
        token_type = claims.get("token_type")
        org_id = claims.get("org_id")
        name = claims.get("key_id") if token_type == "api_key" else claims.get("connection_id")
        if token_type not in TOKEN_TYPES or not isinstance(org_id, str) or not name:
            raise IdpUnavailable("introspection answered active without the fields we need")
        return cls(
            token_type=token_type, org_id=org_id,
            scopes=frozenset(parse_scope(claims.get("scope"))), issued_at=claims.get("iat"),
            expires_at=claims.get("exp"), key_id=claims.get("key_id"),
            client_id=claims.get("client_id"), user_id=claims.get("sub"),
            username=claims.get("username"), connection_id=claims.get("connection_id"),
            claims=dict(claims),
        )


class ResourceProtector:
    """Judge bearers through introspection and answer as SPEC §4; see the module docstring."""

    def __init__(
        self,
        introspection_url: str,
        client_id: str,
        client_secret: str,
        *,
        cache_size: int = 10_000,
        active_ttl: float = 30,
        inactive_ttl: float = 5,
        clock=time.monotonic,
        wall_clock=time.time,
        session: requests.Session | None = None,
        timeout: float = 5,
        limiter=None,
        rate_limit="600 per minute",
    ):
        """Configure the IdP endpoint, credentials, cache bounds and (optionally) rate limits.

        ``limiter`` is the service's Flask-Limiter instance; when given, every protected view
        counts requests per credential against ``rate_limit`` (a string such as
        ``"600 per minute"``, or a callable returning one) in that limiter's storage.
        """
        if cache_size < 0 or active_ttl < 0 or inactive_ttl < 0:
            raise ValueError("cache_size, active_ttl and inactive_ttl must not be negative")
        self.introspection_url = introspection_url
        self.auth = (client_id, client_secret)
        self.cache_size = cache_size
        self.active_ttl = active_ttl
        self.inactive_ttl = inactive_ttl
        self.clock = clock
        self.wall_clock = wall_clock
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.limiter = limiter
        self.rate_limit = rate_limit
        self._cache: OrderedDict[str, tuple[Bearer | Denial, float]] = OrderedDict()
        self._lock = threading.Lock()

    # -- judging ---------------------------------------------------------------------------

    def judge(self, authorization: str | None) -> Bearer | Denial:
        """The verdict on an Authorization header value; raises IdpUnavailable."""
        token = parse_authorization(authorization)
        if isinstance(token, Denial):
            return token
        bad = check_shape(token)
        if bad:
            return bad
        key = cs.digest(token)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        verdict, ttl = self._introspect(token)
        self._remember(key, verdict, ttl)
        return verdict

    def _introspect(self, token: str) -> tuple[Bearer | Denial, float]:
        """Ask the IdP (RFC 7662 §2.1, Basic client authentication); verdict and cache time."""
        try:
            with self.session.post(
                self.introspection_url, data={"token": token}, auth=self.auth,
                headers={"Accept": "application/json"}, timeout=self.timeout,
            ) as response:
                status = response.status_code
                body = response.json() if status == 200 else None
        except (requests.RequestException, ValueError) as error:
            raise IdpUnavailable(f"introspection failed: {type(error).__name__}") from None
        if not isinstance(body, dict):
            raise IdpUnavailable(f"introspection answered {status}")
        if body.get("active") is not True:
            # RFC 7662 §2.2: inactive. Our IdP says why; any other answer is unknown_token.
            return denial_from_dict(body.get("denial")) or UNKNOWN, self.inactive_ttl
        bearer = Bearer.from_claims(body)
        ttl = self.active_ttl
        if isinstance(bearer.expires_at, int | float):
            ttl = min(ttl, bearer.expires_at - self.wall_clock())
        return bearer, ttl

    def _lookup(self, key: str) -> Bearer | Denial | None:
        """A verdict still within its cache time, or None."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            verdict, deadline = entry
            if deadline <= self.clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return verdict

    def _remember(self, key: str, verdict: Bearer | Denial, ttl: float) -> None:
        """Cache a verdict for ``ttl`` seconds, evicting the least recently used past the bound."""
        if ttl <= 0 or self.cache_size == 0:
            return
        with self._lock:
            self._cache[key] = (verdict, self.clock() + ttl)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def cache_len(self) -> int:
        """How many verdicts are cached now (expired ones included until evicted)."""
        with self._lock:
            return len(self._cache)

    def clear_cache(self) -> None:
        """Forget every cached verdict (for example after an incident)."""
        with self._lock:
            self._cache.clear()

    # -- rate limits -----------------------------------------------------------------------

    def _count(self, bearer: Bearer) -> ratelimit.Usage | None:
        """Count this request against the credential's limit in the service's limiter."""
        limiter = self.limiter
        if limiter is None or not limiter.enabled:
            return None
        strategy = limiter.limiter
        if strategy.storage is not limiter.storage:
            return None  # shared counters are down: not counted (as in the IdP's guard)
        value = self.rate_limit() if callable(self.rate_limit) else self.rate_limit
        prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
        return ratelimit.count(strategy, value, bearer.rate_key, prefix)

    # -- decorators ------------------------------------------------------------------------

    def protect(self, *scopes: str, rate_limit: bool = True):
        """Decorator: the view runs only for an active bearer holding every one of ``scopes``.

        The bearer is on ``g.credential`` (a :class:`Bearer`). The order is the IdP's:
        authenticate, count against the rate limit, then check scopes.
        """

        def decorate(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                try:
                    verdict = self.judge(request.headers.get("Authorization"))
                except IdpUnavailable as error:
                    log.warning("bearer not judged: %s", error)
                    return json_response(*unavailable_parts())
                if isinstance(verdict, Denial):
                    return denial_response(verdict)
                g.credential = verdict
                usage = self._count(verdict) if rate_limit else None
                now = time.time()
                if usage is not None and not usage.allowed:
                    return json_response(*ratelimit.rate_limited_parts(usage, now))
                return respond(verdict, usage, now, scopes, lambda: view(*args, **kwargs))

            return wrapper

        return decorate

    def require_scopes(self, *scopes: str):
        """Decorator: :meth:`protect` with the scopes an endpoint needs."""
        return self.protect(*scopes)
