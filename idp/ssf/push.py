"""RFC 8935 push delivery: one pass of a worker, serving each due push stream once in order.

A pass (:func:`deliver_once`) numbers new events, then serves each due push stream once: the
stream is leased (idp/ssf/push_lease.py), its unacknowledged deliveries are signed and posted
in ``stream_seq`` order, one SET per request (idp/ssf/push_request.py says what each answer
means), and each outcome is recorded (idp/ssf/push_outcome.py): the queue moves on after a
202 or a refusal and stops at anything else. ``flask ssf deliver`` runs passes in a loop
(idp/ssf/push_worker.py).

Unlike the rest of this layer the worker commits: it is its own unit of work, as the purge
is, and every step is a short transaction so requests and other workers run beside it.
"""

import threading
from contextlib import contextmanager

from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session

from idp.ssf import push_lease
from idp.ssf import push_outcome
from idp.ssf import push_request
from idp.ssf import sets
from idp.ssf.push_lease import Item
from idp.ssf.push_lease import Lease
from idp.ssf.push_lease import Settings
from idp.store import outbox
from idp.store import ssf_push
from idp.store.database import begin_write
from idp.store.models.ssf import SsfStream

#: SETs signed in one transaction before they are posted one by one.
BATCH = 20
#: Most SETs posted under one lease before the stream goes back, so busy streams take turns.
PER_LEASE = 200


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
            lease = push_lease.take(session, config, settings, now_fn, served)
            if lease is None:
                break
            served.add(lease.stream_id)
            try:
                accepted += _serve(session, config, settings, lease, now_fn, http, stop)
            finally:
                push_lease.release(session, lease)
    return accepted


def _serve(session: Session, config, settings: Settings, lease: Lease, now_fn, http,
           stop) -> int:
    """Post the leased stream's deliveries in order until none is left or one fails."""
    if lease.unusable:
        push_outcome.failed(session, settings, lease, None, lease.unusable, now_fn)
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
                push_outcome.failed(session, settings, lease, item, answer.problem, now_fn)
                return accepted
            accepted += answer.accepted
            if not push_outcome.answered(session, settings, lease, item, answer, now_fn):
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
