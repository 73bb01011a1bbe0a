"""The judge's memory of verdicts: two bounded LRU caches, keyed by a digest of the token.

Active verdicts and inactive ones are held apart, each in a cache of its own bound, least
recently used out first: a flood of made-up bearers churns only the inactive cache and never
pushes out the verdicts real callers rely on (SPEC §11).
"""

import threading
from collections import OrderedDict


class VerdictCache:
    """Verdicts with a deadline each, in an active and an inactive LRU cache."""

    def __init__(self, size: int, inactive_size: int, clock):
        """Empty caches of at most ``size`` active and ``inactive_size`` inactive verdicts."""
        self.size = size
        self.inactive_size = inactive_size
        self.clock = clock
        #: digest -> (verdict, deadline on ``clock``)
        self.active: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self.inactive: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        """A verdict still within its cache time, or None."""
        with self._lock:
            for cache in (self.active, self.inactive):
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

    def put(self, key: str, verdict, ttl: float, active: bool) -> None:
        """Remember a verdict for ``ttl`` seconds, evicting the least recently used past the
        bound of its own cache (active and inactive verdicts never evict each other)."""
        cache, size = (self.active, self.size) if active else (self.inactive,
                                                                self.inactive_size)
        if ttl <= 0 or size == 0:
            return
        with self._lock:
            cache[key] = (verdict, self.clock() + ttl)
            cache.move_to_end(key)
            while len(cache) > size:
                cache.popitem(last=False)

    def __len__(self) -> int:
        """How many verdicts are held (expired ones included until evicted)."""
        with self._lock:
            return len(self.active) + len(self.inactive)

    def clear(self) -> None:
        """Forget every verdict."""
        with self._lock:
            self.active.clear()
            self.inactive.clear()
