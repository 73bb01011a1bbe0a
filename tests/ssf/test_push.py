"""RFC 8935 push delivery against a real receiver on 127.0.0.1 (idp/ssf/push.py).

The worker's clock is a test clock that stands still until moved, so a backoff is waited
out by moving it, never by sleeping.
"""

import logging

import pytest
import requests

from idp.ssf import push_outcome
from tests.ssf.push_receiver import Receiver
from tests.ssf.push_receiver import claims_of
from tests.ssf.push_support import RECEIVER_AUTHORIZATION
from tests.ssf.push_support import Clock
from tests.ssf.push_support import deliver
from tests.ssf.push_support import deliveries
from tests.ssf.push_support import emit
from tests.ssf.push_support import jwks
from tests.ssf.push_support import push_stream
from tests.ssf.push_support import set_status
from tests.ssf.push_support import stream_state

REVOKED = "https://schemas.openid.net/secevent/caep/event-type/credential-change"


@pytest.fixture
def clock():
    """The worker's clock."""
    return Clock()


@pytest.fixture
def http():
    """The worker's HTTP session."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def receiver():
    """A receiver that expects the stream's Authorization header and answers 202."""
    receiver = Receiver(authorization=RECEIVER_AUTHORIZATION).start()
    yield receiver
    receiver.stop()


def seqs(app, tokens) -> list[int]:
    """The ``stream_seq`` of each SET, each checked against the JWKS first."""
    key_set = jwks(app)
    return [claims_of(token, key_set)["stream_seq"] for token in tokens]


def test_sets_go_out_in_order_signed_and_are_acknowledged(app, clock, http, receiver):
    stream_id = push_stream(app, clock, receiver.url)
    names = emit(app, clock, 5)

    assert deliver(app, clock, http) == 5

    assert receiver.malformed == []
    key_set = jwks(app)
    claims = [claims_of(token, key_set) for token in receiver.accepted()]
    assert [c["stream_seq"] for c in claims] == [1, 2, 3, 4, 5]
    assert [c["sub_id"]["id"] for c in claims] == names
    assert {c["aud"] for c in claims} == {stream_state(app, stream_id).aud}
    assert all(REVOKED in c["events"] for c in claims)
    rows = deliveries(app, stream_id)
    assert [row.jti for row in rows] == [c["jti"] for c in claims]
    assert all(row.acked_at is not None and row.attempts == 1 and row.signed_kid
               for row in rows)
    state = stream_state(app, stream_id)
    assert (state.failures, state.last_error, state.lease_until) == (0, None, None)
    assert state.last_delivery_at == clock()
    # Nothing is sent twice.
    assert deliver(app, clock, http) == 0
    assert len(receiver.received) == 5


def test_a_stream_without_an_authorization_header_is_posted_without_one(app, clock, http):
    receiver = Receiver(authorization=None).start()
    try:
        push_stream(app, clock, receiver.url, authorization=None)
        emit(app, clock, 2)
        assert deliver(app, clock, http) == 2
    finally:
        receiver.stop()
    assert receiver.malformed == []


def test_a_failing_receiver_is_retried_with_a_growing_backoff(make_app, clock, http, receiver):
    app = make_app(IDP_SSF_PUSH_BACKOFF_MAX=2)
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 2)
    receiver.answer((500, None), (503, None), (500, None))
    pauses = []
    for failures, status in enumerate((500, 503, 500), start=1):
        assert deliver(app, clock, http) == 0
        state = stream_state(app, stream_id)
        assert state.failures == failures
        assert state.last_error == f"HTTP {status}"
        assert state.last_error_at == clock()
        assert state.lease_until is None
        pauses.append((state.next_attempt_at - clock()).total_seconds())
        # Not due yet: nothing is posted.
        assert deliver(app, clock, http) == 0
        assert len(receiver.received) == failures
        clock.past(state.next_attempt_at)
    # base·2^(n-1), less up to half at random, at most IDP_SSF_PUSH_BACKOFF_MAX.
    assert 0.5 <= pauses[0] <= 1 <= pauses[1] <= 2
    assert 1 <= pauses[2] <= 2

    assert deliver(app, clock, http) == 2

    assert seqs(app, receiver.accepted()) == [1, 2]
    assert seqs(app, [token for token, _status in receiver.received]) == [1, 1, 1, 1, 2]
    state = stream_state(app, stream_id)
    assert (state.failures, state.next_attempt_at) == (0, None)
    assert state.last_delivery_at == clock()
    # The last error stays for the record; failures at 0 say the stream is healthy again.
    assert state.last_error == "HTTP 500"
    assert [row.attempts for row in deliveries(app, stream_id)] == [4, 1]


def test_a_refused_set_is_recorded_and_the_queue_moves_on(app, clock, http, receiver):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 3)
    receiver.answer((400, {"err": "invalid_request", "description": "sub_id\nnot understood"}))

    assert deliver(app, clock, http) == 2

    assert seqs(app, receiver.accepted()) == [2, 3]
    first, *rest = deliveries(app, stream_id)
    assert first.acked_at is not None
    assert first.error == "invalid_request: sub_id not understood"
    assert all(row.acked_at is not None and row.error is None for row in rest)
    state = stream_state(app, stream_id)
    assert state.last_error == "invalid_request: sub_id not understood"
    assert (state.failures, state.next_attempt_at) == (0, None)


@pytest.mark.parametrize(("answer", "last_error"), [
    ((400, {"err": "invalid_key", "description": "unknown kid"}),
     "HTTP 400 invalid_key: unknown kid"),
    ((400, {"err": "authentication_failed"}), "HTTP 400 authentication_failed"),
    ((400, None), "HTTP 400 without an RFC 8935 error"),
    ((400, ["not", "an", "error"]), "HTTP 400 without an RFC 8935 error"),
    ((200, None), "HTTP 200"),
    ((302, None), "HTTP 302"),
    ((401, None), "HTTP 401"),
])
def test_answers_that_are_not_about_the_set_stop_the_queue(app, clock, http, receiver, answer,
                                                           last_error):
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 2)
    receiver.answer(answer)

    assert deliver(app, clock, http) == 0
    state = stream_state(app, stream_id)
    assert (state.failures, state.last_error) == (1, last_error)
    assert [row.acked_at for row in deliveries(app, stream_id)] == [None, None]

    clock.past(state.next_attempt_at)
    assert deliver(app, clock, http) == 2
    assert seqs(app, receiver.accepted()) == [1, 2]


def test_a_receiver_that_is_down_gets_everything_once_it_is_back(app, clock, http):
    receiver = Receiver(authorization=RECEIVER_AUTHORIZATION)
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 3)
    for failures in (1, 2):
        assert deliver(app, clock, http) == 0
        state = stream_state(app, stream_id)
        assert state.failures == failures
        assert state.last_error == "request failed: Connection refused"
        # More changes while the receiver is down wait in the queue.
        emit(app, clock, 2, first=3 + 2 * (failures - 1))
        clock.past(state.next_attempt_at)
    receiver.start()
    try:
        assert deliver(app, clock, http) == 7
        assert deliver(app, clock, http) == 0
    finally:
        receiver.stop()
    assert seqs(app, [token for token, _status in receiver.received]) == [1, 2, 3, 4, 5, 6, 7]
    assert stream_state(app, stream_id).failures == 0


def test_a_receiver_that_answers_too_late_gets_the_same_set_again(make_app, clock, http,
                                                                 receiver):
    app = make_app(IDP_SSF_PUSH_TIMEOUT=0.2)
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 1)
    receiver.answer((202, None, 0.6))

    assert deliver(app, clock, http) == 0
    state = stream_state(app, stream_id)
    assert (state.failures, state.last_error) == (1, "no answer within 0.2 s")

    clock.past(state.next_attempt_at)
    assert deliver(app, clock, http) == 1
    # At least once: the same delivery, with its jti, for the receiver to drop the repeat.
    late, again = (claims_of(token, jwks(app)) for token, _status in receiver.received)
    assert late["jti"] == again["jti"] == deliveries(app, stream_id)[0].jti


def test_paused_streams_keep_their_events_and_other_streams_are_served(app, clock, http,
                                                                       receiver):
    paused = push_stream(app, clock, receiver.url, name="Paused API")
    other = Receiver(authorization=RECEIVER_AUTHORIZATION).start()
    try:
        served = push_stream(app, clock, other.url, name="Served API")
        set_status(app, clock, paused, "paused")
        emit(app, clock, 2)
        assert deliver(app, clock, http) == 2
        assert receiver.received == []
        set_status(app, clock, paused, "enabled")
        # Each status change is told on the stream itself: paused, the two, enabled.
        assert deliver(app, clock, http) == 4
    finally:
        other.stop()
    assert seqs(app, other.accepted()) == [1, 2]
    assert seqs(app, receiver.accepted()) == [1, 2, 3, 4]
    assert stream_state(app, served).failures == 0


def test_the_logs_name_the_stream_but_never_the_header_or_a_set(app, clock, http, receiver,
                                                                caplog):
    caplog.set_level(logging.DEBUG, logger="idp")
    stream_id = push_stream(app, clock, receiver.url)
    emit(app, clock, 2)
    receiver.answer((500, None), (400, {"err": "invalid_request"}))
    deliver(app, clock, http)
    clock.past(stream_state(app, stream_id).next_attempt_at)
    deliver(app, clock, http)

    text = caplog.text
    assert stream_id in text and "HTTP 500" in text
    assert RECEIVER_AUTHORIZATION.split()[1] not in text
    assert all(token not in text and token.split(".")[1] not in text
               for token, _status in receiver.received)


def test_backoff_doubles_up_to_its_ceiling_less_up_to_half():
    assert [push_outcome.backoff(n, 300, rand=lambda: 1.0) for n in (1, 2, 3, 9, 10)] == [
        1, 2, 4, 256, 300]
    assert push_outcome.backoff(1, 300, rand=lambda: 0.0) == 0.5
    assert push_outcome.backoff(10_000, 300, rand=lambda: 1.0) == 300
