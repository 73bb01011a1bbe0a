"""RFC 8935 push delivery: lease one due stream at a time and post its SETs in order.

``flask ssf deliver`` runs :func:`run_forever`; any number of workers on any hosts may run
beside each other (docs/ssf.md, "The path of one event"). A pass (:func:`deliver_once`)
numbers new events, then serves each due push stream once: the stream is leased in a short
committed transaction (idp/store/ssf_push.py), so no lock is held while a receiver is slow;
its unacknowledged deliveries are signed and posted in ``stream_seq`` order, one SET per
request (idp/ssf/push_request.py says what each answer means). A 202 acknowledges the
delivery and a refusal records it, and the queue moves on; any other outcome stops the
stream there, keeping its order, counts a failure and sets the time of the next try.

Unlike the rest of this layer the worker commits: it is its own unit of work, as the purge
is, and every step is a short transaction so requests and other workers run beside it.
"""

import logging
import random
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session

from idp.ssf import keys
from idp.ssf import push_request
from idp.ssf import sets
from idp.ssf import streams
from idp.store import outbox
from idp.store import ssf_push
from idp.store.database import begin_write
from idp.store.models.ssf import SsfStream

log = logging.getLogger(__name__)

#: The first retry's pause in seconds; it doubles with every further failure, up to
#: ``IDP_SSF_PUSH_BACKOFF_MAX``.
BACKOFF_BASE_SECONDS = 1.0
#: SETs signed in one transaction before they are posted one by one.
BATCH = 20
#: Most SETs posted under one lease before the stream goes back, so busy streams take turns.
PER_LEASE = 200
#: Added to a lease beyond two request timeouts (connecting, then the answer): the short
#: transactions around one request, a database lock wait included.
LEASE_MARGIN_SECONDS = 10.0
#: Pause of :func:`run_forever` after a pass that delivered nothing: a new event waits half
#: of it on average, well inside the quarter second docs/ssf.md aims at.
IDLE_SECONDS = 0.1
#: Longest pause of :func:`run_forever` after passes that failed (the database is away).
FAULT_PAUSE_MAX = 5.0


@dataclass(frozen=True)
class Settings:
    """The push settings (docs/ssf.md, "Configuration"), read once per pass."""

    #: Seconds to connect, and again to wait for the answer (``IDP_SSF_PUSH_TIMEOUT``).
    timeout: float
    #: The longest pause between tries of a failing stream (``IDP_SSF_PUSH_BACKOFF_MAX``).
    backoff_max: float

    @classmethod
    def from_config(cls, config) -> "Settings":
        """The settings of the app's config."""
        return cls(timeout=float(config["IDP_SSF_PUSH_TIMEOUT"]),
                   backoff_max=float(config["IDP_SSF_PUSH_BACKOFF_MAX"]))

    @property
    def lease(self) -> timedelta:
        """How long a lease lasts. It is extended before every request, so it only has to
        outlast one request and the transactions around it."""
        return timedelta(seconds=2 * self.timeout + LEASE_MARGIN_SECONDS)


@dataclass
class Lease:
    """A stream this worker holds, with what posting to it needs."""

    stream_id: int
    public_id: str
    endpoint_url: str | None
    #: The opened Authorization header, or None when the stream has none.
    authorization: str | None
    #: The ``lease_until`` this worker last set: also its claim to the stream.
    until: datetime
    #: Why nothing can be posted to the stream at all, or None.
    unusable: str | None = None


@dataclass(frozen=True)
class Item:
    """One signed delivery, ready to post."""

    delivery_id: int
    jti: str
    stream_seq: int
    attempt: int
    token: str


def backoff(failures: int, backoff_max: float, rand=random.random) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``base·2^(failures-1)``, at most
    ``backoff_max``, less up to half of it at random, so that streams which failed together
    (one receiver behind several of them) are not all tried again at the same moment."""
    delay = min(backoff_max, BACKOFF_BASE_SECONDS * 2 ** min(failures - 1, 32))
    return delay * (0.5 + 0.5 * rand())


@contextmanager
def _session_of(source):
    """The session to work in: ``source`` itself, or a new one from a session factory."""
    owned = not isinstance(source, Session | scoped_session)
    session = source() if owned else source
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        if owned:
            session.close()


def deliver_once(source, config, now_fn, http, *, stop: threading.Event | None = None) -> int:
    """One pass: number new events, then serve every due push stream once.

    ``source`` is a session or a session factory; ``now_fn`` tells the time (the one clock,
    ``idp.core.clock.utcnow``); ``http`` is a ``requests.Session``. Returns how many SETs
    receivers accepted. A set ``stop`` ends the pass after the request in flight.
    """
    settings = Settings.from_config(config)
    accepted = 0
    with _session_of(source) as session:
        # A look first, so an idle worker's frequent passes take no lock.
        if ssf_push.unsequenced(session):
            outbox.sequence(session, now_fn())
        session.commit()
        served: set[int] = set()
        while not (stop and stop.is_set()):
            lease = _take(session, config, settings, now_fn, served)
            if lease is None:
                break
            served.add(lease.stream_id)
            try:
                accepted += _serve(session, config, settings, lease, now_fn, http, stop)
            finally:
                _release(session, lease)
    return accepted


def _take(session: Session, config, settings: Settings, now_fn, served) -> Lease | None:
    """Lease a due stream not served yet in this pass, with what posting to it needs."""
    now = now_fn()
    until = now + settings.lease
    stream_id = ssf_push.take(session, now, until, skip=served)
    if stream_id is None:
        session.rollback()
        return None
    stream = session.get(SsfStream, stream_id)
    lease = Lease(stream_id=stream_id, public_id=stream.public_id,
                  endpoint_url=stream.endpoint_url,
                  authorization=streams.push_authorization(stream, config), until=until)
    if stream.sealed_authorization and lease.authorization is None:
        lease.unusable = "its Authorization header does not open with SECRET_KEY"
    elif not lease.endpoint_url:
        lease.unusable = "it has no endpoint_url"
    session.commit()
    return lease


def _serve(session: Session, config, settings: Settings, lease: Lease, now_fn, http,
           stop) -> int:
    """Post the leased stream's deliveries in order until none is left or one fails."""
    if lease.unusable:
        _fail(session, settings, lease, None, lease.unusable, now_fn)
        return 0
    accepted = sent = 0
    while sent < PER_LEASE:
        batch = _sign(session, config, settings, lease, now_fn)
        if not batch:
            return accepted
        for item in batch:
            if stop and stop.is_set():
                return accepted
            answer = push_request.post(http, lease.endpoint_url, lease.authorization,
                                       item.token, settings.timeout)
            sent += 1
            if answer.problem is not None:
                _fail(session, settings, lease, item, answer.problem, now_fn)
                return accepted
            accepted += answer.accepted
            if not _answered(session, settings, lease, item, answer, now_fn):
                return accepted
    return accepted


def _sign(session: Session, config, settings: Settings, lease: Lease, now_fn) -> list[Item]:
    """Sign the next deliveries in ``stream_seq`` order, noting their kid, and commit.

    The kid is committed before the SET leaves, so a key rotated meanwhile stays published
    until the receiver has acknowledged it (idp/store/ssf_keys.py). Nothing when the lease
    was lost or the stream is no longer enabled.
    """
    begin_write(session)
    now = now_fn()
    until = now + settings.lease
    if not ssf_push.extend(session, lease.stream_id, lease.until, until):
        session.rollback()
        return []
    lease.until = until
    stream = session.get(SsfStream, lease.stream_id)
    items = [
        Item(delivery.id, delivery.jti, delivery.stream_seq, delivery.attempts + 1,
             sets.signed_set(session, config, stream, delivery, event, now))
        for delivery, event in outbox.pending(session, lease.stream_id, BATCH)
    ]
    session.commit()
    return items


def _answered(session: Session, settings: Settings, lease: Lease, item: Item,
              answer: push_request.Answer, now_fn) -> bool:
    """Record a 202 or a refusal; whether this worker still holds the stream and goes on."""
    begin_write(session)
    now = now_fn()
    until = now + settings.lease
    ssf_push.attempted(session, item.delivery_id)
    if answer.refusal is None:
        outbox.acknowledge(session, lease.stream_id, [item.jti], now)
    else:
        outbox.record_error(session, lease.stream_id, item.jti, answer.refusal, now)
    ssf_push.answered(session, lease.stream_id, lease.until, now, refusal=answer.refusal)
    held = ssf_push.extend(session, lease.stream_id, lease.until, until)
    session.commit()
    if held:
        lease.until = until
    log.log(logging.DEBUG if answer.refusal is None else logging.INFO,
            "ssf push: stream %s seq %d answered %d%s (attempt %d)", lease.public_id,
            item.stream_seq, answer.status, "" if answer.refusal is None else ", refused",
            item.attempt)
    return held


def _fail(session: Session, settings: Settings, lease: Lease, item: Item | None, problem: str,
          now_fn) -> None:
    """Stop the stream here: one more failure, its reason, and the time of the next try."""
    begin_write(session)
    now = now_fn()
    failures = session.scalar(
        select(SsfStream.failures).where(SsfStream.id == lease.stream_id))
    if failures is None:
        # The receiver deleted the stream meanwhile: nothing to retry.
        session.rollback()
        return
    failures += 1
    pause = backoff(failures, settings.backoff_max)
    if item is not None:
        ssf_push.attempted(session, item.delivery_id)
    ssf_push.failed(session, lease.stream_id, lease.until, error=problem, now=now,
                    retry_at=now + timedelta(seconds=pause))
    session.commit()
    log.warning("ssf push: stream %s seq %s failed: %s (attempt %s, failure %d); next try "
                "in %.1f s", lease.public_id, item.stream_seq if item else "-", problem,
                item.attempt if item else "-", failures, pause)


def _release(session: Session, lease: Lease) -> None:
    """Give the stream back for the next pass; a worker that cannot lets its lease run out."""
    try:
        begin_write(session)
        ssf_push.release(session, lease.stream_id, lease.until)
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        log.warning("ssf push: stream %s not released (%s); its lease runs out instead",
                    lease.public_id, type(error).__name__)


def _on_signals(stop: threading.Event) -> dict:
    """Have SIGTERM and SIGINT set ``stop`` (in the main thread only); a second one acts as
    it normally would. Returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}

    def handle(signum, _frame):
        stop.set()
        signal.signal(signum, previous[signum])

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    return previous


def run_forever(source, config, now_fn, http, *, interval: float = IDLE_SECONDS,
                stop: threading.Event | None = None) -> None:
    """Run passes until SIGTERM or SIGINT (or ``stop``), pausing ``interval`` when idle.

    The request in flight is finished and its stream released before this returns. A pass
    that fails (the database away, the signing key not opening) is logged and tried again
    after a pause that grows up to FAULT_PAUSE_MAX.
    """
    stop = stop or threading.Event()
    previous = _on_signals(stop)
    faults = 0
    log.info("ssf push: delivering, %g s between idle passes", interval)
    try:
        while not stop.is_set():
            try:
                accepted = deliver_once(source, config, now_fn, http, stop=stop)
            except (SQLAlchemyError, keys.KeyUnavailable) as error:
                faults += 1
                log.warning("ssf push: pass failed (%s); trying again", type(error).__name__)
                stop.wait(min(FAULT_PAUSE_MAX, interval * 2 ** min(faults, 16)))
                continue
            faults = 0
            if not accepted:
                stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("ssf push: stopped")
