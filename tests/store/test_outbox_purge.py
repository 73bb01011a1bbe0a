"""What ``flask purge`` removes of the outbox, the streams and the signing keys (docs/ssf.md,
item 4 and "Configuration")."""

import re

from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfKey
from idp.store.models import SsfStream
from idp.store.models.ssf import PUSH
from tests.store.test_outbox_sequence import emit
from tests.store.test_outbox_sequence import make_stream
from tests.store.test_outbox_sequence import sequence

DAY = 24 * 3600
RETENTION = 7 * DAY


def purge(app, *args) -> dict:
    """Run ``flask purge``; the SSF counts of its line."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["purge", *args])
    assert result.exit_code == 0, result.output
    return {name: int(count) for name, count in re.findall(r"(ssf_\w+)=(\d+)", result.output)}


def ids(app, model) -> list[int]:
    """Row ids of a model, in order."""
    with app.app_context():
        return list(db.session.scalars(select(model.id).order_by(model.id)))


def acknowledge_all(app, stream_id) -> None:
    """The receiver acknowledges everything it was sent."""
    with app.app_context():
        waiting = outbox.pending(db.session, stream_id, 1000)
        outbox.acknowledge(db.session, stream_id, [d.jti for d, _ in waiting], utcnow())
        db.session.commit()


def test_acknowledged_deliveries_and_events_go_after_the_retention(app, demo, clock):
    # Push streams: a poll stream this idle would itself be purged (the next test).
    acks, lags = make_stream(app, method=PUSH), make_stream(app, method=PUSH)
    event = emit(app, "api_key_revoked")
    sequence(app)
    acknowledge_all(app, acks)
    clock.shift(RETENTION - 60)
    assert purge(app)["ssf_deliveries"] == 0
    clock.shift(120)
    # The acknowledged delivery goes; the event stays while the other stream still waits.
    assert purge(app, "--dry-run") == {"ssf_streams": 0, "ssf_deliveries": 1, "ssf_events": 0,
                                       "ssf_keys": 0}
    assert purge(app)["ssf_deliveries"] == 1
    assert ids(app, SsfEvent) == [event]
    acknowledge_all(app, lags)
    clock.shift(RETENTION + 1)
    counts = purge(app)
    assert (counts["ssf_deliveries"], counts["ssf_events"]) == (1, 1)
    assert ids(app, SsfEvent) == ids(app, SsfDelivery) == []


def test_unsequenced_events_are_sequenced_then_go_when_old(app, demo, clock):
    # No stream, no poll, no push worker: only the purge ever numbers these.
    emit(app, "api_key_revoked")
    clock.shift(RETENTION + 1)
    fresh = emit(app, "api_key_disabled")
    assert purge(app)["ssf_events"] == 1
    assert ids(app, SsfEvent) == [fresh]
    with app.app_context():
        assert db.session.get(SsfEvent, fresh).seq is not None


def test_idle_poll_streams_go_and_push_streams_stay(app, demo, clock):
    idle = make_stream(app)
    own_timeout = make_stream(app)
    polled = make_stream(app)
    pushed = make_stream(app)
    with app.app_context():
        db.session.get(SsfStream, own_timeout).inactivity_timeout = 600
        db.session.get(SsfStream, pushed).delivery_method = PUSH
        db.session.commit()
    emit(app, "api_key_revoked")
    sequence(app)
    clock.shift(601)
    assert purge(app)["ssf_streams"] == 1
    assert own_timeout not in ids(app, SsfStream)
    clock.shift(DAY - 601 - 60)
    with app.app_context():
        db.session.get(SsfStream, polled).last_polled_at = utcnow()
        db.session.commit()
    clock.shift(120)
    assert purge(app)["ssf_streams"] == 1
    assert ids(app, SsfStream) == [polled, pushed]
    # The deliveries of a removed stream went with it.
    with app.app_context():
        assert set(db.session.scalars(select(SsfDelivery.stream_id))) == {polled, pushed}
    assert idle not in ids(app, SsfStream)


def test_a_retired_key_stays_while_a_set_it_signed_is_unacknowledged(app, demo):
    stream = make_stream(app)
    now = utcnow()
    with app.app_context():
        for kid, retired in (("old", now), ("current", None), ("unused-old", now)):
            db.session.add(SsfKey(kid=kid, created_at=now, sealed_private=b"sealed",
                                  public_jwk={"kid": kid}, retired_at=retired))
        db.session.commit()
    emit(app, "api_key_revoked")
    sequence(app)
    with app.app_context():
        [(delivery, _)] = outbox.pending(db.session, stream, 10)
        delivery.signed_kid, delivery.delivered_at = "old", now
        db.session.commit()
    assert purge(app)["ssf_keys"] == 1
    with app.app_context():
        assert sorted(db.session.scalars(select(SsfKey.kid))) == ["current", "old"]
    acknowledge_all(app, stream)
    assert purge(app)["ssf_keys"] == 1
    with app.app_context():
        assert list(db.session.scalars(select(SsfKey.kid))) == ["current"]


def test_the_rules_take_their_settings(make_app, demo, clock):
    app = make_app(IDP_SSF_RETENTION_SECONDS=60, IDP_SSF_INACTIVITY_SECONDS=300)
    stream = make_stream(app)
    emit(app, "api_key_revoked")
    sequence(app)
    acknowledge_all(app, stream)
    clock.shift(301)
    counts = purge(app)
    # The stream's deliveries went with it, and then nothing waited for the event.
    assert counts == {"ssf_streams": 1, "ssf_deliveries": 0, "ssf_events": 1, "ssf_keys": 0}
