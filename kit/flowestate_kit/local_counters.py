"""Rate-limit counters held in this process, for the ``limits`` library's strategies."""

import threading
import time

from limits.storage import Storage


class LocalCounters(Storage):
    """Fixed-window counters held in this process (the IdP's ``memory://``, the kit's default).

    The ``limits`` library's memory storage expires its keys from a timer thread that it
    starts anew whenever the last one has finished, about every 10 ms under load, and that
    walks every key on each run: with thousands of credentials counted, that thread cost more
    than the counting (docs/PERFORMANCE.md). Here a window that has ended is simply replaced
    when its key is next counted, and ended windows are swept out, in the counting thread,
    when the table reaches ``sweep_at`` keys, or twice the size it kept at the last sweep
    (so a table of live windows is not rescanned on every new key).
    """

    STORAGE_SCHEME = None

    def __init__(self, clock=time.time, sweep_at: int = 100_000):
        """Empty counters read against ``clock`` (seconds since the epoch)."""
        super().__init__()
        self.clock = clock
        self.sweep_at = sweep_at
        self._next_sweep = sweep_at
        self._lock = threading.Lock()
        #: key -> [end of the window, count in it]
        self._windows: dict[str, list] = {}

    @property
    def base_exceptions(self):
        """Nothing here fails the way a network store does."""
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to the key's window (a new one of ``expiry`` seconds if it ended)."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                if len(self._windows) >= self._next_sweep:
                    self._sweep(now)
                window = self._windows[key] = [now + expiry, 0]
            window[1] += amount
            return window[1]

    def get(self, key: str) -> int:
        """The count in the key's current window (0 when it has ended)."""
        window = self._windows.get(key)
        return window[1] if window is not None and window[0] > self.clock() else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now if it has none)."""
        window = self._windows.get(key)
        return window[0] if window is not None else self.clock()

    def check(self) -> bool:
        """Always reachable."""
        return True

    def reset(self) -> int:
        """Forget every window; how many there were."""
        with self._lock:
            count = len(self._windows)
            self._windows.clear()
        return count

    def clear(self, key: str) -> None:
        """Forget one key's window."""
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Drop every ended window (the caller holds the lock)."""
        for key in [k for k, (end, _count) in self._windows.items() if end <= now]:
            del self._windows[key]
        self._next_sweep = max(self.sweep_at, 2 * len(self._windows))
