"""The verdict cache's index of active verdicts, and the judge's bounds with and without a
healthy stream: evictions touch exactly their matches, the index follows LRU eviction and
expiry, and a stream turning unhealthy stops every long-cached verdict at once."""

import logging

import pytest

from flowestate_kit.cache import RECENT_EVICTIONS
from flowestate_kit.cache import Match
from flowestate_kit.cache import VerdictCache
from flowestate_kit.cache import index_keys
from flowestate_kit.judge import Bearer
from flowestate_kit.judge import Judge
from tests.kit.ssf_support import ScriptedIntrospection
from tests.kit.ssf_support import access_token
from tests.kit.ssf_support import api_key
from tests.kit.ssf_support import key_claims
from tests.kit.ssf_support import token_claims
from tests.kit_support import FakeClock

URL = "https://idp.test/oauth/introspect"
#: The wall clock the tests' ``exp`` values are counted on, moving with the FakeClock.
EPOCH = 1_800_000_000


def bearer(claims: dict) -> Bearer:
    """The Bearer introspection's answer makes."""
    return Bearer.from_claims(claims)


#: name -> the verdict cached under that name
VERDICTS = {
    "acme key": bearer(key_claims("key_a1", "org_acme")),
    "acme key 2": bearer(key_claims("key_a2", "org_acme")),
    "beta key": bearer(key_claims("key_b1", "org_beta")),
    "ann zapier acme": bearer(token_claims("con_1", "org_acme", "usr_ann", "zapier")),
    "ann zapier acme again": bearer(token_claims("con_2", "org_acme", "usr_ann", "zapier")),
    "ann make acme": bearer(token_claims("con_3", "org_acme", "usr_ann", "make")),
    "ann zapier beta": bearer(token_claims("con_4", "org_beta", "usr_ann", "zapier")),
    "bob zapier acme": bearer(token_claims("con_5", "org_acme", "usr_bob", "zapier")),
    "bob make beta": bearer(token_claims("con_6", "org_beta", "usr_bob", "make")),
}

EVICTIONS = {
    "a connection": (Match(connection_id="con_1"), {"ann zapier acme"}),
    "an API key": (Match(key_id="key_a1"), {"acme key"}),
    "an organization": (Match(org_id="org_acme"), {
        "acme key", "acme key 2", "ann zapier acme", "ann zapier acme again", "ann make acme",
        "bob zapier acme"}),
    "a client": (Match(client_id="zapier"), {
        "ann zapier acme", "ann zapier acme again", "ann zapier beta", "bob zapier acme"}),
    "a person in an organization": (Match(org_id="org_acme", user_id="usr_ann"), {
        "ann zapier acme", "ann zapier acme again", "ann make acme"}),
    "a client in an organization": (Match(org_id="org_beta", client_id="make"),
                                    {"bob make beta"}),
    "a person everywhere": (Match(user_id="usr_bob"), {"bob zapier acme", "bob make beta"}),
    "a connection, with its other ids": (
        Match(connection_id="con_4", org_id="org_beta", user_id="usr_ann",
              client_id="zapier"), {"ann zapier beta"}),
    "a connection the other ids do not fit": (
        Match(connection_id="con_4", org_id="org_acme"), set()),
}


def filled(clock=None) -> VerdictCache:
    """A cache holding every verdict of VERDICTS under its name, and one refusal."""
    cache = VerdictCache(100, 100, clock or FakeClock())
    for name, verdict in VERDICTS.items():
        cache.put(name, verdict, 30, active=True)
    cache.put("refused", object(), 5, active=False)
    return cache


def assert_consistent(cache: VerdictCache) -> None:
    """Every active verdict is filed under each of its index entries, and nothing else is."""
    expected: dict[tuple, set[str]] = {}
    for key, (verdict, _, _) in cache.active.items():
        for entry in index_keys(verdict):
            expected.setdefault(entry, set()).add(key)
    assert cache.index == expected


@pytest.mark.parametrize("name", list(EVICTIONS))
def test_an_eviction_drops_exactly_its_matches(name):
    match, gone = EVICTIONS[name]
    cache = filled()
    assert cache.evict(match) == len(gone)
    assert set(VERDICTS) - set(cache.active) == gone
    assert "refused" in cache.inactive, "refusals are not touched by an eviction"
    assert_consistent(cache)


@pytest.mark.parametrize("match", [
    Match(connection_id="con_never"), Match(key_id="key_never"), Match(org_id="org_never"),
    Match(client_id="never"), Match(org_id="org_acme", user_id="usr_never"),
    Match(org_id="org_never", client_id="zapier"),
])
def test_ids_never_cached_cost_one_lookup_and_touch_nothing(match):
    cache = filled()
    before = (dict(cache.active), dict(cache.inactive), {k: set(v) for k, v in
                                                          cache.index.items()})

    class CountingIndex(dict):
        """Counts how the eviction reads the index."""

        lookups = 0

        def get(self, key, default=None):
            CountingIndex.lookups += 1
            return super().get(key, default)

    cache.index = CountingIndex(cache.index)
    assert cache.evict(match) == 0
    assert CountingIndex.lookups == 1
    assert (dict(cache.active), dict(cache.inactive), dict(cache.index)) == before


def test_a_match_names_at_least_one_id():
    with pytest.raises(ValueError):
        Match()


def test_the_index_follows_lru_eviction_expiry_and_replacement():
    clock = FakeClock()
    cache = VerdictCache(3, 3, clock)
    names = list(VERDICTS)
    for name in names[:5]:
        cache.put(name, VERDICTS[name], 30, active=True)
        assert_consistent(cache)
    assert list(cache.active) == names[2:5], "the least recently used went first"
    assert cache.evict(Match(key_id="key_a1")) == 0, "an evicted verdict is out of the index"
    clock.advance(30)
    assert cache.get(names[4]) is None, "expired"
    assert_consistent(cache)
    # The same digest cached again with another verdict is filed under the new ids only.
    cache.put(names[3], VERDICTS["bob make beta"], 30, active=True)
    assert_consistent(cache)
    assert cache.evict(Match(connection_id="con_1")) == 0
    assert cache.evict(Match(connection_id="con_6")) == 1
    cache.clear()
    assert cache.index == {} and len(cache) == 0


def test_clearing_refusals_leaves_active_verdicts():
    cache = filled()
    cache.clear_inactive()
    assert not cache.inactive and set(cache.active) == set(VERDICTS)


def test_long_bounds_only_while_allowed():
    clock = FakeClock()
    cache = VerdictCache(10, 10, clock)
    cache.put("a", VERDICTS["acme key"], 30, active=True, long_ttl=300)
    assert cache.active["a"][1] == clock() + 30
    cache.allow_long()
    cache.put("b", VERDICTS["beta key"], 30, active=True, long_ttl=300)
    assert cache.active["b"][1] == clock() + 300
    cache.put("r", object(), 5, active=False, long_ttl=300)
    assert cache.inactive["r"][1] == clock() + 5, "a refusal never gets the long bound"


def test_falling_back_trusts_no_active_verdict_past_the_short_bound():
    clock = FakeClock()
    cache = VerdictCache(10, 10, clock)
    cache.put("short", VERDICTS["acme key"], 30, active=True, long_ttl=300)
    cache.allow_long()
    cache.put("old long", VERDICTS["beta key"], 30, active=True, long_ttl=300)
    clock.advance(20)
    cache.put("recent long", VERDICTS["ann zapier acme"], 30, active=True, long_ttl=300)
    cache.put("near exp", VERDICTS["bob make beta"], 30, active=True, long_ttl=5)
    clock.advance(15)
    assert cache.fall_back(30) == 2
    assert "old long" not in cache.active, "stored 35 s ago: no longer trusted"
    assert cache.active["recent long"][1] == clock() + 15, "trusted 30 s from its fetch"
    # Deadlines already within 30 s of the fetch are left as they were.
    assert cache.active["short"][1] == clock() - 5
    assert cache.active["near exp"][1] == clock() - 10
    cache.put("after", VERDICTS["acme key 2"], 30, active=True, long_ttl=300)
    assert cache.active["after"][1] == clock() + 30, "long bounds stay off"
    assert_consistent(cache)


def test_an_answer_in_flight_during_a_matching_eviction_is_not_cached():
    cache = VerdictCache(10, 10, FakeClock())
    epoch = cache.epoch
    cache.evict(Match(connection_id="con_1"))
    cache.put("stale", VERDICTS["ann zapier acme"], 30, active=True, epoch=epoch)
    cache.put("other", VERDICTS["bob zapier acme"], 30, active=True, epoch=epoch)
    assert set(cache.active) == {"other"}, "only the answer the eviction named is dropped"
    epoch = cache.epoch
    cache.clear_inactive()
    cache.put("refusal", object(), 5, active=False, epoch=epoch)
    cache.put("active", VERDICTS["ann zapier acme"], 30, active=True, epoch=epoch)
    assert "refusal" not in cache.inactive and "active" in cache.active
    epoch = cache.epoch
    for _ in range(RECENT_EVICTIONS + 1):
        cache.evict(Match(key_id="key_unrelated"))
    cache.put("too old to tell", VERDICTS["beta key"], 30, active=True, epoch=epoch)
    assert "too old to tell" not in cache.active


# -- the judge's bounds ---------------------------------------------------------------------

class SilentStream:
    """A stream that only records what the judge asks of it."""

    def __init__(self):
        """Not started."""
        self.started = False
        self.judges = []

    def attach(self, judge):
        """Remember the judge."""
        self.judges.append(judge)

    def start(self):
        """Mark started."""
        self.started = True

    def status(self):
        """Its own view."""
        return {"fake": True}


@pytest.fixture
def kit():
    """A judge with a stream attached, a fake clock and a scripted IdP; and its raw tokens."""
    clock = FakeClock()
    idp = ScriptedIntrospection()
    stream = SilentStream()
    judge = Judge(URL, "rs_x", "secret", session=idp, clock=clock,
                  wall_clock=lambda: EPOCH + clock(), stream=stream, stream_ttl=300)
    key, token = api_key(), access_token()
    idp.claims[key] = key_claims("key_a1", "org_acme")
    idp.claims[token] = token_claims("con_1", "org_acme", "usr_ann", "zapier",
                                     exp=int(EPOCH + clock() + 100))
    return judge, clock, idp, key, token


def test_without_a_healthy_stream_the_short_bound_holds(kit):
    judge, clock, idp, key, _ = kit
    judge.judge("Bearer " + key)
    assert judge.stream.started, "the stream starts with the first bearer judged"
    clock.advance(29.9)
    judge.judge("Bearer " + key)
    assert idp.calls == 1
    clock.advance(0.1)
    judge.judge("Bearer " + key)
    assert idp.calls == 2
    assert judge.stream_status()["healthy"] is False


def test_a_healthy_stream_allows_the_long_bound_never_past_exp(kit):
    judge, clock, idp, key, token = kit
    judge.stream_healthy(lease=1000)
    judge.judge("Bearer " + key)
    judge.judge("Bearer " + token)
    clock.advance(99.9)
    judge.judge("Bearer " + key)
    judge.judge("Bearer " + token)
    assert idp.calls == 2
    clock.advance(0.1)
    judge.judge("Bearer " + token)
    assert idp.calls == 3, "the token's exp came first"
    clock.advance(199.9)
    judge.judge("Bearer " + key)
    assert idp.calls == 3, "the key is cached up to stream_ttl"
    clock.advance(0.1)
    judge.judge("Bearer " + key)
    assert idp.calls == 4
    assert judge.stream_status()["active_ttl"] == 300


def test_turning_unhealthy_cuts_long_entries_logs_once_and_says_why(kit, caplog):
    judge, clock, idp, key, token = kit
    judge.stream_healthy(lease=1000)
    judge.judge("Bearer " + key)
    clock.advance(40)
    judge.judge("Bearer " + token)
    clock.advance(10)
    with caplog.at_level(logging.INFO, logger="flowestate_kit.judge"):
        judge.stream_unhealthy("poll failed")
        judge.stream_unhealthy("poll failed again")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "poll failed" in warnings[0].getMessage()
    assert "30" in warnings[0].getMessage()
    status = judge.stream_status()
    assert status["healthy"] is False and status["reason"] == "poll failed again"
    assert status["active_ttl"] == 30 and status["stream"] == {"fake": True}
    judge.judge("Bearer " + key)
    assert idp.calls == 3, "cached 50 s ago under the long bound: asked again at once"
    judge.judge("Bearer " + token)
    assert idp.calls == 3, "cached 10 s ago: still within 30 s of its fetch"
    clock.advance(20)
    judge.judge("Bearer " + token)
    assert idp.calls == 4


def test_a_stream_silent_past_its_lease_is_taken_as_unhealthy(kit, caplog):
    judge, clock, idp, key, _ = kit
    judge.stream_healthy(lease=45)
    judge.judge("Bearer " + key)
    clock.advance(44)
    judge.stream_healthy(lease=45)
    clock.advance(44)
    judge.judge("Bearer " + key)
    assert idp.calls == 1, "the lease was renewed"
    with caplog.at_level(logging.WARNING, logger="flowestate_kit.judge"):
        clock.advance(1)
        judge.judge("Bearer " + key)
    assert idp.calls == 2, "lease over: 89 s old is past the short bound"
    assert judge.stream_status()["reason"] == "no word from the stream within its lease"
    assert len(caplog.records) == 1


def test_recovery_allows_the_long_bound_again(kit):
    judge, clock, idp, key, _ = kit
    judge.stream_healthy(lease=1000)
    judge.stream_unhealthy("gap")
    judge.judge("Bearer " + key)
    clock.advance(30)
    judge.judge("Bearer " + key)
    assert idp.calls == 2
    judge.stream_healthy(lease=1000)
    clock.advance(30)
    judge.judge("Bearer " + key)
    clock.advance(200)
    judge.judge("Bearer " + key)
    assert idp.calls == 3


def test_a_judge_without_a_stream_says_so_and_keeps_its_bounds():
    clock = FakeClock()
    idp = ScriptedIntrospection()
    judge = Judge(URL, "rs_x", "secret", session=idp, clock=clock)
    key = api_key()
    idp.claims[key] = key_claims("key_a1", "org_acme")
    judge.judge("Bearer " + key)
    clock.advance(30)
    judge.judge("Bearer " + key)
    assert idp.calls == 2
    assert judge.stream_status() == {"configured": False, "healthy": False,
                                     "reason": "no stream configured",
                                     "since": judge.stream_status()["since"],
                                     "active_ttl": 30}


def test_events_reach_the_cache_through_the_judge(kit):
    judge, clock, idp, key, token = kit
    judge.judge("Bearer " + key)
    judge.judge("Bearer " + token)
    assert judge.evict(Match(connection_id="con_1")) == 1
    assert judge.evict(Match(connection_id="con_1")) == 0
    judge.judge("Bearer " + key)
    judge.judge("Bearer " + token)
    assert idp.calls == 3, "only the token was asked again"


@pytest.mark.parametrize("options", [{"stream_ttl": -1},
                                     {"stream": SilentStream(),
                                      "ssf_configuration_url": "https://idp.test"}])
def test_bad_stream_settings_are_refused(options):
    with pytest.raises(ValueError):
        Judge(URL, "rs_x", "secret", **options)
