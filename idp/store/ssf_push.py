"""Push streams' delivery state: which stream is due, its lease, and how its last attempt went.

A push worker (idp/ssf/push_lease.py) holds a stream through its ``lease_until`` column, not a row
lock, so nothing stays locked while it waits for a receiver (docs/ssf.md, "The path of one
event"). The lease is also its owner's token: every change below is conditional on the
``lease_until`` the worker was given, so a worker whose lease ran out and was taken over
changes nothing of the new holder's. These functions never commit; the worker does.
"""

from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import exists
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.store.database import begin_write
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfEvent
from idp.store.models.ssf import SsfStream

#: Longest ``last_error`` kept: the receiver chooses the text, the status pages show it.
ERROR_WIDTH = 500


def _waiting():
    """A delivery of the outer stream that its receiver has not acknowledged yet."""
    return exists(select(SsfDelivery.id).where(
        SsfDelivery.stream_id == SsfStream.id, SsfDelivery.acked_at.is_(None)))


def due(now: datetime):
    """An enabled push stream with something to send, out of backoff and held by nobody."""
    return and_(
        SsfStream.delivery_method == PUSH,
        SsfStream.status == "enabled",
        or_(SsfStream.next_attempt_at.is_(None), SsfStream.next_attempt_at <= now),
        or_(SsfStream.lease_until.is_(None), SsfStream.lease_until <= now),
        _waiting(),
    )


def take(session: Session, now: datetime, until: datetime, skip=()) -> int | None:
    """Lease one due stream until ``until`` and return its id, or None if none is due.

    The stream served least recently goes first, so one busy stream does not starve the
    rest. On PostgreSQL the row is taken ``FOR UPDATE SKIP LOCKED``: two workers choosing
    at once get different streams, neither waits. On SQLite the choice is made holding the
    write lock, which serializes choosers the same way. A read without the lock comes first
    there, so an idle worker's frequent look costs no write lock. The caller commits.
    """
    query = select(SsfStream.id).where(due(now))
    if skip:
        query = query.where(SsfStream.id.not_in(skip))
    query = query.order_by(SsfStream.last_delivery_at.asc().nulls_first(), SsfStream.id).limit(1)
    if session.get_bind().dialect.name == "sqlite":
        if session.scalar(query) is None:
            session.rollback()
            return None
        begin_write(session)
        stream_id = session.scalar(query)
    else:
        stream_id = session.scalar(query.with_for_update(skip_locked=True, of=SsfStream))
    if stream_id is None:
        return None
    session.execute(
        update(SsfStream).where(SsfStream.id == stream_id).values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return stream_id


def unsequenced(session: Session) -> bool:
    """Whether some committed event waits for its number (a look that takes no lock)."""
    return bool(session.scalar(select(exists(select(SsfEvent.id).where(SsfEvent.seq.is_(None))))))


def _held(stream_id: int, lease: datetime):
    """The stream, while this worker's lease on it is the current one."""
    return and_(SsfStream.id == stream_id, SsfStream.lease_until == lease)


def extend(session: Session, stream_id: int, lease: datetime, until: datetime) -> bool:
    """Extend this worker's lease to ``until`` if it still holds it and the stream is enabled.

    False means stop: the lease ran out and was taken, or the receiver paused or disabled
    the stream meanwhile (SSF 1.0 §8.1.2), which takes effect before the next SET.
    """
    return bool(session.execute(
        update(SsfStream).where(_held(stream_id, lease), SsfStream.status == "enabled")
        .values(lease_until=until).execution_options(synchronize_session=False)
    ).rowcount)


def release(session: Session, stream_id: int, lease: datetime) -> None:
    """Give the stream back, unless the lease already passed to another worker."""
    session.execute(
        update(SsfStream).where(_held(stream_id, lease)).values(lease_until=None)
        .execution_options(synchronize_session=False)
    )


def answered(session: Session, stream_id: int, lease: datetime, now: datetime, *,
             refusal: str | None) -> None:
    """The receiver answered: 202, or a 400 that refused the SET (``refusal``).

    Either way it is up and judging what it gets, so its failures start again at 0; a 202
    stamps ``last_delivery_at``, a refusal is shown as the stream's ``last_error``.
    """
    values = {"failures": 0, "next_attempt_at": None}
    if refusal is None:
        values["last_delivery_at"] = now
    else:
        values.update(last_error=refusal[:ERROR_WIDTH], last_error_at=now)
    session.execute(
        update(SsfStream).where(_held(stream_id, lease)).values(**values)
        .execution_options(synchronize_session=False)
    )


def failed(session: Session, stream_id: int, lease: datetime, *, error: str, now: datetime,
           retry_at: datetime) -> None:
    """The receiver could not be reached or answered badly: count it, back off, let go.

    The stream's ``failures``, ``last_error``, ``last_error_at`` and ``next_attempt_at`` are
    what ``flask ssf streams`` and ``GET /ssf/status`` show for a failing receiver.
    """
    session.execute(
        update(SsfStream).where(_held(stream_id, lease))
        .values(failures=SsfStream.failures + 1, last_error=error[:ERROR_WIDTH],
                last_error_at=now, next_attempt_at=retry_at, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def attempted(session: Session, delivery_id: int) -> None:
    """Count one more request that carried this delivery."""
    session.execute(
        update(SsfDelivery).where(SsfDelivery.id == delivery_id)
        .values(attempts=SsfDelivery.attempts + 1).execution_options(synchronize_session=False)
    )
