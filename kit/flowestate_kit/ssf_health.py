"""Whether a :class:`~flowestate_kit.ssf.Receiver`'s stream is healthy, and what its judges hear.

A stream is healthy only after a verification the receiver asked for came back; the
heartbeat asks again every ``verify_interval`` seconds, and one not back within
``verification_timeout`` makes it unhealthy, as any sign of a lost event does. Each turn is
told to every :class:`~flowestate_kit.judge.Judge` attached, which bounds its cache by it.
"""

import logging
import secrets
import threading

from flowestate_kit.ssf_transmitter import StreamError

# One logger for the whole receiver, as before it was split: logging settings name it.
log = logging.getLogger("flowestate_kit.ssf")


class StreamHealth:
    """The receiver's health and heartbeat; it works on the state ``Receiver`` keeps."""

    def attach(self, judge) -> None:
        """Feed ``judge`` this stream's evictions and health."""
        with self._lock:
            self.judges.append(judge)
            if self._healthy:
                judge.stream_healthy(self.lease)

    def status(self) -> dict:
        """The receiver's own view, for a health page (no secrets)."""
        with self._lock:
            return {"delivery": self.delivery, "stream_id": self.stream_id,
                    "healthy": self._healthy, "reason": self._reason,
                    "transmitter_status": self._transmitter_status,
                    "last_seq": self._last_seq, "applied": self._applied,
                    "refused": self._refused}

    def _set_healthy(self) -> None:
        """A fresh verification came back: healthy, and the judges may trust it a lease."""
        with self._lock:
            was = self._healthy
            self._healthy = True
            self._reason = "healthy"
            for judge in self.judges:
                judge.stream_healthy(self.lease)
        if not was:
            log.info("revocation stream %s verified", self.stream_id)

    def _renew(self) -> None:
        """A poll succeeded: while healthy, extend the judges' trust by a lease."""
        with self._lock:
            if self._healthy:
                for judge in self.judges:
                    judge.stream_healthy(self.lease)

    def _set_unhealthy(self, reason: str, fault: bool = True) -> None:
        """Events may have been missed: the judges fall back now, and only a verification
        asked for from now on (a fresh round trip, as soon as possible) restores health.
        ``fault`` false: a deliberate stop, which the judges log without a warning."""
        with self._lock:
            self._healthy = False
            self._reason = reason
            self._pending = None
            self._next_verification = self.clock()
            for judge in self.judges:
                judge.stream_unhealthy(reason, fault=fault)
        self._wake_thread()

    def _wake_thread(self) -> None:
        """Let the thread act at once on what another thread (a push) changed; the thread
        itself never wakes itself, or it would skip its own backoff."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._wake.set()

    def _heartbeat(self) -> None:
        """Ask for a verification when one is due; an unanswered one makes us unhealthy."""
        now = self.clock()
        with self._lock:
            if self._pending is not None:
                if now - self._pending[1] < self.verification_timeout:
                    return
                self._set_unhealthy("verification not answered in time")
            if now < self._next_verification:
                return
            state = secrets.token_urlsafe(16)
            # Noted before asking: a pushed answer may arrive before the request returns.
            self._pending = (state, now)
            self._next_verification = now + self.verify_interval
        try:
            self.transmitter.ask_verification(self.stream_id, state)
        except StreamError:
            with self._lock:
                if self._pending is not None and self._pending[0] == state:
                    self._pending = None
            raise

    def _until_heartbeat(self) -> float:
        """Seconds until the heartbeat needs attention (a push stream's thread sleeps so)."""
        now = self.clock()
        with self._lock:
            if self._pending is not None:
                return max(0.0, self._pending[1] + self.verification_timeout - now)
            return max(0.0, self._next_verification - now)
