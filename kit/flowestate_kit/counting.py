"""Per-credential rate limits (SPEC §10) on the ``limits`` library: count, peek, the 429.

Counting happens only after a bearer is authenticated, so a stranger sending made-up tokens
cannot spend anyone's quota. The IdP (``idp.infra.ratelimit``) and the kit's adapters count
with these same functions and name the counters the same way (prefix, scope, key), so services
sharing a Redis share the counters.
"""

import functools
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from limits import parse_many
from limits.strategies import FixedWindowRateLimiter

from flowestate_kit.answers import RATE_LIMITED_MESSAGE
from flowestate_kit.answers import error_body

log = logging.getLogger(__name__)

#: Counter namespace shared by every door that limits per credential.
SCOPE = "bearer"
#: IPv6 prefix length counted as one source: a single host or customer is usually handed a
#: whole /64, so counting single IPv6 addresses would give one attacker 2**64 budgets.
IPV6_PREFIX = 64
#: Seconds to stop asking a counter store that just failed, so an unreachable Redis costs one
#: timeout every few seconds instead of one per request.
PAUSE_AFTER_FAILURE = 5.0

#: id() of a failed storage -> (that storage, monotonic time until which it is not asked).
#: Holding the storage keeps its id from being reused by a new one while it is paused.
_paused: dict[int, tuple[object, float]] = {}


@dataclass(frozen=True)
class Usage:
    """Where one credential stands against its limit after this request was counted."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds since the epoch when the current window ends.
    reset_at: float

    def headers(self, now: float) -> dict:
        """``X-RateLimit-*``, plus ``Retry-After`` (seconds) when over the limit."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_at - now)))
        return headers


def count(strategy, limit_value: str, key: str, prefix: str = "",
          clock=time.monotonic, scope: str = SCOPE) -> Usage | None:
    """Count one request of ``key`` (in the namespace ``scope``) against every limit in
    ``limit_value``.

    Returns the breached limit, else the one with the least room left. Returns None when the
    counter storage cannot be reached: limits protect capacity, so a Redis outage lets
    requests through (logged) rather than failing every API call.
    """
    storage = strategy.storage
    if _is_paused(storage, clock):
        return None
    identifiers = [part for part in (prefix, scope, key) if part]
    tightest = None
    try:
        for item in _parsed(limit_value):
            usage = _hit(strategy, item, identifiers)
            if not usage.allowed:
                return usage
            if tightest is None or usage.remaining < tightest.remaining:
                tightest = usage
    except Exception as error:  # any storage failure: count nothing, serve the request
        _pause(storage, clock, error)
        return None
    _paused.pop(id(storage), None)
    return tightest


#: What :func:`peek` answers when no limit is breached.
OPEN = Usage(True, 0, 0, 0.0)


def peek(strategy, limit_value: str, key: str, prefix: str = "",
         clock=time.monotonic, scope: str = SCOPE) -> Usage | None:
    """Where ``key`` stands without counting: a breached limit, else :data:`OPEN`.

    Used where only failures are counted (failed authentication, failed sign-in): a source
    already over its limit is refused before any work. None when the store cannot be reached.
    """
    storage = strategy.storage
    if _is_paused(storage, clock):
        return None
    identifiers = [part for part in (prefix, scope, key) if part]
    try:
        for item in _parsed(limit_value):
            usage = _test(strategy, item, identifiers)
            if usage is not None:
                return usage
    except Exception as error:  # as in count(): an unreachable store refuses nothing
        _pause(storage, clock, error)
        return None
    return OPEN


def address_key(address: str | None) -> str:
    """The source a per-address counter is kept for: an IPv4 address or an IPv6 /64.

    An IPv4-mapped IPv6 address counts as its IPv4 address; anything unparsable counts as
    one shared "unknown" source (only a misconfigured proxy sends that).
    """
    try:
        parsed = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return "unknown"
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if parsed.version == 4:
        return str(parsed)
    return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))


def _is_paused(storage, clock) -> bool:
    """Whether ``storage`` failed moments ago and is being left alone."""
    paused = _paused.get(id(storage))
    return paused is not None and paused[0] is storage and paused[1] > clock()


def _pause(storage, clock, error: Exception) -> None:
    """Stop asking ``storage`` for a few seconds after a failure, and say so once."""
    _paused[id(storage)] = (storage, clock() + PAUSE_AFTER_FAILURE)
    log.warning("rate-limit storage unavailable, not counting for %.0f s: %s",
                PAUSE_AFTER_FAILURE, type(error).__name__)


@functools.lru_cache(maxsize=64)
def _parsed(limit_value: str) -> tuple:
    """The limits in a setting such as ``"100 per minute; 5000 per day"``, parsed once."""
    return tuple(sorted(parse_many(limit_value)))


def _hit(strategy, item, identifiers) -> Usage:
    """Count one request against ``item`` and say where the counter stands.

    For the fixed window (Flask-Limiter's default) the count returned by the increment is the
    window's usage, so only the window's end is asked for: two storage calls, not the three of
    ``hit`` + ``get_window_stats`` (which reads the counter again). Other strategies keep the
    generic pair.
    """
    if type(strategy) is FixedWindowRateLimiter:
        key = item.key_for(*identifiers)
        used = strategy.storage.incr(key, item.get_expiry(), amount=1)
        reset_at = strategy.storage.get_expiry(key)
        return Usage(used <= item.amount, item.amount, max(0, item.amount - used), reset_at)
    allowed = strategy.hit(item, *identifiers)
    stats = strategy.get_window_stats(item, *identifiers)
    return Usage(allowed, item.amount, max(0, stats.remaining), stats.reset_time)


def _test(strategy, item, identifiers) -> Usage | None:
    """The breached ``item`` as a refusal, or None while it has room (nothing is counted)."""
    if type(strategy) is FixedWindowRateLimiter:
        key = item.key_for(*identifiers)
        if strategy.storage.get(key) < item.amount:
            return None
        return Usage(False, item.amount, 0, strategy.storage.get_expiry(key))
    if strategy.test(item, *identifiers):
        return None
    stats = strategy.get_window_stats(item, *identifiers)
    return Usage(False, item.amount, 0, stats.reset_time)


def rate_limited_parts(usage: Usage, now: float) -> tuple[int, dict, dict]:
    """Status, JSON body and headers of the §4 429 answer."""
    body = error_body("RATE_LIMITED", "rate_limited", RATE_LIMITED_MESSAGE)
    return 429, body, usage.headers(now)
