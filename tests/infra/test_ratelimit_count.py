"""ratelimit.count: the fixed-window fast path agrees with limits' own hit + window stats."""

import pytest
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from limits.strategies import MovingWindowRateLimiter

from idp.infra import ratelimit


class CountingStorage(MemoryStorage):
    """Memory storage that counts the calls a request makes (a Redis round trip each)."""

    def __init__(self):
        """An empty store with no calls yet."""
        super().__init__()
        self.calls = 0
        self._inside = False

    def incr(self, *args, **kwargs):
        """Count, then increment (its own internal read is not a call of ours)."""
        self.calls += 1
        self._inside = True
        try:
            return super().incr(*args, **kwargs)
        finally:
            self._inside = False

    def get(self, *args, **kwargs):
        """Count a read made by the caller, then read."""
        if not self._inside:
            self.calls += 1
        return super().get(*args, **kwargs)

    def get_expiry(self, *args, **kwargs):
        """Count, then read the window's end."""
        self.calls += 1
        return super().get_expiry(*args, **kwargs)


@pytest.mark.parametrize("strategy_class", [FixedWindowRateLimiter, MovingWindowRateLimiter],
                         ids=["fixed window", "moving window"])
def test_remaining_counts_down_and_the_limit_plus_one_is_refused(strategy_class):
    strategy = strategy_class(MemoryStorage())
    seen = [ratelimit.count(strategy, "3 per minute", "key_a") for _ in range(4)]
    assert [u.remaining for u in seen] == [2, 1, 0, 0]
    assert [u.allowed for u in seen] == [True, True, True, False]
    assert all(u.limit == 3 and u.reset_at > 0 for u in seen)


def test_the_fixed_window_fast_path_matches_hit_and_window_stats():
    fast = FixedWindowRateLimiter(MemoryStorage())
    slow = FixedWindowRateLimiter(MemoryStorage())
    item = sorted(ratelimit.parse_many("2 per minute"))[0]
    for _ in range(3):
        usage = ratelimit.count(fast, "2 per minute", "key_b")
        allowed = slow.hit(item, "bearer", "key_b")
        stats = slow.get_window_stats(item, "bearer", "key_b")
        assert (usage.allowed, usage.remaining) == (allowed, stats.remaining)
        assert abs(usage.reset_at - stats.reset_time) < 1


def test_a_fixed_window_request_costs_two_storage_calls_per_limit():
    storage = CountingStorage()
    strategy = FixedWindowRateLimiter(storage)
    ratelimit.count(strategy, "10 per minute;100 per hour", "key_c")
    assert storage.calls == 4, "one increment and one expiry read for each of the two limits"


def test_the_tightest_of_several_limits_is_reported():
    strategy = FixedWindowRateLimiter(MemoryStorage())
    usage = ratelimit.count(strategy, "100 per hour;2 per minute", "key_d")
    assert (usage.limit, usage.remaining) == (2, 1)
    ratelimit.count(strategy, "100 per hour;2 per minute", "key_d")
    refused = ratelimit.count(strategy, "100 per hour;2 per minute", "key_d")
    assert not refused.allowed and refused.limit == 2
