"""A :class:`~flowestate_kit.ssf.Receiver`'s own stream on the transmitter: found, made, polled.

The receiver discovers the transmitter once, then creates one stream per process with the
resource server's credentials (SSF 1.0 §8.1.1.1), or looks up a configured ``stream_id``, and
makes it again when the transmitter no longer has it. A poll stream is long-polled
(RFC 8936 §2.4, ``returnImmediately`` false), each poll acknowledging and refusing what the
last one brought.
"""

import logging
import os
import secrets
import socket

from flowestate_kit import events
from flowestate_kit.sets import Verifier
from flowestate_kit.ssf_transmitter import METHODS
from flowestate_kit.ssf_transmitter import StreamError

# One logger for the whole receiver, as before it was split: logging settings name it.
log = logging.getLogger("flowestate_kit.ssf")


class OwnStream:
    """Set up and poll the stream; it works on the state ``Receiver`` keeps."""

    def _ensure_stream(self) -> None:
        """Discover the transmitter, then create (or look up) the stream, as far as not done."""
        if self.transmitter.metadata is None:
            self.transmitter.discover(self.delivery)
            self.verifier = Verifier(self.issuer, self.client_id, self.transmitter.fetch_keys,
                                     self.clock, self.jwks_refetch_interval)
        if self.stream_id is None:
            self._create_stream()
        elif self.delivery == "poll" and self._poll_url is None:
            found = self.transmitter.streams("GET", params={"stream_id": self.stream_id}) or {}
            self._poll_url = self.transmitter.poll_url_of(found, self.stream_id)

    def _create_stream(self) -> None:
        """Create this process's stream (SSF 1.0 §8.1.1.1) and ask for a verification."""
        delivery = {"method": METHODS[self.delivery]}
        if self.delivery == "push":
            self._push_authorization = "Bearer " + secrets.token_urlsafe(32)
            delivery.update(endpoint_url=self.push_url,
                            authorization_header=self._push_authorization)
        body = {"delivery": delivery, "events_requested": events.requested(self.issuer),
                "description": f"flowestate-kit on {socket.gethostname()}, pid {os.getpid()}"}
        data = self.transmitter.streams("POST", body=body, expect=(200, 201)) or {}
        stream_id = data.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise StreamError("the created stream has no stream_id")
        with self._lock:
            self.stream_id = stream_id
            self._owned = True
            self._poll_url = (self.transmitter.poll_url_of(data, stream_id)
                              if self.delivery == "poll" else None)
            self._last_seq, self._first_seq = None, 1
            self._acks, self._errs = [], {}
            self._pending, self._next_verification = None, self.clock()
        log.info("revocation stream %s created (%s)", stream_id, self.delivery)

    def _poll(self) -> None:
        """One long poll (RFC 8936 §2.4): acknowledge and refuse what the last one brought."""
        with self._lock:
            acks, errs = list(self._acks), dict(self._errs)
        body = {"returnImmediately": False, "maxEvents": self.max_events, "ack": acks}
        if errs:
            body["setErrs"] = errs
        try:
            data = self.transmitter.request("POST", self._poll_url, body=body,
                                            timeout=(self.timeout, self.poll_timeout)) or {}
        except StreamError as error:
            if error.status == 404 and self._owned:
                self.stream_id = None  # gone (purged or deleted): make a new one next round
            raise
        with self._lock:
            self._acks = [jti for jti in self._acks if jti not in acks]
            self._errs = {jti: err for jti, err in self._errs.items() if jti not in errs}
        sets = data.get("sets", {})
        if not isinstance(sets, dict):
            raise StreamError("the poll answered sets that are not an object")
        self._renew()
        self._take(sets)
