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

With a revocation stream attached (``stream``, a :class:`flowestate_kit.ssf.Receiver`, or
``ssf_configuration_url``; docs/ssf.md), every event evicts the verdicts it names
(:meth:`Judge.evict`), and while the stream is healthy an active verdict may be cached up to
``min(stream_ttl, exp - now)``. The moment the stream is not healthy (it says so, or it has
not renewed its lease in time) the judge falls back to ``active_ttl`` by itself: no active
verdict is trusted more than ``active_ttl`` after it was fetched, a WARNING is logged once,
and :meth:`Judge.stream_status` says why.
"""

import hashlib
import ipaddress
import logging
import re
import threading
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
from flowestate_kit.cache import Match
from flowestate_kit.cache import VerdictCache
from flowestate_kit.local_counters import LocalCounters

log = logging.getLogger(__name__)

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


def check_introspection_url(url: str, name: str = "introspection_url") -> None:
    """Refuse a URL that would carry the service's secret and every bearer in clear text.

    RFC 7662 §4: the introspection endpoint MUST be protected by TLS. Plain http is allowed
    only to a loopback host (127.0.0.0/8, ::1, localhost), where nothing leaves the machine.
    The SSF receiver holds every URL it is given or discovers to the same rule (``name``
    says which one was refused).
    """
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if host and scheme == "https":
        return
    if host and scheme == "http" and is_loopback(host):
        return
    # The scheme and host only: a URL may carry credentials in its userinfo.
    raise ValueError(
        f"{name} must be an https URL (plain http only to 127.0.0.0/8, ::1 or "
        f"localhost), got scheme {scheme!r} and host {host!r}"
    )


def is_loopback(host: str) -> bool:
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
        stream=None,
        ssf_configuration_url: str | None = None,
        stream_ttl: float = 300,
    ):
        """Configure the IdP endpoint, credentials, cache bounds and the unknown-bearer limit.

        ``unknown_rate_limit`` (None: off) counts unknown bearers per caller. ``shared_counters``
        is a callable returning ``(strategy, key_prefix)``, a ``limits`` strategy whose counters
        other processes share (Redis), or None while that store is down; without one, or while
        it is down, the counting is done in this process.

        ``stream`` (a :class:`flowestate_kit.ssf.Receiver`) or ``ssf_configuration_url`` (the
        IdP's issuer or its ``/.well-known/ssf-configuration``, for a poll stream with these
        credentials) attaches a revocation stream; ``stream_ttl`` is how long an active verdict
        may be cached while it is healthy (never past the credential's ``exp``).
        """
        check_introspection_url(introspection_url)
        if min(cache_size, inactive_cache_size, active_ttl, inactive_ttl, stream_ttl) < 0:
            raise ValueError("cache sizes, active_ttl, inactive_ttl and stream_ttl must not be "
                             "negative")
        if stream is not None and ssf_configuration_url is not None:
            raise ValueError("give stream or ssf_configuration_url, not both")
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
        self.stream_ttl = stream_ttl
        self.stream = None
        self._health_lock = threading.Lock()
        self._stream_healthy = False
        #: On ``clock``: past it, a healthy stream that has not renewed is taken as silent.
        self._stream_lease = 0.0
        self._stream_reason = "no stream configured"
        self._stream_since = wall_clock()
        if ssf_configuration_url is not None:
            from flowestate_kit.ssf import Receiver  # joserfc is needed only with a stream

            stream = Receiver(ssf_configuration_url, client_id, client_secret, clock=clock)
        if stream is not None:
            self.attach_stream(stream)

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
        if self.stream is not None:
            self._check_stream()
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        cached = self.verdicts.get(key)
        if cached is not None:
            return cached
        limited = caller is not None and self.unknown_rate_limit is not None
        if limited:
            refused = self._unknown_counter(counting.peek, caller)
            if refused is not None and not refused.allowed:
                raise CallerLimited(refused)
        # Read before asking: an event that lands while the IdP answers makes the answer stale.
        epoch = self.verdicts.epoch
        verdict, ttl, long_ttl = self._introspect(token)
        self.verdicts.put(key, verdict, ttl, active=isinstance(verdict, Bearer),
                          long_ttl=long_ttl, epoch=epoch)
        if limited and isinstance(verdict, Denial) and verdict.reason == "unknown_token":
            self._unknown_counter(counting.count, caller)
        return verdict

    def _introspect(self, token: str) -> tuple[Bearer | Denial, float, float | None]:
        """Ask the IdP (RFC 7662 §2.1, Basic client authentication): the verdict, its cache
        time, and for an active one its cache time while a healthy stream allows more."""
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
            return denial_from_dict(body.get("denial")) or UNKNOWN, self.inactive_ttl, None
        bearer = Bearer.from_claims(body)
        ttl, long_ttl = self.active_ttl, self.stream_ttl
        if isinstance(bearer.expires_at, int | float):
            left = bearer.expires_at - self.wall_clock()
            ttl, long_ttl = min(ttl, left), min(long_ttl, left)
        return bearer, ttl, long_ttl

    def cache_len(self) -> int:
        """How many verdicts are cached now (expired ones included until evicted)."""
        return len(self.verdicts)

    def clear_cache(self) -> None:
        """Forget every cached verdict (for example after an incident)."""
        self.verdicts.clear()

    def evict(self, match: Match) -> int:
        """Forget the active verdicts ``match`` names (a revocation event); how many."""
        return self.verdicts.evict(match)

    def clear_refusals(self) -> None:
        """Forget every cached refusal (a credential was restored)."""
        self.verdicts.clear_inactive()

    def attach_stream(self, stream) -> None:
        """Take events and health from ``stream``; it starts on the first bearer judged (in
        the process that judges it, so a server that forks workers gets one per worker)."""
        self.stream = stream
        with self._health_lock:
            self._stream_reason = "starting"
            self._stream_since = self.wall_clock()
        stream.attach(self)

    def stream_healthy(self, lease: float) -> None:
        """The stream is healthy and says so again within ``lease`` seconds, or is taken as
        silent: active verdicts may be cached up to ``stream_ttl`` meanwhile."""
        with self._health_lock:
            self._stream_lease = self.clock() + lease
            if self._stream_healthy:
                return
            self._stream_healthy = True
            self._stream_reason = "healthy"
            self._stream_since = self.wall_clock()
            self.verdicts.allow_long()
        log.info("revocation stream healthy: active verdicts are cached up to %s s",
                 self.stream_ttl)

    def stream_unhealthy(self, reason: str, *, fault: bool = True) -> None:
        """The stream may have missed events: from now on no active verdict is trusted more
        than ``active_ttl`` after it was fetched. Logged once per healthy-to-unhealthy turn,
        as a warning unless it is no ``fault`` (the receiver was closed on purpose)."""
        with self._health_lock:
            was_healthy = self._stream_healthy
            self._stream_healthy = False
            self._stream_reason = reason
            if not was_healthy:
                return
            self._stream_since = self.wall_clock()
            cut = self.verdicts.fall_back(self.active_ttl)
        (log.warning if fault else log.info)(
            "revocation stream unhealthy (%s): active verdicts are cached at most %s s again "
            "(%d cut short)", reason, self.active_ttl, cut)

    def stream_status(self) -> dict:
        """The stream's health as this judge acts on it, for a service's health page."""
        if self.stream is not None:
            self._check_lease()
        with self._health_lock:
            status = {
                "configured": self.stream is not None,
                "healthy": self._stream_healthy,
                "reason": self._stream_reason,
                "since": self._stream_since,
                "active_ttl": self.stream_ttl if self._stream_healthy else self.active_ttl,
            }
        if self.stream is not None:
            status["stream"] = self.stream.status()
        return status

    def _check_stream(self) -> None:
        """Start the stream in this process if it is not running; notice a silent one."""
        if not self.stream.started:
            self.stream.start()
        self._check_lease()

    def _check_lease(self) -> None:
        """Fall back by itself when a healthy stream has not renewed its lease in time (its
        receiver stuck or gone), not only when the receiver says so."""
        if self._stream_healthy and self.clock() >= self._stream_lease:
            self.stream_unhealthy("no word from the stream within its lease")

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
