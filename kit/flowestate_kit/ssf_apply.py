"""What a :class:`~flowestate_kit.ssf.Receiver` does with the SETs it is given, polled or pushed.

Each SET is verified (:mod:`flowestate_kit.sets`), checked for its place in the stream
(``stream_seq`` with no gap, a repeat ignored) and applied by the event table
(:mod:`flowestate_kit.events`) to every judge attached. A refused SET, a gap or this resource
server being disabled makes the stream unhealthy (:mod:`flowestate_kit.ssf_health`).
"""

import hmac
import logging

from flowestate_kit import events
from flowestate_kit.cache import Match
from flowestate_kit.sets import KeysUnavailable
from flowestate_kit.sets import SetRejected
from flowestate_kit.ssf_transmitter import StreamError

# One logger for the whole receiver, as before it was split: logging settings name it.
log = logging.getLogger("flowestate_kit.ssf")


class SetIntake:
    """Verify, order and apply SETs; it works on the state ``Receiver`` keeps."""

    def _take(self, sets: dict) -> None:
        """Verify a poll's SETs, apply them in stream_seq order, note acks and refusals.

        When the keys cannot be fetched nothing of the batch is acknowledged or refused: it
        comes again, whole, in a later poll.
        """
        good, refused = [], {}
        for jti, token in sets.items():
            try:
                event = self.verifier.verify(token)
                if event.jti != jti:
                    raise SetRejected("invalid_request", "jti is not the SET's key in the poll")
                good.append(event)
            except SetRejected as refusal:
                refused[jti] = refusal
            except KeysUnavailable as error:
                raise StreamError(f"SETs not verified: {error}") from None
        with self._lock:
            for jti, refusal in refused.items():
                self._errs[jti] = refusal.as_dict()
                self._refuse(jti, refusal)
            for event in sorted(good, key=lambda e: e.stream_seq):
                try:
                    self._apply(event)
                except SetRejected as refusal:
                    self._errs[event.jti] = refusal.as_dict()
                    self._refuse(event.jti, refusal, keep_seq=True)
                else:
                    self._acks.append(event.jti)

    def receive(self, token: str) -> None:
        """Take one pushed SET (RFC 8935 §2): applied, or SetRejected / KeysUnavailable."""
        if self.verifier is None:
            raise KeysUnavailable("the receiver has not reached the transmitter yet")
        try:
            event = self.verifier.verify(token)
        except SetRejected as refusal:
            with self._lock:
                self._refuse(None, refusal)
            raise
        with self._lock:
            try:
                self._apply(event)
            except SetRejected as refusal:
                self._refuse(event.jti, refusal, keep_seq=True)
                raise

    def _refuse(self, jti: str | None, refusal: SetRejected, keep_seq: bool = False) -> None:
        """A SET was refused: an event may be lost, so unhealthy; its stream_seq is unknown
        (unless it verified), so the next SET starts the count again."""
        self._refused += 1
        log.warning("SET %s refused: %s", jti or "(pushed)", refusal)
        if not keep_seq:
            self._last_seq = self._first_seq = None
        self._set_unhealthy(f"SET refused ({refusal.err})")

    def _apply(self, event) -> None:
        """Check the event's place in the stream, then do what the event table says.

        Called with the lock held, so the sequence and the evictions keep the stream's order
        even when a push and the heartbeat thread meet.
        """
        seq, last = event.stream_seq, self._last_seq
        if last is not None and seq <= last:
            return  # delivered again (our acknowledgement was lost): already applied
        expected = last + 1 if last is not None else self._first_seq
        self._last_seq, self._first_seq = seq, None
        if expected is not None and seq != expected:
            self._set_unhealthy(f"gap in stream_seq: expected {expected}, got {seq}")
        for action in events.actions(event, self.issuer, self.client_id):
            self._do(action)
        self._applied += 1

    def _do(self, action) -> None:
        """One action of the event table, on every judge attached."""
        if isinstance(action, Match):
            for judge in self.judges:
                judge.evict(action)
        elif action == events.EVERYTHING:
            for judge in self.judges:
                judge.clear_cache()
            # This server itself was disabled. The IdP remembers a good resource-server check
            # for a few seconds, so it may still call a credential active just now: no answer
            # may be kept past active_ttl until a verification (refused while the server is
            # disabled) comes back.
            self._set_unhealthy("this resource server was disabled on the IdP")
        elif action == events.REFUSALS:
            for judge in self.judges:
                judge.clear_refusals()
        elif isinstance(action, events.Verified):
            pending = self._pending
            if pending is not None and hmac.compare_digest(
                    action.state.encode(), pending[0].encode()):
                self._pending = None
                if self._transmitter_status == "enabled":
                    self._set_healthy()
        elif isinstance(action, events.StreamStatus):
            self._transmitter_status = action.status
            if action.status != "enabled":
                self._set_unhealthy(f"stream {action.status} by the transmitter")
            elif not self._healthy:
                self._pending, self._next_verification = None, self.clock()
                self._wake_thread()
