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
``min(active_ttl, exp - now)`` and an inactive one for at most ``inactive_ttl`` seconds (5 s
at most, SPEC §11), so a disabled key or an ended connection stops working within
``active_ttl`` (30 s by default). Active verdicts are held in a cache of at most
``cache_size``, inactive ones in their own of at most ``inactive_cache_size``, least recently
used out first: a flood of made-up bearers churns only the second and never pushes out the
verdicts real callers rely on.

Bearers the kit does not know (not cached) reach the IdP only while the caller's address
(``caller_key``; by default its IPv4 address or IPv6 /64) has had fewer than
``unknown_rate_limit`` bearers the IdP does not know (``unknown_token``): past that, such a
caller is answered 429 ``rate_limited`` before the IdP is asked, so one caller's flood of
made-up bearers cannot spend the resource server's own introspection budget that every other
caller depends on. Only ``unknown_token`` counts: Zapier and Make call from a few shared
addresses on behalf of thousands of customers, whose expired, revoked or disabled credentials
are ordinary traffic there (an hour-old access token is presented once before every refresh).
Cached bearers, and bearers introspection finds active, are never refused by this limit.

When the IdP cannot be reached, times out or answers anything but a 200 introspection
response, the view answers 503 with ``Retry-After`` and nothing is cached: a 401 would tell
Zapier and Make that the credential is dead when only the judge was away. That includes a
429 for the resource server itself (its ``IDP_INTROSPECTION_RATE_LIMIT`` spent): only the
request whose bearer had to be asked about gets the 503, nothing about the refusal is
remembered, cached verdicts keep answering, and the next uncached bearer asks again.
"""

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import field
from functools import wraps
from urllib.parse import urlsplit

import requests
from flask import current_app
from flask import g
from flask import has_app_context
from flask import request
from limits.strategies import FixedWindowRateLimiter

from idp.core import secrets as cs
from idp.core.bearer import UNKNOWN
from idp.core.bearer import Denial
from idp.core.bearer import check_shape
from idp.core.bearer import denial_from_dict
from idp.core.bearer import parse_authorization
from idp.core.bearer import unavailable_parts
from idp.core.scopes import parse_scope
from idp.infra import ratelimit
from idp.web.guard import denial_response
from idp.web.guard import json_response
from idp.web.guard import respond

log = logging.getLogger(__name__)

#: Kinds of bearer introspection may call active.
TOKEN_TYPES = ("api_key", "access_token")
#: Longest an inactive verdict may be remembered (SPEC §11).
MAX_INACTIVE_TTL = 5
#: Counter namespace of unknown bearers (``unknown_token`` answers) per caller.
UNKNOWN_SCOPE = "kit-unknown"


class IdpUnavailable(Exception):
    """Introspection gave no usable answer (unreachable, timed out, 5xx, not our JSON)."""


class CallerLimited(Exception):
    """This caller sent too many bearers that turned out inactive; the IdP is not asked."""

    def __init__(self, usage: ratelimit.Usage):
        """Carry the breached limit for the 429's headers."""
        super().__init__("too many unknown bearers from this caller")
        self.usage = usage


def check_introspection_url(url: str) -> None:
    """Refuse a URL that would carry the service's secret and every bearer in clear text.

    RFC 7662 §4: the introspection endpoint MUST be protected by TLS. Plain http is allowed
    only to a loopback host (127.0.0.0/8, ::1, localhost), where nothing leaves the machine.
    """
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if host and scheme == "https":
        return
    if host and scheme == "http" and _is_loopback(host):
        return
    # The scheme and host only: a URL may carry credentials in its userinfo.
    raise ValueError(
        "introspection_url must be an https URL (plain http only to 127.0.0.0/8, ::1 or "
        f"localhost), got scheme {scheme!r} and host {host!r}"
    )


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: localhost or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def caller_address() -> str:
    """The default caller key: the request's address, IPv6 by /64."""
    return ratelimit.address_key(request.remote_addr)


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
        inactive_cache_size: int = 1_000,
        unknown_rate_limit: str | None = "30 per minute;300 per hour",
        caller_key=caller_address,
    ):
        """Configure the IdP endpoint, credentials, cache bounds and (optionally) rate limits.

        ``limiter`` is the service's Flask-Limiter instance; when given, every protected view
        counts requests per credential against ``rate_limit`` (a string such as
        ``"600 per minute"``, or a callable returning one) in that limiter's storage.
        ``unknown_rate_limit`` (None: off) counts unknown bearers per ``caller_key()``, in
        that storage too, or in this process when there is no limiter or its store is down.
        """
        check_introspection_url(introspection_url)
        if min(cache_size, inactive_cache_size, active_ttl, inactive_ttl) < 0:
            raise ValueError("cache sizes, active_ttl and inactive_ttl must not be negative")
        if inactive_ttl > MAX_INACTIVE_TTL:
            raise ValueError(f"inactive_ttl must be at most {MAX_INACTIVE_TTL} seconds")
        if unknown_rate_limit is not None:
            ratelimit.parse_many(unknown_rate_limit)  # a typo fails at start, not per request
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
        self.inactive_cache_size = inactive_cache_size
        self.unknown_rate_limit = unknown_rate_limit
        self.caller_key = caller_key
        self._cache: OrderedDict[str, tuple[Bearer | Denial, float]] = OrderedDict()
        self._inactive: OrderedDict[str, tuple[Bearer | Denial, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._local = FixedWindowRateLimiter(ratelimit.LocalCounters())

    # -- judging ---------------------------------------------------------------------------

    def judge(self, authorization: str | None, caller: str | None = None) -> Bearer | Denial:
        """The verdict on an Authorization header value; raises IdpUnavailable.

        With a ``caller``, an uncached bearer is first checked against that caller's count of
        unknown bearers (CallerLimited when over it), and an ``unknown_token`` answer is counted.
        """
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
        limited = caller is not None and self.unknown_rate_limit is not None
        if limited:
            refused = self._unknown_counter(ratelimit.peek, caller)
            if refused is not None and not refused.allowed:
                raise CallerLimited(refused)
        verdict, ttl = self._introspect(token)
        self._remember(key, verdict, ttl)
        if limited and isinstance(verdict, Denial) and verdict.reason == "unknown_token":
            self._unknown_counter(ratelimit.count, caller)
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
            for cache in (self._cache, self._inactive):
                entry = cache.get(key)
                if entry is None:
                    continue
                verdict, deadline = entry
                if deadline <= self.clock():
                    del cache[key]
                    return None
                cache.move_to_end(key)
                return verdict
            return None

    def _remember(self, key: str, verdict: Bearer | Denial, ttl: float) -> None:
        """Cache a verdict for ``ttl`` seconds, evicting the least recently used past the bound
        of its own cache (active and inactive verdicts never evict each other)."""
        active = isinstance(verdict, Bearer)
        cache, size = (self._cache, self.cache_size) if active else (
            self._inactive, self.inactive_cache_size)
        if ttl <= 0 or size == 0:
            return
        with self._lock:
            cache[key] = (verdict, self.clock() + ttl)
            cache.move_to_end(key)
            while len(cache) > size:
                cache.popitem(last=False)

    def cache_len(self) -> int:
        """How many verdicts are cached now (expired ones included until evicted)."""
        with self._lock:
            return len(self._cache) + len(self._inactive)

    def clear_cache(self) -> None:
        """Forget every cached verdict (for example after an incident)."""
        with self._lock:
            self._cache.clear()
            self._inactive.clear()

    def _unknown_counter(self, operation, caller: str) -> ratelimit.Usage | None:
        """Peek at or count the caller's inactive answers: in the service's limiter storage
        when it is healthy, else in this process (the IdP must stay protected meanwhile)."""
        strategy = self._local
        limiter = self.limiter
        if limiter is not None and limiter.enabled and limiter.limiter.storage is limiter.storage:
            strategy = limiter.limiter
        prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "") if has_app_context() else ""
        usage = operation(strategy, self.unknown_rate_limit, caller, prefix, scope=UNKNOWN_SCOPE)
        if usage is None and strategy is not self._local:
            usage = operation(self._local, self.unknown_rate_limit, caller, prefix,
                              scope=UNKNOWN_SCOPE)
        return usage

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
                    verdict = self.judge(request.headers.get("Authorization"),
                                         caller=self.caller_key())
                except IdpUnavailable as error:
                    log.warning("bearer not judged: %s", error)
                    return json_response(*unavailable_parts())
                except CallerLimited as refused:
                    return json_response(*ratelimit.rate_limited_parts(refused.usage,
                                                                       time.time()))
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
