"""The kit as a Shared Signals receiver (docs/ssf.md): evict what each revocation touches.

A :class:`Receiver` finds the transmitter from its issuer (``/.well-known/ssf-configuration``,
SSF 1.0 §7), creates one stream of its own per process with the resource server's
credentials (HTTP Basic, as for introspection), or uses a configured ``stream_id``, and then,
in a daemon thread:

* long-polls it (RFC 8936 §2.4, ``returnImmediately`` false), acknowledging in each poll what
  the last one brought, or, for a push stream (RFC 8935), takes each SET the transmitter posts
  to a :class:`~flowestate_kit.push.PushEndpoint`;
* verifies every SET (:mod:`flowestate_kit.sets`) and applies it by the event table
  (:mod:`flowestate_kit.events`) to every :class:`~flowestate_kit.judge.Judge` attached;
* checks that ``stream_seq`` has no gap, and asks for a verification event every
  ``verify_interval`` seconds as a heartbeat.

The stream is *healthy* only after a verification it asked for came back (its random
``state`` echoed in a verified SET) and while polls keep succeeding and heartbeats keep coming
back. A failed poll, a refused SET, a gap, an unanswered heartbeat or a paused or disabled
stream makes it unhealthy at once; the judges then fall back to their ``active_ttl`` by
themselves, and only a fresh verification round trip makes it healthy again. Failures are
retried with a bounded exponential backoff.
"""

import atexit
import hmac
import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from urllib.parse import quote
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests

from flowestate_kit import events
from flowestate_kit.cache import Match
from flowestate_kit.judge import check_introspection_url
from flowestate_kit.push import PushEndpoint
from flowestate_kit.sets import KeysUnavailable
from flowestate_kit.sets import SetRejected
from flowestate_kit.sets import Verifier
from flowestate_kit.sets import jose

__all__ = ["PUSH", "POLL", "PushEndpoint", "Receiver", "StreamError", "discovery_urls"]

log = logging.getLogger(__name__)

#: RFC 8936 poll and RFC 8935 push, as SSF 1.0 names the delivery methods.
POLL = "urn:ietf:rfc:8936"
PUSH = "urn:ietf:rfc:8935"
METHODS = {"poll": POLL, "push": PUSH}
#: SSF 1.0 §7.2: inserted between the issuer's host and its path.
WELL_KNOWN = "/.well-known/ssf-configuration"


class StreamError(Exception):
    """The transmitter could not be reached or answered wrongly: unhealthy, retry later."""

    def __init__(self, message: str, status: int | None = None):
        """Carry the HTTP status, when there was one."""
        super().__init__(message)
        self.status = status


def discovery_urls(issuer_or_url: str) -> tuple[str, str]:
    """The configuration URL and the issuer it must name, from either of them (SSF 1.0 §7.2)."""
    parts = urlsplit(issuer_or_url)
    if parts.path.startswith(WELL_KNOWN):
        issuer_path = parts.path[len(WELL_KNOWN):]
        return issuer_or_url, urlunsplit((parts.scheme, parts.netloc, issuer_path, "", ""))
    issuer = issuer_or_url[:-1] if parts.path == "/" else issuer_or_url
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", "")), issuer


class Receiver:
    """One stream of revocation events feeding the judges attached; see the module docstring."""

    def __init__(self, configuration_url: str, client_id: str, client_secret: str, *,
                 stream_id: str | None = None, delivery: str = "poll",
                 push_url: str | None = None, push_authorization: str | None = None,
                 verify_interval: float = 60, verification_timeout: float = 30,
                 poll_timeout: float = 30, max_events: int = 100, timeout: float = 10,
                 backoff_max: float = 60, jwks_refetch_interval: float = 30,
                 clock=time.monotonic, session: requests.Session | None = None,
                 thread: bool = True):
        """Configure the transmitter (its issuer or configuration URL) and the credentials.

        ``stream_id`` uses an existing stream instead of creating one (then it is never
        deleted, and only one process may use it). ``delivery`` is ``"poll"`` or ``"push"``;
        a push stream is sent to ``push_url`` (served by :meth:`push_endpoint`) with a random
        ``Authorization`` value, or ``push_authorization`` for a configured push stream.
        ``verify_interval`` is the heartbeat; a verification not back within
        ``verification_timeout`` makes the stream unhealthy. ``poll_timeout`` bounds one long
        poll, ``timeout`` every other request, ``backoff_max`` the wait after failures.
        With ``thread`` false nothing runs by itself: the owner calls :meth:`step`.
        """
        jose()  # fail at configuration, not in the thread, when the ssf extra is missing
        if delivery not in METHODS:
            raise ValueError("delivery must be 'poll' or 'push'")
        if min(verify_interval, verification_timeout, poll_timeout, timeout, backoff_max) <= 0:
            raise ValueError("intervals and timeouts must be positive")
        if delivery == "push":
            if push_url is None:
                raise ValueError("a push stream needs the push_url it is delivered to")
            check_introspection_url(push_url, "push_url")
            if stream_id is not None and not push_authorization:
                raise ValueError("a configured push stream needs its push_authorization")
        self.configuration_url, self.issuer = discovery_urls(configuration_url)
        check_introspection_url(self.configuration_url, "configuration_url")
        self.client_id = client_id
        self.auth = (client_id, client_secret)
        self.delivery = delivery
        self.push_url = push_url
        self.push_path = (urlsplit(push_url).path or "/") if push_url else None
        self.verify_interval = verify_interval
        self.verification_timeout = verification_timeout
        self.poll_timeout = poll_timeout
        self.max_events = max_events
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.jwks_refetch_interval = jwks_refetch_interval
        self.clock = clock
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.threaded = thread
        #: How long the judges may trust a healthy word before the next one must come.
        self.lease = (poll_timeout + 2 * timeout if delivery == "poll"
                      else verify_interval + verification_timeout + timeout)
        self.judges: list = []
        self.metadata: dict | None = None
        self.verifier: Verifier | None = None
        self.stream_id = stream_id
        self._push_authorization = push_authorization
        self._reset_state()
        self.started = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Set to cut the thread's wait short (a push changed what it must do next).
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(this))

    def _reset_state(self) -> None:
        """The stream state of a receiver that has seen nothing yet."""
        self._lock = threading.RLock()
        self._owned = False
        self._poll_url: str | None = None
        self._healthy = False
        self._reason = "not started"
        self._transmitter_status = "enabled"
        #: (state, time sent on ``clock``) of the verification awaited, or None
        self._pending: tuple[str, float] | None = None
        self._next_verification = 0.0
        self._last_seq: int | None = None
        #: stream_seq the first SET must have (1 on a stream just created), else None
        self._first_seq: int | None = None
        self._acks: list[str] = []
        self._errs: dict[str, dict] = {}
        self._failures = 0
        self._applied = 0
        self._refused = 0

    # -- the judges ------------------------------------------------------------------------

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

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start receiving in this process (once; the thread is a daemon)."""
        with self._start_lock:
            if self.started:
                return
            self.started = True
            if self._closed:
                return
            self._set_unhealthy("starting")
            if self.threaded:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="flowestate-ssf-receiver")
                self._thread.start()
            atexit.register(self._close_at_exit)

    def close(self, timeout: float | None = None) -> bool:
        """Delete the stream if this receiver created it and stop the thread (waiting up to
        ``timeout`` seconds, by default one long poll); whether the thread has ended.

        The stream goes first: the transmitter answers a poll of a deleted stream at once, so
        the thread is not left waiting out its long poll.
        """
        self._closed = True
        self.started = True  # a judge must not start it again
        self._stop.set()
        self._wake.set()
        with self._lock:
            stream_id = self.stream_id if self._owned else None
            if stream_id is not None:
                self.stream_id, self._owned = None, False
        if stream_id is not None and self.metadata is not None:
            try:
                self._request("DELETE", self.metadata["configuration_endpoint"],
                              params={"stream_id": stream_id}, expect=(200, 202, 204))
                log.info("revocation stream %s deleted", stream_id)
            except StreamError as error:
                log.info("revocation stream %s not deleted: %s", stream_id, error)
        ended = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.poll_timeout + self.timeout if timeout is None else timeout)
            ended = not thread.is_alive()
        self._set_unhealthy("receiver closed", fault=False)
        atexit.unregister(self._close_at_exit)
        if self._own_session:
            self.session.close()
        return ended

    def _close_at_exit(self) -> None:
        """At interpreter exit: delete our stream without waiting out a long poll."""
        self.close(timeout=1)

    def _run(self) -> None:
        """The thread: step until closed, waiting between steps as each says."""
        while not self._stop.is_set():
            self._wake.clear()  # before the step: a wake during it must cut the next wait
            try:
                delay = self.step()
            except Exception:  # the thread must not die: unhealthy, and try again later
                log.exception("revocation stream receiver failed")
                self._failures += 1
                self._set_unhealthy("receiver error")
                delay = self._backoff()
            if delay > 0:
                self._wake.wait(delay)

    def step(self) -> float:
        """One round: set the stream up if needed, send a heartbeat when due, poll once (a
        poll stream); how many seconds to wait before the next round."""
        try:
            self._ensure_stream()
            self._heartbeat()
            if self.delivery == "poll":
                self._poll()
                delay = 0.0
            else:
                delay = self._until_heartbeat()
        except StreamError as error:
            if self._stop.is_set():
                return 0.0  # closing: the stream was deleted under the poll, as intended
            self._failures += 1
            # The judge logs the turn to unhealthy; repeats of the same failure stay quiet.
            (log.info if self._failures == 1 else log.debug)(
                "revocation stream: %s", error)
            self._set_unhealthy(str(error))
            return self._backoff()
        self._failures = 0
        return delay

    def _backoff(self) -> float:
        """Exponential in the failures in a row, at most ``backoff_max``, with jitter so
        that many processes do not return to a recovering IdP at the same instant."""
        base = min(self.backoff_max, 2.0 ** min(max(self._failures, 1) - 1, 16))
        return base * (0.5 + random.random() / 2)

    # -- talking to the transmitter --------------------------------------------------------

    def _request(self, method: str, url: str, *, body=None, params=None, auth: bool = True,
                 expect=(200,), timeout=None):
        """One HTTP exchange; the JSON object answered (None for an empty answer)."""
        what = f"{method} {urlsplit(url).path}"
        try:
            with self.session.request(
                method, url, json=body, params=params, auth=self.auth if auth else None,
                headers={"Accept": "application/json"}, allow_redirects=False,
                timeout=timeout if timeout is not None else self.timeout,
            ) as response:
                status = response.status_code
                if status not in expect:
                    raise StreamError(f"{what} answered {status}", status)
                if status == 204 or not response.content:
                    return None
                data = response.json()
        except requests.RequestException as error:
            raise StreamError(f"{what} failed: {type(error).__name__}") from None
        except ValueError:
            raise StreamError(f"{what} answered something not JSON") from None
        if not isinstance(data, dict):
            raise StreamError(f"{what} answered something not a JSON object")
        return data

    def _url(self, data: dict, name: str, required: bool = True) -> str | None:
        """A URL the transmitter named, held to the same https rule as the kit's own."""
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise StreamError(f"the transmitter named no {name}")
        try:
            check_introspection_url(value, name)
        except ValueError as error:
            raise StreamError(str(error)) from None
        return value

    def _ensure_stream(self) -> None:
        """Discover the transmitter, then create (or look up) the stream, as far as not done."""
        if self.metadata is None:
            data = self._request("GET", self.configuration_url, auth=False) or {}
            # SSF 1.0 §7.2: the issuer must be the one the configuration URL was built from.
            if data.get("issuer") != self.issuer:
                raise StreamError("the transmitter configuration names another issuer")
            for name in ("jwks_uri", "configuration_endpoint", "verification_endpoint"):
                self._url(data, name)
            methods = data.get("delivery_methods_supported")
            if not isinstance(methods, list) or METHODS[self.delivery] not in methods:
                raise StreamError(f"the transmitter does not deliver by {self.delivery}")
            self.metadata = data
            self.verifier = Verifier(self.issuer, self.client_id, self._fetch_keys, self.clock,
                                     self.jwks_refetch_interval)
        if self.stream_id is None:
            self._create_stream()
        elif self.delivery == "poll" and self._poll_url is None:
            found = self._request("GET", self.metadata["configuration_endpoint"],
                                  params={"stream_id": self.stream_id}) or {}
            self._poll_url = self._poll_url_of(found)

    def _create_stream(self) -> None:
        """Create this process's stream (SSF 1.0 §8.1.1.1) and ask for a verification."""
        delivery = {"method": METHODS[self.delivery]}
        if self.delivery == "push":
            self._push_authorization = "Bearer " + secrets.token_urlsafe(32)
            delivery.update(endpoint_url=self.push_url,
                            authorization_header=self._push_authorization)
        body = {"delivery": delivery, "events_requested": events.requested(self.issuer),
                "description": f"flowestate-kit on {socket.gethostname()}, pid {os.getpid()}"}
        data = self._request("POST", self.metadata["configuration_endpoint"], body=body,
                             expect=(200, 201)) or {}
        stream_id = data.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise StreamError("the created stream has no stream_id")
        with self._lock:
            self.stream_id = stream_id
            self._owned = True
            self._poll_url = self._poll_url_of(data) if self.delivery == "poll" else None
            self._last_seq, self._first_seq = None, 1
            self._acks, self._errs = [], {}
            self._pending, self._next_verification = None, self.clock()
        log.info("revocation stream %s created (%s)", stream_id, self.delivery)

    def _poll_url_of(self, config: dict) -> str:
        """Where a poll stream is polled: its ``endpoint_url``, else the contract's path."""
        url = self._url(config.get("delivery") or {}, "endpoint_url", required=False)
        return url or f"{self.issuer}/ssf/poll/{quote(self.stream_id, safe='')}"

    def _fetch_keys(self) -> dict:
        """The transmitter's JWKS; KeysUnavailable when it cannot be had now."""
        try:
            return self._request("GET", self.metadata["jwks_uri"], auth=False) or {}
        except StreamError as error:
            raise KeysUnavailable(str(error)) from None

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
            self._request("POST", self.metadata["verification_endpoint"],
                          body={"stream_id": self.stream_id, "state": state},
                          expect=(200, 202, 204))
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

    def _poll(self) -> None:
        """One long poll (RFC 8936 §2.4): acknowledge and refuse what the last one brought."""
        with self._lock:
            acks, errs = list(self._acks), dict(self._errs)
        body = {"returnImmediately": False, "maxEvents": self.max_events, "ack": acks}
        if errs:
            body["setErrs"] = errs
        try:
            data = self._request("POST", self._poll_url, body=body,
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

    # -- applying events -------------------------------------------------------------------

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

    # -- push ------------------------------------------------------------------------------

    def push_authorized(self, value: str | None) -> bool:
        """Whether a push carries the Authorization value this stream was registered with."""
        expected = self._push_authorization
        if not expected or value is None:
            return False
        return hmac.compare_digest(value.encode(), expected.encode())

    def push_endpoint(self, app=None) -> PushEndpoint:
        """The WSGI application taking this stream's pushes (in front of ``app``, if given)."""
        return PushEndpoint(self, app)


def _forked(reference) -> None:
    """In a forked child: the parent's thread, locks, connections and own stream are the
    parent's; this process starts afresh (a stream of its own) on its first bearer."""
    receiver = reference()
    if receiver is None:
        return
    owned = receiver._owned
    receiver._reset_state()
    receiver._start_lock = threading.Lock()
    receiver._stop = threading.Event()
    receiver._wake = threading.Event()
    receiver._thread = None
    receiver.started = receiver._closed
    receiver.metadata = receiver.verifier = None  # found again, with locks of this process
    if owned:
        receiver.stream_id = None
    if receiver._own_session:
        receiver.session = requests.Session()
