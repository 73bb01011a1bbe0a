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

The receiver is composed of one module per concern: :mod:`flowestate_kit.ssf_transmitter`
(discovery, the JWKS, stream management and polls over HTTP), :mod:`flowestate_kit.ssf_stream`
(this process's stream, made and polled), :mod:`flowestate_kit.ssf_apply` (SETs to
evictions), :mod:`flowestate_kit.ssf_health` (health and heartbeat) and
:mod:`flowestate_kit.ssf_loop` (the thread, closing, forking). This module holds the state they
share and is the kit's public entry: import the receiver from here.
"""

import hmac
import os
import threading
import time
import weakref
from urllib.parse import urlsplit

import requests

from flowestate_kit.judge import check_introspection_url
from flowestate_kit.push import PushEndpoint
from flowestate_kit.sets import Verifier
from flowestate_kit.sets import jose
from flowestate_kit.ssf_apply import SetIntake
from flowestate_kit.ssf_health import StreamHealth
from flowestate_kit.ssf_loop import Running
from flowestate_kit.ssf_loop import forked
from flowestate_kit.ssf_stream import OwnStream
from flowestate_kit.ssf_transmitter import METHODS
from flowestate_kit.ssf_transmitter import POLL
from flowestate_kit.ssf_transmitter import PUSH
from flowestate_kit.ssf_transmitter import StreamError
from flowestate_kit.ssf_transmitter import Transmitter
from flowestate_kit.ssf_transmitter import discovery_urls

__all__ = ["PUSH", "POLL", "PushEndpoint", "Receiver", "StreamError", "discovery_urls"]


class Receiver(StreamHealth, SetIntake, OwnStream, Running):
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
        self.transmitter = Transmitter(configuration_url, client_id, client_secret,
                                       timeout=timeout, session=session)
        self.configuration_url = self.transmitter.configuration_url
        self.issuer = self.transmitter.issuer
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
        self.threaded = thread
        #: How long the judges may trust a healthy word before the next one must come.
        self.lease = (poll_timeout + 2 * timeout if delivery == "poll"
                      else verify_interval + verification_timeout + timeout)
        self.judges: list = []
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
        os.register_at_fork(after_in_child=lambda: forked(this))

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

    @property
    def session(self) -> requests.Session:
        """The HTTP session the transmitter is reached with."""
        return self.transmitter.session

    @property
    def metadata(self) -> dict | None:
        """The transmitter's configuration document, once discovered."""
        return self.transmitter.metadata

    def push_authorized(self, value: str | None) -> bool:
        """Whether a push carries the Authorization value this stream was registered with."""
        expected = self._push_authorization
        if not expected or value is None:
            return False
        return hmac.compare_digest(value.encode(), expected.encode())

    def push_endpoint(self, app=None) -> PushEndpoint:
        """The WSGI application taking this stream's pushes (in front of ``app``, if given)."""
        return PushEndpoint(self, app)
