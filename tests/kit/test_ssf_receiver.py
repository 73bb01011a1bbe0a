"""The kit as SSF receiver (docs/ssf.md) against a fake transmitter on 127.0.0.1.

Most tests drive the receiver one round at a time (``thread=False``, :meth:`Receiver.step`)
on a fake clock; one runs the real thread end to end and checks that it stops cleanly.
"""

import hashlib
import json
import logging
import os
import sys
import time

import pytest

from flowestate_kit.judge import Judge
from flowestate_kit.ssf import Receiver
from flowestate_kit.ssf import discovery_urls
from tests.kit.ssf_support import CAEP
from tests.kit.ssf_support import CLIENT_ID
from tests.kit.ssf_support import CLIENT_SECRET
from tests.kit.ssf_support import STREAM_UPDATED
from tests.kit.ssf_support import ScriptedIntrospection
from tests.kit.ssf_support import access_token
from tests.kit.ssf_support import api_key
from tests.kit.ssf_support import complex_subject
from tests.kit.ssf_support import key_claims
from tests.kit.ssf_support import new_key
from tests.kit.ssf_support import opaque
from tests.kit.ssf_support import token_claims
from tests.kit.ssf_support import wait_for

URL = "https://idp.test/oauth/introspect"
EPOCH = 1_800_000_000
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"

#: name -> introspection's answer for the credential cached under that name
CREDENTIALS = {
    "acme key": key_claims("key_a1", "org_acme"),
    "acme key 2": key_claims("key_a2", "org_acme"),
    "beta key": key_claims("key_b1", "org_beta"),
    "ann zapier acme": token_claims("con_1", "org_acme", "usr_ann", "zapier"),
    "ann zapier acme again": token_claims("con_2", "org_acme", "usr_ann", "zapier"),
    "ann make acme": token_claims("con_3", "org_acme", "usr_ann", "make"),
    "ann zapier beta": token_claims("con_4", "org_beta", "usr_ann", "zapier"),
    "bob zapier acme": token_claims("con_5", "org_acme", "usr_bob", "zapier"),
    "bob make beta": token_claims("con_6", "org_beta", "usr_bob", "make"),
}
ALL = set(CREDENTIALS)


class Kit:
    """A judge fed by a receiver, the transmitter they talk to, and the cached credentials."""

    def __init__(self, transmitter, clock, **options):
        """Build and verify the stream, then cache every credential (and one refusal)."""
        self.transmitter = transmitter
        self.clock = clock
        self.idp = ScriptedIntrospection()
        self.receiver = Receiver(transmitter.issuer, CLIENT_ID, CLIENT_SECRET, clock=clock,
                                 thread=False, **options)
        self.judge = Judge(URL, CLIENT_ID, CLIENT_SECRET, session=self.idp, clock=clock,
                           wall_clock=lambda: EPOCH + clock(), stream=self.receiver)
        self.tokens = {}
        for name, claims in CREDENTIALS.items():
            raw = api_key() if claims["token_type"] == "api_key" else access_token()
            self.idp.claims[raw] = dict(claims, exp=EPOCH + 3600)
            self.tokens[name] = raw
        self.refused = api_key()

    def cache_all(self) -> None:
        """Judge every credential once (cached now) and one unknown key (a cached refusal)."""
        for raw in [*self.tokens.values(), self.refused]:
            self.judge.judge("Bearer " + raw)

    def cached(self) -> set[str]:
        """The names whose active verdict is cached."""
        active = self.judge.verdicts.active
        return {name for name, raw in self.tokens.items()
                if hashlib.sha256(raw.encode()).hexdigest() in active}

    def refusal_cached(self) -> bool:
        """Whether the unknown key's refusal is cached."""
        return hashlib.sha256(self.refused.encode()).hexdigest() in self.judge.verdicts.inactive

    def healthy(self) -> bool:
        """What the judge acts on."""
        return self.judge.stream_status()["healthy"]


@pytest.fixture
def make_kit(transmitter, ticks):
    """Build kits (closed after the test)."""
    kits = []

    def build(**options) -> Kit:
        kit = Kit(transmitter, ticks, **options)
        kits.append(kit)
        return kit

    yield build
    for kit in kits:
        kit.receiver.close(timeout=5)


@pytest.fixture
def kit(make_kit):
    """A kit whose stream is verified and whose caches hold every credential (cached while
    healthy, so under the long bound)."""
    kit = make_kit()
    kit.receiver.start()
    kit.receiver.step()
    assert kit.healthy()
    kit.cache_all()
    return kit


def own(transmitter, name: str) -> str:
    """One of the transmitter's own event types."""
    return transmitter.own + name


# -- setting up ----------------------------------------------------------------------------

def test_the_receiver_creates_a_poll_stream_and_is_healthy_only_after_verification(
        make_kit, transmitter):
    kit = make_kit()
    assert not kit.receiver.started
    kit.judge.judge("Bearer " + kit.tokens["acme key"])
    assert kit.receiver.started and not kit.healthy()
    transmitter.answer_verifications = False
    kit.receiver.step()
    stream = transmitter.stream
    assert stream.config["delivery"]["method"] == "urn:ietf:rfc:8936"
    assert set(stream.config["events_requested"]) == {
        SESSION_REVOKED, CREDENTIAL_CHANGE, own(transmitter, "access-paused"),
        own(transmitter, "access-resumed")}
    assert len(stream.states) == 1 and not kit.healthy(), "asked, not yet answered"
    transmitter.answer_verifications = True
    kit.clock.advance(30)
    kit.receiver.step()
    assert len(stream.states) == 2 and kit.healthy(), "a fresh verification came back"
    status = kit.judge.stream_status()
    assert status["active_ttl"] == 300 and status["stream"]["stream_id"] == stream.stream_id
    assert transmitter.polls[0]["returnImmediately"] is False


def test_discovery_urls_follow_ssf_section_7():
    assert discovery_urls("https://id.example") == (
        "https://id.example/.well-known/ssf-configuration", "https://id.example")
    assert discovery_urls("https://id.example/") == (
        "https://id.example/.well-known/ssf-configuration", "https://id.example")
    assert discovery_urls("https://id.example/.well-known/ssf-configuration") == (
        "https://id.example/.well-known/ssf-configuration", "https://id.example")
    assert discovery_urls("https://id.example/tenant") == (
        "https://id.example/.well-known/ssf-configuration/tenant", "https://id.example/tenant")


def test_a_configuration_naming_another_issuer_is_not_trusted(transmitter, ticks):
    # The same server under another name: its metadata names 127.0.0.1, not localhost.
    url = transmitter.issuer.replace("127.0.0.1", "localhost")
    receiver = Receiver(url, CLIENT_ID, CLIENT_SECRET, clock=ticks, thread=False)
    try:
        receiver.start()
        assert receiver.step() > 0
        assert receiver.status()["reason"] == (
            "the transmitter configuration names another issuer")
        assert transmitter.streams == {}
    finally:
        receiver.close()


@pytest.mark.parametrize("url", ["http://idp.flowestate.example",
                                 "http://10.0.0.5/.well-known/ssf-configuration"])
def test_plain_http_off_this_machine_is_refused(url):
    with pytest.raises(ValueError, match="configuration_url must be an https URL"):
        Receiver(url, CLIENT_ID, CLIENT_SECRET)


def test_without_joserfc_the_receiver_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "joserfc", None)
    with pytest.raises(ImportError, match=r"flowestate-kit\[ssf\]"):
        Receiver("https://id.example", CLIENT_ID, CLIENT_SECRET)


# -- the event table -----------------------------------------------------------------------

#: name -> (event type, or the transmitter's own type after "own:"; sub_id; payload; evicted)
EVENTS = {
    "connection ended": (
        SESSION_REVOKED, complex_subject(session="con_1", user="usr_ann", tenant="org_acme",
                                         application="zapier"),
        {"reason": "disconnected"}, {"ann zapier acme"}),
    "API key disabled": ("own:access-paused", opaque("key_a1"), {}, {"acme key"}),
    "API key revoked": (CREDENTIAL_CHANGE, opaque("key_a2"),
                        {"change_type": "delete", "credential_type": "api-key"},
                        {"acme key 2"}),
    "client disabled": ("own:access-paused", complex_subject(application="zapier"), {}, {
        "ann zapier acme", "ann zapier acme again", "ann zapier beta", "bob zapier acme"}),
    "organization suspended": ("own:access-paused", complex_subject(tenant="org_acme"), {}, {
        "acme key", "acme key 2", "ann zapier acme", "ann zapier acme again", "ann make acme",
        "bob zapier acme"}),
    "membership removed": (
        "own:access-paused", complex_subject(user="usr_ann", tenant="org_acme"), {},
        {"ann zapier acme", "ann zapier acme again", "ann make acme"}),
    "organization taken off a client's allowlist": (
        "own:access-paused", complex_subject(application="make", tenant="org_beta"), {},
        {"bob make beta"}),
    "another resource server disabled": ("own:access-paused", opaque("rs_other"), {}, set()),
}


def emit(transmitter, event_type: str, sub_id: dict, payload: dict, **options):
    """Queue an event, resolving the transmitter's own types."""
    if event_type.startswith("own:"):
        event_type = own(transmitter, event_type[4:])
    return transmitter.emit(event_type, sub_id, payload, **options)


@pytest.mark.parametrize("name", list(EVENTS))
def test_each_event_evicts_exactly_what_it_names(kit, transmitter, name):
    event_type, sub_id, payload, evicted = EVENTS[name]
    emit(transmitter, event_type, sub_id, payload)
    kit.receiver.step()
    assert kit.cached() == ALL - evicted
    assert kit.refusal_cached(), "refusals are not touched"
    assert kit.healthy()
    calls = kit.idp.calls
    kit.cache_all()
    assert kit.idp.calls == calls + len(evicted), "only the evicted are asked again"


def test_this_resource_server_disabled_forgets_everything(kit, transmitter):
    transmitter.emit(own(transmitter, "access-paused"), opaque(CLIENT_ID))
    kit.receiver.step()
    assert kit.cached() == set() and not kit.refusal_cached()


def test_this_resource_server_disabled_caches_no_answer_past_active_ttl(kit, transmitter,
                                                                       ticks):
    # The IdP remembers a good resource-server check for a few seconds per worker, so just
    # after disabling this server it may still call a credential active: that answer must
    # not be kept for stream_ttl.
    transmitter.emit(own(transmitter, "access-paused"), opaque(CLIENT_ID))
    kit.receiver.step()
    assert not kit.healthy()
    assert kit.judge.stream_status()["active_ttl"] == 30
    kit.cache_all()
    calls = kit.idp.calls
    ticks.advance(30)
    kit.cache_all()
    assert kit.idp.calls == calls + len(CREDENTIALS) + 1, "every verdict asked again"


@pytest.mark.parametrize("sub_id", [opaque("key_a1"), complex_subject(tenant="org_acme"),
                                    complex_subject(application="zapier")])
def test_a_resumed_credential_forgets_refusals_only(kit, transmitter, sub_id):
    transmitter.emit(own(transmitter, "access-resumed"), sub_id)
    kit.receiver.step()
    assert kit.cached() == ALL and not kit.refusal_cached()


@pytest.mark.parametrize("event_type,sub_id", [
    (SESSION_REVOKED, complex_subject(session="con_never", user="usr_ann", tenant="org_acme",
                                      application="zapier")),
    ("own:access-paused", opaque("key_never")),
    (CREDENTIAL_CHANGE, opaque("key_never")),
    ("own:access-paused", complex_subject(tenant="org_never")),
    ("own:access-paused", complex_subject(user="usr_never", tenant="org_acme")),
    ("own:access-paused", complex_subject(application="never")),
    ("own:access-paused", complex_subject(application="make", tenant="org_never")),
])
def test_events_for_credentials_never_cached_leave_the_cache_untouched(
        kit, transmitter, event_type, sub_id):
    before = dict(kit.judge.verdicts.active), dict(kit.judge.verdicts.inactive)
    emit(transmitter, event_type, sub_id, {})
    kit.receiver.step()
    assert (dict(kit.judge.verdicts.active), dict(kit.judge.verdicts.inactive)) == before
    assert kit.healthy()
    assert kit.receiver.status()["applied"] == 2


def test_an_unmappable_subject_is_refused_and_the_stream_turns_unhealthy(kit, transmitter):
    delivery = transmitter.emit(own(transmitter, "access-paused"), opaque("device_7"))
    kit.receiver.step()
    assert not kit.healthy()
    kit.receiver.step()
    assert transmitter.polls[-1]["setErrs"][delivery.jti]["err"] == "invalid_request"
    assert kit.healthy(), "its stream_seq was verified: no gap, a fresh verification restores"


def test_processed_sets_are_acknowledged_in_the_next_poll(kit, transmitter):
    delivery = transmitter.emit(CREDENTIAL_CHANGE, opaque("key_a1"))
    kit.receiver.step()
    assert delivery.jti not in transmitter.polls[-1]["ack"]
    kit.receiver.step()
    assert delivery.jti in transmitter.polls[-1]["ack"]
    assert transmitter.stream.queue == [] and delivery.jti in transmitter.stream.acked


def test_a_set_delivered_again_after_a_lost_ack_is_no_gap(kit, transmitter):
    transmitter.emit(CREDENTIAL_CHANGE, opaque("key_a1"))
    kit.receiver.step()
    transmitter.lose_acks = True
    kit.receiver.step()
    kit.receiver.step()
    assert kit.healthy() and kit.receiver.status()["applied"] == 2
    assert transmitter.stream.queue == []


# -- bounds --------------------------------------------------------------------------------

def test_a_healthy_stream_keeps_active_verdicts_up_to_stream_ttl_never_past_exp(kit):
    short, key = access_token(), api_key()
    kit.idp.claims[short] = dict(CREDENTIALS["ann zapier acme"], exp=EPOCH + kit.clock() + 100)
    kit.idp.claims[key] = key_claims("key_new", "org_acme")
    kit.judge.judge("Bearer " + short)
    kit.judge.judge("Bearer " + key)
    calls = kit.idp.calls
    for _ in range(2):
        kit.clock.advance(49.5)
        kit.receiver.step()  # renews the lease, as polls do
    kit.judge.judge("Bearer " + short)
    assert kit.idp.calls == calls, "99 s: within exp"
    kit.clock.advance(1)
    kit.judge.judge("Bearer " + short)
    assert kit.idp.calls == calls + 1, "never past exp"
    for _ in range(4):
        kit.clock.advance(49.5)
        kit.receiver.step()
    kit.judge.judge("Bearer " + key)
    assert kit.idp.calls == calls + 1, "cached 298 s ago: within stream_ttl"
    kit.clock.advance(2)
    kit.judge.judge("Bearer " + key)
    assert kit.idp.calls == calls + 2, "300 s: asked again"


# -- turning unhealthy, and back -----------------------------------------------------------

def test_a_failing_poll_falls_back_at_once_logs_once_and_backs_off(kit, transmitter, caplog):
    kit.clock.advance(40)
    kit.receiver.step()
    transmitter.poll_status = 503
    with caplog.at_level(logging.WARNING):
        delays = [kit.receiver.step() for _ in range(10)]
    assert not kit.healthy()
    status = kit.judge.stream_status()
    assert "answered 503" in status["reason"] and status["active_ttl"] == 30
    assert status["stream"]["healthy"] is False
    warnings = [r.getMessage() for r in caplog.records if r.name == "flowestate_kit.judge"]
    assert len(warnings) == 1 and "answered 503" in warnings[0]
    assert all(0 < delay <= 60 for delay in delays)
    assert delays[0] <= 1 and delays[-1] >= 30, "exponential, up to backoff_max"
    assert kit.cached() == set(), "cached 40 s ago under the long bound: no longer trusted"
    transmitter.poll_status = None
    assert kit.receiver.step() == 0
    assert kit.healthy(), "polls succeed and a fresh verification came back"


@pytest.mark.parametrize("spoil,err", [
    ({"key": new_key("live")}, "invalid_key"),             # right kid, wrong key
    ({"key": new_key("stranger")}, "invalid_key"),         # a kid the JWKS does not have
    ({"header": {"alg": "HS256"}}, "invalid_key"),
    ({"header": {"typ": "JWT"}}, "invalid_request"),
    ({"aud": "rs_someone_else"}, "invalid_audience"),
    ({"iss": "https://attacker.example"}, "invalid_issuer"),
    ({"stream_seq": "3"}, "invalid_request"),
], ids=["bad signature", "unknown kid", "alg", "typ", "aud", "iss", "stream_seq"])
def test_a_set_that_fails_verification_is_refused_and_nothing_is_applied(
        kit, transmitter, spoil, err, caplog):
    kit.clock.advance(40)
    kit.receiver.step()
    with caplog.at_level(logging.WARNING):
        delivery = transmitter.emit(CREDENTIAL_CHANGE, opaque("key_a1"), **spoil)
        kit.receiver.step()
    assert not kit.healthy()
    assert kit.judge.stream_status()["reason"] == f"SET refused ({err})"
    assert "acme key" not in kit.cached(), "fallen back: cached 40 s ago, no longer trusted"
    assert kit.receiver.status()["applied"] == 1, "the refused SET was not applied"
    assert not any(transmitter.sign(delivery) in r.getMessage() for r in caplog.records)
    kit.receiver.step()
    assert transmitter.polls[-1]["setErrs"] == {delivery.jti: {
        "err": err, "description": transmitter.polls[-1]["setErrs"][delivery.jti][
            "description"]}}
    assert kit.healthy(), "recovered after a fresh verification round trip"


def test_a_gap_in_stream_seq_turns_unhealthy_until_a_fresh_verification(kit, transmitter):
    kit.clock.advance(60)
    transmitter.emit(CREDENTIAL_CHANGE, opaque("key_a1"), skip=1)
    # This round's heartbeat verification comes after the gap, but was asked before the gap
    # was seen: it does not count.
    kit.receiver.step()
    status = kit.judge.stream_status()
    assert not status["healthy"] and status["reason"] == "gap in stream_seq: expected 2, got 3"
    assert kit.receiver.status()["applied"] == 3, "the event and the verification applied"
    kit.receiver.step()
    assert kit.healthy()


def test_an_unanswered_heartbeat_turns_unhealthy(kit, transmitter):
    states = transmitter.stream.states
    transmitter.answer_verifications = False
    kit.clock.advance(59)
    kit.receiver.step()
    assert len(states) == 1
    kit.clock.advance(1)
    kit.receiver.step()
    assert len(states) == 2 and kit.healthy(), "asked; not yet late"
    kit.clock.advance(29)
    kit.receiver.step()
    assert kit.healthy()
    kit.clock.advance(1)
    kit.receiver.step()
    assert kit.judge.stream_status()["reason"] == "verification not answered in time"
    assert len(states) == 3, "a fresh verification is asked at once"


def test_a_paused_stream_is_unhealthy_until_enabled_and_verified(kit, transmitter):
    transmitter.emit(STREAM_UPDATED, opaque(transmitter.stream.stream_id),
                     {"status": "paused", "reason": "maintenance"})
    kit.receiver.step()
    assert kit.judge.stream_status()["reason"] == "stream paused by the transmitter"
    kit.receiver.step()
    assert not kit.healthy(), "a verification while paused does not restore health"
    transmitter.emit(STREAM_UPDATED, opaque(transmitter.stream.stream_id),
                     {"status": "enabled"})
    kit.receiver.step()
    kit.receiver.step()
    assert kit.healthy()


def test_a_receiver_that_stops_renewing_is_dropped_by_the_judge(kit):
    kit.clock.advance(49)
    kit.judge.judge("Bearer " + kit.tokens["acme key"])
    assert kit.healthy()
    kit.clock.advance(1)
    assert kit.judge.stream_status()["reason"] == "no word from the stream within its lease"
    assert kit.cached() == set()


def test_a_stream_gone_from_the_transmitter_is_made_again(kit, transmitter):
    first = transmitter.stream.stream_id
    transmitter.streams.clear()
    kit.receiver.step()
    assert not kit.healthy()
    kit.receiver.step()
    assert transmitter.stream.stream_id != first and kit.healthy()


def test_a_new_signing_key_is_fetched_and_unknown_kids_are_bounded(kit, transmitter):
    fetched = lambda: transmitter.calls.count(("GET", "/ssf/jwks"))  # noqa: E731
    assert fetched() == 1
    transmitter.rotate()
    transmitter.emit(CREDENTIAL_CHANGE, opaque("key_a1"))
    kit.clock.advance(30)
    kit.receiver.step()
    assert fetched() == 2 and kit.healthy() and "acme key" not in kit.cached()
    strangers = {transmitter.emit(CREDENTIAL_CHANGE, opaque(key_id), key=new_key(kid)).jti
                 for key_id, kid in (("key_a2", "stranger-1"), ("key_b1", "stranger-2"))}
    kit.clock.advance(30)
    kit.receiver.step()
    kit.receiver.step()
    assert fetched() == 3, "the second made-up kid waits for the refetch interval"
    assert not kit.healthy() and transmitter.stream.queue != []
    kit.clock.advance(30)
    kit.receiver.step()
    assert fetched() == 4
    kit.receiver.step()
    assert fetched() == 4 and kit.healthy()
    assert transmitter.stream.errs == {jti: {"err": "invalid_key", "description": "unknown kid"}
                                       for jti in strangers}
    assert not strangers & {d.jti for d in transmitter.stream.queue}
    assert not strangers & set(transmitter.stream.acked), "refused, never acknowledged"


# -- configured streams, closing, the thread -----------------------------------------------

def test_close_deletes_the_stream_it_created(make_kit, transmitter):
    kit = make_kit()
    kit.receiver.start()
    kit.receiver.step()
    assert len(transmitter.streams) == 1
    assert kit.receiver.close() is True
    assert transmitter.streams == {}
    assert not kit.healthy() and kit.judge.stream_status()["reason"] == "receiver closed"
    kit.judge.judge("Bearer " + kit.tokens["acme key"])
    assert transmitter.streams == {}, "a closed receiver is not started again"


def test_a_configured_stream_is_used_and_never_deleted(make_kit, transmitter):
    first = make_kit()
    first.receiver.start()
    first.receiver.step()
    stream_id = transmitter.stream.stream_id
    second = make_kit(stream_id=stream_id)
    second.receiver.start()
    second.receiver.step()
    assert list(transmitter.streams) == [stream_id] and second.healthy()
    second.receiver.close()
    assert list(transmitter.streams) == [stream_id]


def test_the_thread_receives_events_and_stops_cleanly(transmitter, caplog):
    transmitter.long_poll = 10  # as the IdP's: closing must not wait it out
    idp = ScriptedIntrospection()
    key = api_key()
    idp.claims[key] = key_claims("key_a1", "org_acme")
    receiver = Receiver(transmitter.issuer, CLIENT_ID, CLIENT_SECRET)
    judge = Judge(URL, CLIENT_ID, CLIENT_SECRET, session=idp, stream=receiver)
    try:
        judge.judge("Bearer " + key)
        assert wait_for(lambda: judge.stream_status()["healthy"])
        judge.judge("Bearer " + key)
        assert idp.calls == 1
        transmitter.emit(transmitter.own + "access-paused", opaque("key_a1"))
        assert wait_for(lambda: len(judge.verdicts.active) == 0)
        assert wait_for(lambda: len(transmitter.polls) >= 3 and not transmitter.stream.queue)
    finally:
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            assert receiver.close() is True
    assert time.monotonic() - started < 2, "the deleted stream's poll ended at once"
    assert not receiver._thread.is_alive()
    assert transmitter.streams == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "closing is no fault"


def test_a_forked_worker_makes_a_stream_of_its_own(make_kit, transmitter):
    parent = make_kit()
    parent.receiver.start()
    parent.receiver.step()
    first = transmitter.stream.stream_id
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave without pytest's teardown
        code = 1
        try:
            seen = [parent.receiver.started, parent.receiver.stream_id]
            parent.judge.judge("Bearer " + parent.tokens["acme key"])
            parent.receiver.step()
            seen += [parent.receiver.stream_id, parent.healthy()]
            os.write(write, json.dumps(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read() or "null")
    assert os.waitpid(pid, 0)[1] == 0
    started, inherited, own_stream, healthy = seen
    assert not started and inherited is None, "the parent's stream stays the parent's"
    assert own_stream not in (None, first) and healthy
    assert set(transmitter.streams) == {first, own_stream}
    assert parent.receiver.stream_id == first
