"""Judge a bearer through the IdP's introspection endpoint (RFC 7662), protocol-neutral.

:class:`Judge` is what the Flask adapter (:mod:`flowestate_kit.flask`) and the WSGI middleware
(:mod:`flowestate_kit.wsgi`) share: it turns an ``Authorization`` header value into a
:class:`Bearer` or the SPEC §4 :class:`~flowestate_kit.answers.Denial`, and knows nothing of
requests or responses.

Values that cannot be a credential are refused here, without a call. Verdicts are cached
(:mod:`flowestate_kit.cache`), keyed by a SHA-256 digest of the token: an active one for at
most ``min(active_ttl, exp - now)`` and an inactive one for at most ``inactive_ttl`` seconds
(5 s at most, SPEC §11), so a disabled key or an ended connection stops working within
``active_ttl`` (30 s by default); at most ``cache_size`` active and ``inactive_cache_size``
inactive verdicts are held.

Bearers the judge does not know (not cached) reach the IdP only while the caller (its address,
as the adapter names it) has had fewer than ``unknown_rate_limit`` bearers the IdP does not
know (``unknown_token``): past that, :class:`CallerLimited` is raised before the IdP is asked,
so one caller's flood of made-up bearers cannot spend the resource server's own introspection
budget that every other caller depends on. Only ``unknown_token`` counts: Zapier and Make call
from a few shared addresses on behalf of thousands of customers, whose expired, revoked or
disabled credentials are ordinary traffic there. Cached bearers, and bearers introspection
finds active, are never refused by this limit.

When the IdP cannot be reached, times out or answers anything but a 200 introspection
response (a 429 for the resource server itself included), :class:`IdpUnavailable` is raised
and nothing is cached: the adapters answer 503, since a 401 would tell Zapier and Make that
the credential is dead when only the judge was away.
"""

import hashlib
import ipaddress
import re
import time
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

import requests
from limits.strategies import FixedWindowRateLimiter

from flowestate_kit import counting
from flowestate_kit.answers import UNKNOWN
from flowestate_kit.answers import Denial
from flowestate_kit.answers import check_shape
from flowestate_kit.answers import denial_from_dict
from flowestate_kit.answers import parse_authorization
from flowestate_kit.cache import VerdictCache
from flowestate_kit.local_counters import LocalCounters

#: Kinds of bearer introspection may call active.
TOKEN_TYPES = ("api_key", "access_token")
#: Longest an inactive verdict may be remembered (SPEC §11).
MAX_INACTIVE_TTL = 5
#: Counter namespace of unknown bearers (``unknown_token`` answers) per caller.
UNKNOWN_SCOPE = "kit-unknown"
#: RFC 7662 §2.2 separates scopes with spaces; commas are read too, as the IdP reads them.
_SCOPE_SEPARATORS = re.compile(r"[\s,]+")


class IdpUnavailable(Exception):
    """Introspection gave no usable answer (unreachable, timed out, 5xx, not our JSON)."""


class CallerLimited(Exception):
    """This caller sent too many bearers the IdP does not know; the IdP is not asked."""

    def __init__(self, usage: counting.Usage):
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
        scope = claims.get("scope")
        return cls(
            token_type=token_type, org_id=org_id,
            scopes=frozenset(s for s in _SCOPE_SEPARATORS.split(scope or "") if s),
            issued_at=claims.get("iat"), expires_at=claims.get("exp"),
            key_id=claims.get("key_id"), client_id=claims.get("client_id"),
            user_id=claims.get("sub"), username=claims.get("username"),
            connection_id=claims.get("connection_id"), claims=dict(claims),
        )


class Judge:
    """Judge bearers through introspection, with bounded caches; see the module docstring."""

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
        inactive_cache_size: int = 1_000,
        unknown_rate_limit: str | None = "30 per minute;300 per hour",
        shared_counters=None,
    ):
        """Configure the IdP endpoint, credentials, cache bounds and the unknown-bearer limit.

        ``unknown_rate_limit`` (None: off) counts unknown bearers per caller. ``shared_counters``
        is a callable returning ``(strategy, key_prefix)``, a ``limits`` strategy whose counters
        other processes share (Redis), or None while that store is down; without one, or while
        it is down, the counting is done in this process.
        """
        check_introspection_url(introspection_url)
        if min(cache_size, inactive_cache_size, active_ttl, inactive_ttl) < 0:
            raise ValueError("cache sizes, active_ttl and inactive_ttl must not be negative")
        if inactive_ttl > MAX_INACTIVE_TTL:
            raise ValueError(f"inactive_ttl must be at most {MAX_INACTIVE_TTL} seconds")
        if unknown_rate_limit is not None:
            counting.parse_many(unknown_rate_limit)  # a typo fails at start, not per request
        self.introspection_url = introspection_url
        self.auth = (client_id, client_secret)
        self.active_ttl = active_ttl
        self.inactive_ttl = inactive_ttl
        self.clock = clock
        self.wall_clock = wall_clock
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.unknown_rate_limit = unknown_rate_limit
        self.shared_counters = shared_counters
        #: Verdicts by SHA-256 digest of the token, never the token itself.
        self.verdicts = VerdictCache(cache_size, inactive_cache_size, clock)
        self._local = FixedWindowRateLimiter(LocalCounters())

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
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        cached = self.verdicts.get(key)
        if cached is not None:
            return cached
        limited = caller is not None and self.unknown_rate_limit is not None
        if limited:
            refused = self._unknown_counter(counting.peek, caller)
            if refused is not None and not refused.allowed:
                raise CallerLimited(refused)
        verdict, ttl = self._introspect(token)
        self.verdicts.put(key, verdict, ttl, active=isinstance(verdict, Bearer))
        if limited and isinstance(verdict, Denial) and verdict.reason == "unknown_token":
            self._unknown_counter(counting.count, caller)
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

    def cache_len(self) -> int:
        """How many verdicts are cached now (expired ones included until evicted)."""
        return len(self.verdicts)

    def clear_cache(self) -> None:
        """Forget every cached verdict (for example after an incident)."""
        self.verdicts.clear()

    def _unknown_counter(self, operation, caller: str) -> counting.Usage | None:
        """Peek at or count the caller's unknown bearers: in the shared counters while they
        are healthy, else in this process (the IdP must stay protected meanwhile)."""
        shared = self.shared_counters() if self.shared_counters is not None else None
        strategy, prefix = shared if shared is not None else (self._local, "")
        usage = operation(strategy, self.unknown_rate_limit, caller, prefix, scope=UNKNOWN_SCOPE)
        if usage is None and strategy is not self._local:
            usage = operation(self._local, self.unknown_rate_limit, caller, prefix,
                              scope=UNKNOWN_SCOPE)
        return usage
