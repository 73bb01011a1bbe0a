"""The judge's memory of verdicts: two bounded LRU caches, keyed by a digest of the token.

Active verdicts and inactive ones are held apart, each in a cache of its own bound, least
recently used out first: a flood of made-up bearers churns only the inactive cache and never
pushes out the verdicts real callers rely on (SPEC §11).

Active verdicts are also indexed by every id a revocation event can name (connection, API
key, organization, client, user, and the pairs organization + user and organization +
client), so an event evicts exactly its matches at the cost of one dict lookup and the
matches themselves: an event about a credential never cached costs that one lookup.
"""

import threading
from collections import OrderedDict
from collections import deque
from dataclasses import dataclass
from dataclasses import fields
from itertools import islice

#: How many recent evictions are remembered, so an answer that was in flight while one of
#: them happened is not cached afterwards (see :meth:`VerdictCache.put`).
RECENT_EVICTIONS = 256
#: What the recent-evictions log holds besides a :class:`Match`.
EVERYTHING = "everything"
REFUSALS = "refusals"


@dataclass(frozen=True)
class Match:
    """Which cached active verdicts an event touches: all the ids given must be the verdict's.

    ``Match(org_id="org_1", user_id="usr_2")`` is that person's connections in that
    organization; ``Match(org_id="org_1")`` is everything of the organization.
    """

    connection_id: str | None = None
    key_id: str | None = None
    org_id: str | None = None
    client_id: str | None = None
    user_id: str | None = None

    def __post_init__(self):
        """Refuse an empty match: it would name every verdict by accident."""
        if not any(self.named()):
            raise ValueError("a Match names at least one id")

    def named(self) -> list[tuple[str, str]]:
        """The (field, id) pairs this match names."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None]

    def matches(self, verdict) -> bool:
        """Whether ``verdict`` carries every id this match names."""
        return all(getattr(verdict, name, None) == value for name, value in self.named())

    def index_key(self) -> tuple:
        """The narrowest index entry holding every verdict this match can name."""
        if self.connection_id is not None:
            return ("connection", self.connection_id)
        if self.key_id is not None:
            return ("key", self.key_id)
        if self.org_id is not None and self.user_id is not None:
            return ("member", self.org_id, self.user_id)
        if self.org_id is not None and self.client_id is not None:
            return ("org_client", self.org_id, self.client_id)
        if self.user_id is not None:
            return ("user", self.user_id)
        if self.client_id is not None:
            return ("client", self.client_id)
        return ("org", self.org_id)


def index_keys(verdict) -> list[tuple]:
    """Every index entry an active verdict is filed under (one per way an event names it)."""
    connection = getattr(verdict, "connection_id", None)
    key = getattr(verdict, "key_id", None)
    org = getattr(verdict, "org_id", None)
    client = getattr(verdict, "client_id", None)
    user = getattr(verdict, "user_id", None)
    keys = []
    if connection is not None:
        keys.append(("connection", connection))
    if key is not None:
        keys.append(("key", key))
    if org is not None:
        keys.append(("org", org))
    if client is not None:
        keys.append(("client", client))
        if org is not None:
            keys.append(("org_client", org, client))
    if user is not None:
        keys.append(("user", user))
        if org is not None:
            keys.append(("member", org, user))
    return keys


class VerdictCache:
    """Verdicts with a deadline each, in an active and an inactive LRU cache."""

    def __init__(self, size: int, inactive_size: int, clock):
        """Empty caches of at most ``size`` active and ``inactive_size`` inactive verdicts."""
        self.size = size
        self.inactive_size = inactive_size
        self.clock = clock
        #: digest -> (verdict, deadline on ``clock``, time it was stored on ``clock``)
        self.active: OrderedDict[str, tuple[object, float, float]] = OrderedDict()
        self.inactive: OrderedDict[str, tuple[object, float, float]] = OrderedDict()
        #: index entry (see :func:`index_keys`) -> digests of the active verdicts under it
        self.index: dict[tuple, set[str]] = {}
        #: Whether an active verdict may be kept for the longer bound a healthy stream allows.
        self.long_allowed = False
        #: Counts evictions; an answer fetched under an older count may be stale (``put``).
        self.epoch = 0
        self._recent: deque[tuple[int, object]] = deque(maxlen=RECENT_EVICTIONS)
        self._lock = threading.Lock()

    def get(self, key: str):
        """A verdict still within its cache time, or None."""
        with self._lock:
            for cache in (self.active, self.inactive):
                entry = cache.get(key)
                if entry is None:
                    continue
                if entry[1] <= self.clock():
                    self._drop(cache, key)
                    return None
                cache.move_to_end(key)
                return entry[0]
            return None

    def put(self, key: str, verdict, ttl: float, active: bool, *,
            long_ttl: float | None = None, epoch: int | None = None) -> None:
        """Remember a verdict for ``ttl`` seconds (``long_ttl`` while long bounds are allowed),
        evicting the least recently used past the bound of its own cache (active and inactive
        verdicts never evict each other).

        ``epoch`` is :attr:`epoch` read before the verdict was fetched: when an eviction that
        touches the verdict happened meanwhile, the answer predates it and is not cached.
        """
        cache, size = (self.active, self.size) if active else (self.inactive,
                                                                self.inactive_size)
        with self._lock:
            if epoch is not None and epoch != self.epoch and self._touched_since(
                    epoch, verdict, active):
                return
            if active and long_ttl is not None and self.long_allowed:
                ttl = long_ttl
            if ttl <= 0 or size == 0:
                return
            now = self.clock()
            if key in cache:
                self._drop(cache, key)
            cache[key] = (verdict, now + ttl, now)
            if active:
                for entry in index_keys(verdict):
                    self.index.setdefault(entry, set()).add(key)
            while len(cache) > size:
                self._drop(cache, next(iter(cache)))

    def evict(self, match: Match) -> int:
        """Drop the active verdicts ``match`` names; how many. Unknown ids cost one lookup."""
        with self._lock:
            self._note(match)
            filed = self.index.get(match.index_key())
            if not filed:
                return 0
            hits = [key for key in filed if match.matches(self.active[key][0])]
            for key in hits:
                self._drop(self.active, key)
            return len(hits)

    def clear_inactive(self) -> None:
        """Forget every refusal (a credential was restored: its refusal may be stale)."""
        with self._lock:
            self._note(REFUSALS)
            self.inactive.clear()

    def clear(self) -> None:
        """Forget every verdict."""
        with self._lock:
            self._note(EVERYTHING)
            self.active.clear()
            self.inactive.clear()
            self.index.clear()

    def allow_long(self) -> None:
        """Let active verdicts stored from now on be kept for the longer bound."""
        with self._lock:
            self.long_allowed = True

    def fall_back(self, bound: float) -> int:
        """Stop long bounds at once: no active verdict is trusted past ``bound`` seconds after
        it was stored (those already older are dropped); how many were cut short or dropped.

        One pass over the active cache, under the lock: it happens only when a stream turns
        unhealthy, and every reader must see the shorter bound from that moment on.
        """
        with self._lock:
            self.long_allowed = False
            now = self.clock()
            changed = 0
            for key, (verdict, deadline, stored) in list(self.active.items()):
                limit = stored + bound
                if deadline <= limit:
                    continue
                changed += 1
                if limit <= now:
                    self._drop(self.active, key)
                else:
                    self.active[key] = (verdict, limit, stored)
            return changed

    def __len__(self) -> int:
        """How many verdicts are held (expired ones included until evicted)."""
        with self._lock:
            return len(self.active) + len(self.inactive)

    def _drop(self, cache: OrderedDict, key: str) -> None:
        """Remove one entry, and from the index when it is an active verdict."""
        verdict = cache.pop(key)[0]
        if cache is not self.active:
            return
        for entry in index_keys(verdict):
            filed = self.index.get(entry)
            if filed is not None:
                filed.discard(key)
                if not filed:
                    del self.index[entry]

    def _note(self, what) -> None:
        """Count an eviction and remember what it named, for answers still in flight."""
        self.epoch += 1
        self._recent.append((self.epoch, what))

    def _touched_since(self, epoch: int, verdict, active: bool) -> bool:
        """Whether an eviction since ``epoch`` names ``verdict`` (or the log no longer
        reaches back that far, when it must be assumed to)."""
        missed = self.epoch - epoch
        if missed > len(self._recent):
            return True
        for _, what in islice(reversed(self._recent), missed):
            if what == EVERYTHING:
                return True
            if what == REFUSALS:
                if not active:
                    return True
            elif active and what.matches(verdict):
                return True
        return False
