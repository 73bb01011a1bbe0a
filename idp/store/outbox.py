"""The outbox of security events (docs/ssf.md, "The path of one event", items 1 and 2).

``emit`` adds an event row in the transaction of the change it tells, so a rolled-back change
leaves no event and a committed one always has one. ``sequence`` numbers committed events and
fans them out to the streams that asked for them; the transmitter then answers a stream's queue
with ``pending`` and moves it on with ``acknowledge`` and ``record_error``. Nothing here
commits: every function works in the caller's session and transaction.
"""

import secrets
from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy import Float
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from idp.core import secrets as cs
from idp.core import ssf_events
from idp.store.database import WRITE_INTENT
from idp.store.database import write_now
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfKey
from idp.store.models import SsfState
from idp.store.models import SsfStream
from idp.store.models.ssf import POLL

#: The sequencer's row in ``ssf_state``.
STATE_ID = 1
#: Stream statuses that receive events; a paused stream holds them, a disabled one drops them
#: (SSF 1.0 §8.1.2).
RECEIVING = ("enabled", "paused")
#: Most events one ``sequence`` call numbers, so a backlog cannot hold the lock for long.
SEQUENCE_BATCH = 1000
#: Longest receiver error text kept on a delivery.
MAX_ERROR_LENGTH = 2000


def emit(session: Session, kind: str, now: datetime, *, issuer: str,
         stream: SsfStream | None = None, **ids) -> SsfEvent:
    """Add the event of one change to the caller's transaction (docs/ssf.md, "Event table").

    ``ids`` are the public ids the kind's subject needs (see
    :func:`idp.core.ssf_events.event_for`); ``stream`` is given for the stream-only kinds
    (verification, stream-updated), which go to that stream alone.
    """
    if (kind in ssf_events.STREAM_KINDS) != (stream is not None):
        raise ValueError(f"{kind}: a stream is given for, and only for, the stream-only kinds")
    if stream is not None:
        ids["stream_id"] = stream.public_id
    event_type, sub_id, payload = ssf_events.event_for(kind, issuer, now, **ids)
    event = SsfEvent(
        public_id=cs.new_public_id("evt_"), created_at=now, kind=kind, event_type=event_type,
        subject=sub_id, payload=payload, stream_id=stream.id if stream is not None else None,
    )
    session.add(event)
    return event


def _lock_state(session: Session) -> SsfState | None:
    """The sequencer's row, locked for this transaction; None while another process holds it.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so a second sequencer skips rather than waits (the
    first is already numbering what both would see). SQLite: the database's one write lock,
    taken before the first read so two sequencers run one after the other.
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite" and not conn.get_execution_options().get(WRITE_INTENT):
        write_now(session)
    locked = select(SsfState).where(SsfState.id == STATE_ID).with_for_update(skip_locked=True)
    state = session.scalar(locked)
    if state is not None:
        return state
    if session.scalar(select(SsfState.id).where(SsfState.id == STATE_ID)) is not None:
        return None
    # The migration inserts the row; an emptied table gets it back here.
    if conn.dialect.name == "sqlite":
        # The write lock is held: nobody else can be inserting it.
        session.add(SsfState(id=STATE_ID, last_seq=0))
        session.flush()
    else:
        # Committed at once on a connection of its own: inserted inside the caller's
        # transaction, a second sequencer's insert would wait for that whole transaction.
        with session.get_bind().connect() as own:
            own.execute(pg_insert(SsfState).values(id=STATE_ID, last_seq=0)
                        .on_conflict_do_nothing())
            own.commit()
    return session.scalar(locked)


def sequence(session: Session, now: datetime, *, limit: int = SEQUENCE_BATCH) -> int:
    """Number committed, unsequenced events and fan them out; the count numbered.

    Events get the next global ``seq`` in id order; each stream that is enabled or paused and
    whose ``events_delivered`` holds the event's type gets one delivery, numbered from its own
    ``last_stream_seq`` so each stream's ``stream_seq`` runs 1, 2, 3… without a gap. A
    stream-only event goes to its stream alone, whatever it asked for. A stream receives the
    events of changes made from its creation on (``event.created_at >= stream.created_at``):
    a new stream never gets the backlog of what happened before it existed.

    Numbering is serialized by the ``ssf_state`` lock and only sees committed events, so an
    event that commits late gets a later number. Returns 0 at once when another process holds
    the lock. On SQLite the call takes the write lock (``write_now``) unless the session holds
    it already: call it before the transaction writes anything else. The caller commits.
    ``now`` is the caller's reading of the one clock, taken like every store call's; the
    numbering itself compares only stored times.
    """
    state = _lock_state(session)
    if state is None:
        return 0
    events = list(session.scalars(
        select(SsfEvent).where(SsfEvent.seq.is_(None)).order_by(SsfEvent.id).limit(limit)
    ))
    if not events:
        return 0
    # Locked so that a stream deleted or disabled meanwhile is seen as it is now; the
    # sequencer is the only writer of last_stream_seq.
    streams = list(session.scalars(
        select(SsfStream).where(SsfStream.status.in_(RECEIVING)).order_by(SsfStream.id)
        .with_for_update()
    ))
    by_id = {stream.id: stream for stream in streams}
    for event in events:
        state.last_seq += 1
        event.seq = state.last_seq
        for stream in _receivers(event, streams, by_id):
            stream.last_stream_seq += 1
            session.add(SsfDelivery(
                stream_id=stream.id, event_id=event.id, stream_seq=stream.last_stream_seq,
                jti=secrets.token_hex(16), attempts=0,
            ))
    session.flush()
    return len(events)


def _receivers(event: SsfEvent, streams: list[SsfStream], by_id: dict) -> list[SsfStream]:
    """The streams one event goes to (see :func:`sequence`)."""
    if event.stream_id is not None:
        # A stream-only event of a disabled or deleted stream goes nowhere.
        target = by_id.get(event.stream_id)
        return [target] if target is not None else []
    return [stream for stream in streams
            if event.event_type in (stream.events_delivered or ())
            and stream.created_at <= event.created_at]


def pending(session: Session, stream_id: int, limit: int) -> list[tuple[SsfDelivery, SsfEvent]]:
    """The stream's unacknowledged deliveries with their events, in ``stream_seq`` order."""
    rows = session.execute(
        select(SsfDelivery, SsfEvent).join(SsfEvent, SsfEvent.id == SsfDelivery.event_id)
        .where(SsfDelivery.stream_id == stream_id, SsfDelivery.acked_at.is_(None))
        .order_by(SsfDelivery.stream_seq).limit(limit)
    )
    return [(delivery, event) for delivery, event in rows]


def acknowledge(session: Session, stream_id: int, jtis, now: datetime) -> int:
    """Mark the stream's deliveries with these ``jti`` values acknowledged; how many were.

    A jti of another stream, an unknown one or one acknowledged before changes nothing.
    """
    jtis = [jti for jti in jtis if isinstance(jti, str)]
    if not jtis:
        return 0
    return session.execute(
        update(SsfDelivery)
        .where(SsfDelivery.stream_id == stream_id, SsfDelivery.jti.in_(jtis),
               SsfDelivery.acked_at.is_(None))
        .values(acked_at=now).execution_options(synchronize_session=False)
    ).rowcount


def record_error(session: Session, stream_id: int, jti: str, error: str,
                 now: datetime) -> bool:
    """A receiver refused a SET for good (RFC 8936 ``setErrs``, RFC 8935 §2.4 400): keep its
    error and count it acknowledged so the queue moves on; True if the delivery was waiting."""
    return session.execute(
        update(SsfDelivery)
        .where(SsfDelivery.stream_id == stream_id, SsfDelivery.jti == jti,
               SsfDelivery.acked_at.is_(None))
        .values(acked_at=now, error=(error or "")[:MAX_ERROR_LENGTH])
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def lag(session: Session, stream_id: int) -> tuple[int, datetime | None]:
    """How many deliveries the stream has not acknowledged, and when the oldest one's change
    happened (None when none waits)."""
    count, oldest = session.execute(
        select(func.count(SsfDelivery.id), func.min(SsfEvent.created_at))
        .join(SsfEvent, SsfEvent.id == SsfDelivery.event_id)
        .where(SsfDelivery.stream_id == stream_id, SsfDelivery.acked_at.is_(None))
    ).one()
    return count, oldest


# --- the purge's rules (idp/store/purge.py runs them in batches) -----------------------------


def acknowledged_deliveries(before: datetime):
    """Deliveries acknowledged (or refused for good) before ``before``: nothing reads them."""
    return SsfDelivery, SsfDelivery.acked_at <= before


def spent_events(before: datetime):
    """Events made before ``before``, sequenced, that no stream still waits to acknowledge.

    An unsequenced event stays whatever its age: the sequencer has not fanned it out yet.
    """
    waiting = exists().where(SsfDelivery.event_id == SsfEvent.id, SsfDelivery.acked_at.is_(None))
    return SsfEvent, SsfEvent.seq.isnot(None) & (SsfEvent.created_at <= before) & ~waiting


class _SecondsSince(FunctionElement):
    """Seconds from a stored naive UTC time to ``now``, in each database's date arithmetic."""

    type = Float()
    inherit_cache = True


@compiles(_SecondsSince, "sqlite")
def _seconds_since_sqlite(element, compiler, **kw):
    """SQLite stores ISO text; julianday reads it."""
    since, now = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({now}) - julianday({since})) * 86400.0)"


@compiles(_SecondsSince, "postgresql")
def _seconds_since_postgresql(element, compiler, **kw):
    """PostgreSQL subtracts timestamps into an interval."""
    since, now = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({now} - {since}))"


def inactive_poll_streams(now: datetime, default_seconds: int):
    """Poll streams not polled (or, never polled, not used since their creation) for longer
    than their ``inactivity_timeout``, or ``default_seconds`` when they set none
    (``IDP_SSF_INACTIVITY_SECONDS``; SSF 1.0 §8.1.1). Their deliveries go with them."""
    idle = _SecondsSince(func.coalesce(SsfStream.last_polled_at, SsfStream.created_at),
                         literal(now, DateTime))
    limit = func.coalesce(SsfStream.inactivity_timeout, default_seconds)
    return SsfStream, (SsfStream.delivery_method == POLL) & (idle > limit)


def retired_keys():
    """Retired signing keys no unacknowledged delivery was signed with: a receiver can no
    longer need them to check a SET, so they leave the JWKS."""
    signed = exists().where(SsfDelivery.signed_kid == SsfKey.kid, SsfDelivery.acked_at.is_(None))
    return SsfKey, SsfKey.retired_at.isnot(None) & ~signed
