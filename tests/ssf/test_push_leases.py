"""A push stream is held by one worker at a time through its lease (idp/store/ssf_push.py)."""

from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import update

from idp.store.models.ssf import SsfStream
from tests.ssf.push_receiver import Receiver
from tests.ssf.push_support import RECEIVER_AUTHORIZATION
from tests.ssf.push_support import Clock
from tests.ssf.push_support import deliver
from tests.ssf.push_support import deliveries
from tests.ssf.push_support import emit
from tests.ssf.push_support import push_stream
from tests.ssf.push_support import stream_state


@pytest.fixture
def clock():
    """The worker's clock."""
    return Clock()


@pytest.fixture
def receiver():
    """A receiver that answers 202."""
    receiver = Receiver(authorization=RECEIVER_AUTHORIZATION).start()
    yield receiver
    receiver.stop()


class Meddling:
    """The worker's HTTP session, letting a test change the stream before a given request,
    as another worker or the receiver would meanwhile."""

    def __init__(self, http, database_url: str, stream_id: str, before: int, values: dict):
        """Set ``values`` on the stream just before request number ``before`` (from 1)."""
        self.http, self.database_url = http, database_url
        self.stream_id, self.before, self.values = stream_id, before, values
        self.requests = 0

    def post(self, *args, **kwargs):
        """Meddle when it is time, then post for real."""
        self.requests += 1
        if self.requests == self.before:
            engine = create_engine(self.database_url)
            with engine.begin() as conn:
                conn.execute(update(SsfStream).where(SsfStream.public_id == self.stream_id)
                             .values(**self.values))
            engine.dispose()
        return self.http.post(*args, **kwargs)


@pytest.fixture
def http():
    """A plain HTTP session."""
    with requests.Session() as session:
        yield session


def test_a_stream_another_worker_holds_waits_for_its_lease_to_run_out(app, clock, http,
                                                                      receiver, database_url):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 2)
    held_until = clock() + timedelta(seconds=30)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(SsfStream).where(SsfStream.public_id == stream_id)
                     .values(lease_until=held_until))
    engine.dispose()

    assert deliver(app, clock, http) == 0
    assert receiver.received == []
    assert stream_state(app, stream_id).lease_until == held_until

    # A worker that died holding it: the lease runs out and another takes the stream over.
    clock.past(held_until)
    assert deliver(app, clock, http) == 2
    assert stream_state(app, stream_id).lease_until is None


def test_a_worker_that_lost_its_lease_stops_and_leaves_the_new_holder_alone(
        app, clock, http, receiver, database_url):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 3)
    taken_over = clock() + timedelta(minutes=5)
    meddling = Meddling(http, database_url, stream_id, 1, {"lease_until": taken_over})

    # The first SET was accepted (and is acknowledged); the rest are the new holder's.
    assert deliver(app, clock, meddling) == 1
    assert len(receiver.received) == 1
    assert [row.acked_at is not None for row in deliveries(app, stream_id)] == [
        True, False, False]
    assert stream_state(app, stream_id).lease_until == taken_over


def test_a_stream_paused_meanwhile_stops_before_its_next_set(app, clock, http, receiver,
                                                             database_url):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 3)
    meddling = Meddling(http, database_url, stream_id, 1, {"status": "paused"})

    assert deliver(app, clock, meddling) == 1
    state = stream_state(app, stream_id)
    assert (state.lease_until, state.failures) == (None, 0)
    assert [row.acked_at is not None for row in deliveries(app, stream_id)] == [
        True, False, False]


def test_a_header_that_no_longer_opens_is_a_failure_shown_on_the_stream(
        app, make_app, clock, http, receiver):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 1)
    # SECRET_KEY replaced without keeping the old one in SECRET_KEY_FALLBACKS.
    app = make_app(SECRET_KEY="another-secret-key-0123456789-abcdefghijkl")

    assert deliver(app, clock, http) == 0
    state = stream_state(app, stream_id)
    assert state.failures == 1
    assert "Authorization header does not open" in state.last_error
    assert receiver.received == []
