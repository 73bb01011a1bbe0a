"""Sequencing and fan-out (docs/ssf.md, "The path of one event", item 2), and a stream's queue:
pending, acknowledge, record_error, lag."""

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.core import ssf_events
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models import ResourceServer
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfState
from idp.store.models import SsfStream
from idp.store.models.ssf import POLL
from tests.oauth_helpers import ISSUER

PAUSED = ssf_events.access_paused(ISSUER)
ALL = ssf_events.events_supported(ISSUER)
on_postgres = pytest.mark.skipif(
    not os.environ.get("IDP_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="needs two PostgreSQL transactions at once (IDP_TEST_DATABASE_URL)")

#: Each kind with the ids its subject takes, for making events quickly.
IDS = {
    "api_key_revoked": {"api_key": "key_r"},
    "api_key_disabled": {"api_key": "key_d"},
    "org_suspended": {"org": "org_s"},
    "disconnected": {"connection": "con_1", "user": "usr_1", "org": "org_1", "client": "cli_1"},
}


def make_stream(app, *, types=ALL, status="enabled", created_at=None, method=POLL) -> int:
    """A stream (poll unless ``method`` says) of the demo resource server asking for
    ``types``; its row id."""
    with app.app_context():
        server = db.session.scalar(select(ResourceServer))
        now = created_at or utcnow()
        stream = SsfStream(
            public_id=f"str_{os.urandom(10).hex()}", resource_server_id=server.id,
            aud=server.public_id, delivery_method=method, events_requested=list(types),
            events_delivered=list(types), status=status, created_at=now, updated_at=now)
        db.session.add(stream)
        db.session.commit()
        return stream.id


def emit(app, kind, stream_id=None, **extra) -> int:
    """Commit one event of ``kind``; its row id."""
    with app.app_context():
        stream = db.session.get(SsfStream, stream_id) if stream_id else None
        event = outbox.emit(db.session, kind, utcnow(), issuer=ISSUER, stream=stream,
                            **IDS.get(kind, {}), **extra)
        db.session.commit()
        return event.id


def sequence(app) -> int:
    """Run the sequencer once and commit."""
    with app.app_context():
        done = outbox.sequence(db.session, utcnow())
        db.session.commit()
        return done


def queue(app, stream_id) -> list[tuple[int, int]]:
    """(stream_seq, event id) of every delivery of the stream, in stream_seq order."""
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(SsfDelivery.stream_seq, SsfDelivery.event_id)
            .where(SsfDelivery.stream_id == stream_id).order_by(SsfDelivery.stream_seq))]


def seqs(app, *event_ids) -> list[int | None]:
    """The global seq of each event."""
    with app.app_context():
        return [db.session.get(SsfEvent, event_id).seq for event_id in event_ids]


def test_events_are_numbered_in_id_order_and_each_stream_counts_from_one(app, demo):
    everything = make_stream(app)
    paused_only = make_stream(app, types=[PAUSED])
    first = [emit(app, kind) for kind in
             ("api_key_revoked", "api_key_disabled", "org_suspended", "disconnected")]
    assert sequence(app) == 4
    assert seqs(app, *first) == [1, 2, 3, 4]
    assert queue(app, everything) == [(1, first[0]), (2, first[1]), (3, first[2]),
                                      (4, first[3])]
    assert queue(app, paused_only) == [(1, first[1]), (2, first[2])]
    later = [emit(app, "org_suspended"), emit(app, "api_key_revoked")]
    assert sequence(app) == 2
    assert sequence(app) == 0
    assert seqs(app, *later) == [5, 6]
    assert queue(app, everything)[4:] == [(5, later[0]), (6, later[1])]
    assert queue(app, paused_only)[2:] == [(3, later[0])]
    with app.app_context():
        jtis = db.session.scalars(select(SsfDelivery.jti)).all()
        assert len(set(jtis)) == len(jtis) == 9 and all(len(jti) == 32 for jti in jtis)


def test_paused_streams_hold_events_and_disabled_streams_drop_them(app, demo):
    paused = make_stream(app, status="paused")
    disabled = make_stream(app, status="disabled")
    held = emit(app, "api_key_revoked")
    sequence(app)
    assert queue(app, paused) == [(1, held)]
    assert queue(app, disabled) == []
    with app.app_context():
        db.session.get(SsfStream, disabled).status = "enabled"
        db.session.commit()
    after = emit(app, "api_key_disabled")
    sequence(app)
    # Re-enabled: it gets what came after, numbered from 1, never the dropped event.
    assert queue(app, disabled) == [(1, after)]


def test_stream_only_events_go_to_their_stream_alone(app, demo):
    asked_nothing = make_stream(app, types=[])
    other = make_stream(app)
    disabled = make_stream(app, status="disabled")
    verification = emit(app, "verification", asked_nothing, state="abc")
    emit(app, "stream_updated", disabled, status="disabled")
    sequence(app)
    assert queue(app, asked_nothing) == [(1, verification)]
    assert queue(app, other) == []
    assert queue(app, disabled) == []


def test_a_stream_made_after_an_event_never_receives_it(app, demo, clock):
    before = emit(app, "api_key_revoked")
    clock.shift(1)
    late = make_stream(app)
    sequence(app)
    assert seqs(app, before) == [1]
    assert queue(app, late) == []
    after = emit(app, "api_key_revoked")
    sequence(app)
    assert queue(app, late) == [(1, after)]


def test_an_event_that_commits_late_gets_a_later_number(app, demo):
    stream = make_stream(app)
    first = emit(app, "api_key_revoked")
    assert sequence(app) == 1
    # A transaction that took a lower id but committed after the sequencer ran.
    with app.app_context():
        late = outbox.emit(db.session, "api_key_disabled", utcnow(), issuer=ISSUER,
                           api_key="key_late")
        late.id = first - 1
        db.session.commit()
    assert sequence(app) == 1
    assert seqs(app, first - 1, first) == [2, 1]
    assert queue(app, stream) == [(1, first), (2, first - 1)]


def test_the_state_row_is_made_again_when_missing(app, demo):
    with app.app_context():
        db.session.execute(delete(SsfState))
        db.session.commit()
    emit(app, "api_key_revoked")
    assert sequence(app) == 1
    with app.app_context():
        assert db.session.get(SsfState, outbox.STATE_ID).last_seq == 1


def test_a_batch_limit_leaves_the_rest_for_the_next_call(app, demo):
    stream = make_stream(app)
    made = [emit(app, "api_key_revoked") for _ in range(3)]
    with app.app_context():
        assert outbox.sequence(db.session, utcnow(), limit=2) == 2
        db.session.commit()
    assert sequence(app) == 1
    assert queue(app, stream) == list(zip((1, 2, 3), made, strict=True))


@on_postgres
def test_an_event_committing_while_another_is_sequenced_gets_a_later_number(app, demo):
    stream = make_stream(app)
    with app.app_context(), Session(db.engine) as slow:
        early = outbox.emit(slow, "api_key_disabled", utcnow(), issuer=ISSUER, api_key="key_s")
        slow.flush()
        early_id = early.id
        quick = emit(app, "api_key_revoked")
        assert early_id < quick
        assert sequence(app) == 1
        slow.commit()
    assert sequence(app) == 1
    assert seqs(app, quick, early_id) == [1, 2]
    assert queue(app, stream) == [(1, quick), (2, early_id)]


@on_postgres
def test_a_second_sequencer_skips_while_the_first_holds_the_lock(app, demo):
    emit(app, "api_key_revoked")
    with app.app_context(), Session(db.engine) as first:
        assert outbox.sequence(first, utcnow()) == 1
        started = time.monotonic()
        assert sequence(app) == 0
        assert time.monotonic() - started < 1
        first.commit()
    with app.app_context():
        assert db.session.scalar(select(SsfState.last_seq)) == 1


def test_the_queue_moves_by_acknowledgement_and_by_refusal(app, demo, clock):
    stream, other = make_stream(app), make_stream(app)
    made = [emit(app, "api_key_revoked") for _ in range(3)]
    clock.shift(5)
    sequence(app)
    with app.app_context():
        now = utcnow()
        waiting = outbox.pending(db.session, stream, 10)
        assert [(d.stream_seq, e.id) for d, e in waiting] == list(zip((1, 2, 3), made,
                                                                      strict=True))
        assert [d.stream_seq for d, _ in outbox.pending(db.session, stream, 2)] == [1, 2]
        count, oldest = outbox.lag(db.session, stream)
        assert count == 3 and oldest == db.session.get(SsfEvent, made[0]).created_at
        jtis = [d.jti for d, _ in waiting]
        others = [d.jti for d, _ in outbox.pending(db.session, other, 10)]
        # Another stream's jti, an unknown one and a non-string move nothing.
        assert outbox.acknowledge(db.session, stream, [others[0], "nope", 7], now) == 0
        assert outbox.acknowledge(db.session, stream, [jtis[0]], now) == 1
        assert outbox.acknowledge(db.session, stream, [jtis[0]], now) == 0
        assert outbox.record_error(db.session, stream, jtis[1], "bad SET " * 500, now) is True
        assert outbox.record_error(db.session, stream, jtis[1], "again", now) is False
        db.session.commit()
        assert [d.stream_seq for d, _ in outbox.pending(db.session, stream, 10)] == [3]
        assert outbox.lag(db.session, stream)[0] == 1
        refused = db.session.scalar(select(SsfDelivery).where(SsfDelivery.jti == jtis[1]))
        assert refused.acked_at == now and len(refused.error) == outbox.MAX_ERROR_LENGTH
        assert outbox.lag(db.session, other)[0] == 3
        outbox.acknowledge(db.session, stream, [jtis[2]], now)
        assert outbox.lag(db.session, stream) == (0, None)
        assert outbox.acknowledge(db.session, stream, [], now) == 0


def test_events_made_before_a_sequencer_ran_wait_unnumbered(app, demo):
    make_stream(app, created_at=utcnow() - timedelta(days=1))
    event = emit(app, "org_suspended")
    assert seqs(app, event) == [None]
    with app.app_context():
        assert db.session.scalar(select(SsfDelivery.id)) is None
