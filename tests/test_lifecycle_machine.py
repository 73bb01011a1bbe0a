"""Stateful property test of the connection lifecycle (docs/connection-lifecycle.md).

Hypothesis drives the real token, revocation, introspection and Connected Apps endpoints through
Flask's test client, moves the clock, flips the conditions that can be lifted and injects
database faults, while :class:`tests.lifecycle_model.Lifecycle` says what every answer must be.
A failing run prints the steps and a reproduction blob; the example is also kept in .hypothesis.
"""

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import initialize
from hypothesis.stateful import invariant
from hypothesis.stateful import precondition
from hypothesis.stateful import rule
from hypothesis.stateful import run_state_machine_as_test

from idp.core import clock as idp_clock
from idp.core import secrets as cs
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from tests import lifecycle_model as lm
from tests.lifecycle_env import LIFETIMES
from tests.lifecycle_env import World
from tests.lifecycle_env import freeze_clock
from tests.lifecycle_env import random_refresh_token

#: At most this many connections (live ones, all) per example keeps each example cheap.
MAX_LIVE = 2
MAX_CONNECTIONS = 5
#: Narrower, comma-separated, and not-granted scopes for refresh requests.
REFRESH_SCOPES = [None, "leads:read", "leads:read,contacts:read", "tasks:read"]
#: Clock moves: (what to approach, seconds relative to it); for "tick", seconds from now.
CLOCK_STEPS = [("grace", 1), ("tick", 5), ("grace", 0), ("grace", -1), ("tick", 30),
               ("access", 0), ("access", -1), ("refresh", 0), ("refresh", -1), ("code", 0),
               ("code", -1), ("far", 0)]
#: Which token the client presents besides its newest; retries of rotated ones come first.
HELD = ["previous", "previous", "any", "access", "other app", "unknown"]
#: The conditions that pause a connection without ending it.
CONDITIONS = ["client disabled", "org suspended", "membership removed", "org not allowlisted"]
#: Where a fault may strike: before the k-th write statement, or at COMMIT.
FAULT_POINTS = [1, 2, 3, 4, 5, 6, "commit"]
#: Examples and steps; CI may raise them with IDP_LIFECYCLE_EXAMPLES.
EXAMPLES = int(os.environ.get("IDP_LIFECYCLE_EXAMPLES", "40"))
STEPS = 40

picks = st.integers(min_value=0, max_value=10_000)


def choose(items, pick):
    """A deterministic choice that shrinks towards the first item."""
    return items[pick % len(items)]


class LifecycleMachine(RuleBasedStateMachine):
    """Random walks over connect, exchange, refresh, retry, revoke, disconnect, time and faults."""

    #: Set by the test function: the app, its demo data and the signed-in test client.
    world: World = None
    #: What the examples exercised, so the test can prove it was not vacuous.
    seen: Counter = None

    def __init__(self):
        """A fresh model per example; the database keeps earlier examples' rows, unreferenced."""
        super().__init__()
        self.w = type(self).world
        self.m = lm.Lifecycle()
        #: The verdict each token last received from /api/v1/me (None = active).
        self.judged: dict[str, tuple | str | None] = {}

    @initialize()
    def start(self):
        """Every example starts with all conditions lifted and the clock at zero."""
        self.w.faults.disarm()
        self.w.reset_conditions()
        self.seen["examples"] += 1
        # Begin with one redeemed connection so every rule has something to act on at once.
        self.connect(redeem=True)

    # --- checks shared by the rules -----------------------------------------------------------

    def check_token_answer(self, expect: lm.Expect, response, scope=None) -> dict | None:
        """The token endpoint answered exactly what the model says; return a 200 body."""
        body = response.get_json(silent=True)
        assert response.status_code == expect.status, (expect, response.status_code, body)
        assert response.headers.get("Cache-Control") == "no-store"
        self.seen[self.outcome(expect)] += 1
        if expect.status != 200:
            assert body["error"] == expect.error, (expect, body)
            # SPEC §5.3: a 4xx means "this connection is dead" or a wrong request, nothing else.
            assert expect.kind in ("dead", "invalid"), expect
            return None
        assert body["token_type"] == "Bearer"
        if expect.same_as is not None:
            same = expect.same_as
            assert body["refresh_token"] == same.refresh, "a retry must answer the same successor"
            assert body["access_token"] == same.access
            assert body["scope"] == same.access_scope
            assert body["expires_in"] == same.access_expires_at - self.m.now
            assert body["refresh_expires_in"] == max(0, same.refresh_expires_at - self.m.now)
            return body
        assert cs.ACCESS_TOKEN_PATTERN.fullmatch(body["access_token"])
        assert cs.REFRESH_TOKEN_PATTERN.fullmatch(body["refresh_token"])
        held = {v for i in self.m.issues() for v in (i.access, i.refresh)}
        assert body["access_token"] not in held and body["refresh_token"] not in held
        assert body["expires_in"] == lm.ACCESS_TTL
        assert body["refresh_expires_in"] == lm.REFRESH_TTL
        granted = (expect.rotates.refresh_scope if expect.rotates else expect.activates.scope)
        assert body["scope"] == (join_scope(parse_scope(scope)) if scope else granted)
        return body

    @staticmethod
    def outcome(expect: lm.Expect) -> str:
        """A short name for what a token answer was, for the coverage tally."""
        if expect.status != 200:
            return f"{expect.status} {expect.error}" + (f" ends {expect.reason}" if expect.ends
                                                        else "")
        if expect.same_as is not None:
            return "200 grace retry" + (" via chain" if expect.same_as.rotated_at is not None
                                        or expect.same_as.successor else "")
        return "200 rotation" if expect.rotates else "200 first pair"

    def assert_unavailable(self, response):
        """A passing fault is 503 with Retry-After, never a 4xx a connector would act on."""
        self.seen["503 injected fault"] += 1
        assert response.status_code == 503, (response.status_code, response.get_json(silent=True))
        assert response.headers.get("Retry-After")
        assert response.get_json()["error"] == "temporarily_unavailable"

    def refresh_and_check(self, raw, *, client="zapier", scope=None):
        """Present a value to the refresh grant, judge the answer, move the model."""
        expect = self.m.expect_refresh(raw, other_client=client != "zapier", scope=scope)
        response = self.w.refresh(raw, client=client, scope=scope)
        body = self.check_token_answer(expect, response, scope)
        self.m.apply(expect, body)

    # --- connect and redeem -------------------------------------------------------------------

    @precondition(lambda self: len(self.m.connections) < MAX_CONNECTIONS
                  and sum(not c.ended for c in self.m.connections) < MAX_LIVE)
    @rule(redeem=st.sampled_from([True, True, True, False]))
    def connect(self, redeem):
        """Authorize + Allow (or an error page when refused); a connector redeems at once."""
        expect = self.m.expect_connect()
        before = self.w.connection_count()
        status, code, verifier, public_id, scope = self.w.connect()
        assert status == expect.status, (expect, status)
        if status != 302:
            assert self.w.connection_count() == before, "a refused consent created a connection"
            return
        connection = self.m.add_connection(public_id, scope, code, verifier)
        if redeem:
            self.exchange_and_check(connection)

    @precondition(lambda self: self.m.connections)
    @rule(pick=picks, again=st.booleans())
    def exchange_code(self, pick, again):
        """Redeem a code: the first time it activates; again, RFC 6749 §10.5 ends the connection."""
        unused = [c for c in self.m.connections if not c.code_used]
        used = [c for c in self.m.connections if c.code_used]
        self.exchange_and_check(choose((used if again else unused) or self.m.connections, pick))

    def exchange_and_check(self, connection):
        """Present a connection's code and judge the answer."""
        expect = self.m.expect_code(connection)
        self.m.apply(expect, self.check_token_answer(expect, self.w.exchange(connection)))

    # --- refresh ------------------------------------------------------------------------------

    @precondition(lambda self: any(c.head for c in self.m.connections))
    @rule()
    def refresh_newest(self):
        """The everyday step: the newest connection refreshes with its newest token."""
        heads = [c.head for c in self.m.connections if c.head]
        live = [h for h in heads if not h.connection.ended]
        self.refresh_and_check((live or heads)[-1].refresh)

    @precondition(lambda self: any(i.rotated_at is not None for i in self.m.issues()))
    @rule()
    def retry_last(self):
        """A lost response: the token rotated last is presented again."""
        issue = max((i for i in self.m.issues() if i.rotated_at is not None),
                    key=lambda i: (i.rotated_at, self.m.issues().index(i)))
        self.refresh_and_check(issue.refresh)

    @precondition(lambda self: any(i.rotated_at is not None for i in self.m.issues()))
    @rule()
    def reuse_after_grace(self):
        """A retry that arrives after the grace window: reuse, which ends the connection."""
        issue = max((i for i in self.m.issues() if i.rotated_at is not None),
                    key=lambda i: (i.rotated_at, self.m.issues().index(i)))
        self.move_clock_to(max(self.m.now, issue.rotated_at + lm.GRACE + 1))
        self.refresh_and_check(issue.refresh)

    @precondition(lambda self: any(c.head for c in self.m.connections))
    @rule(pick=picks, scope=st.sampled_from(REFRESH_SCOPES))
    def refresh_current(self, pick, scope):
        """Refresh with the newest refresh token, as a well-behaved connector does."""
        issue = choose([c.head for c in self.m.connections if c.head], pick)
        self.refresh_and_check(issue.refresh, scope=scope)

    @precondition(lambda self: self.m.issues())
    @rule(pick=picks, held=st.sampled_from(HELD))
    def refresh_held(self, pick, held):
        """Refresh with a rotated token (a retry, or a slow concurrent zap), any token ever
        held, an access token, another app's credentials or a never-issued token."""
        raw, client = self.held_value(pick, held)
        self.refresh_and_check(raw, client=client)

    def held_value(self, pick, held) -> tuple[str, str]:
        """The value a refresh rule presents, and which connector presents it."""
        issues = self.m.issues()
        rotated = sorted((i for i in issues if i.rotated_at is not None),
                         key=lambda i: -i.rotated_at)
        if held == "previous" and rotated:
            return choose(rotated, pick).refresh, "zapier"
        if held == "access":
            return choose(issues, pick).access, "zapier"
        if held == "other app":
            return choose(issues, pick).refresh, "make"
        if held == "unknown":
            return random_refresh_token(), "zapier"
        return choose(issues, pick).refresh, "zapier"

    # --- faults -------------------------------------------------------------------------------

    @precondition(lambda self: self.m.connections)
    @rule(pick=picks, action=st.sampled_from(["refresh current", "refresh any", "exchange",
                                              "revoke"]),
          at=st.sampled_from(FAULT_POINTS))
    def fault(self, pick, action, at):
        """A database fault between any two writes (or at COMMIT): 503, and nothing changed,
        so the very same request made again gets the answer it should have got."""
        connection = choose(self.m.connections, pick)
        issues = connection.issues
        if action == "exchange" or not issues:
            expect, call = self.m.expect_code(connection), lambda: self.w.exchange(connection)
        elif action == "revoke":
            raw = choose([v for i in issues for v in (i.access, i.refresh)], pick)
            expect, call = self.m.expect_revoke(raw), lambda: self.w.revoke(raw)
        else:
            issue = connection.head if action == "refresh current" and connection.head else \
                choose(issues, pick)
            expect, call = self.m.expect_refresh(issue.refresh), \
                lambda: self.w.refresh(issue.refresh)
        self.w.faults.arm(at)
        try:
            response = call()
        finally:
            fired = self.w.faults.fired
            self.w.faults.disarm()
        if fired:
            self.assert_unavailable(response)
            response = call()
        if action == "revoke" and issues:
            assert response.status_code == expect.status, (expect, response.get_json())
            self.m.apply(expect)
        else:
            self.m.apply(expect, self.check_token_answer(expect, response))

    # --- revocation and disconnect ------------------------------------------------------------

    @precondition(lambda self: self.m.issues())
    @rule(pick=picks, half=st.sampled_from(["refresh", "access"]),
          hint=st.sampled_from([None, "access_token", "refresh_token"]),
          client=st.sampled_from(["zapier", "zapier", "make"]))
    def revoke(self, pick, half, hint, client):
        """RFC 7009: revoking either token ends the connection; another app's attempt is a no-op."""
        issue = choose(self.m.issues(), pick)
        raw = getattr(issue, half)
        expect = self.m.expect_revoke(raw, other_client=client != "zapier")
        response = self.w.revoke(raw, client=client, hint=hint)
        body = response.get_json(silent=True)
        assert response.status_code == expect.status, (expect, body)
        if expect.status != 200:
            assert body["error"] == expect.error
        self.m.apply(expect)

    @precondition(lambda self: self.m.connections)
    @rule(pick=picks)
    def disconnect(self, pick):
        """The Connected Apps action; pending and ended connections are not there (404)."""
        connection = choose(self.m.connections, pick)
        expect = self.m.expect_disconnect(connection)
        response = self.w.disconnect(connection.public_id)
        assert response.status_code == expect.status, (expect, response.status_code)
        self.m.apply(expect)

    # --- time and conditions ------------------------------------------------------------------

    @rule(step=st.sampled_from(CLOCK_STEPS))
    def advance_clock(self, step):
        """Move time a little, or to a boundary: one second before it, at it, or just past it."""
        kind, edge = step
        m = self.m
        marks = {
            "grace": [t + lm.GRACE for c in m.connections if (t := c.last_rotation()) is not None],
            "access": [i.access_expires_at for i in m.issues()],
            "refresh": [c.head.refresh_expires_at for c in m.connections if c.head],
            "code": [c.code_expires_at for c in m.connections if not c.code_used],
            "far": [m.now + lm.REFRESH_TTL // 2],
            "tick": [m.now + edge],
        }[kind]
        upcoming = sorted(t + (0 if kind == "tick" else edge) for t in marks)
        upcoming = [t for t in upcoming if t > m.now]
        self.move_clock_to(upcoming[0] if upcoming else m.now + 7)

    def move_clock_to(self, target: int) -> None:
        """Shift the app's clock and the model's together."""
        idp_clock.shift(target - self.m.now)
        self.m.now = target

    @rule(condition=st.sampled_from(CONDITIONS))
    def impose(self, condition):
        """An operator pauses things: disables the client, suspends the org, removes the
        person, or drops the org from the client's allowlist."""
        self.set_condition(condition, True)

    @precondition(lambda self: not (self.m.client_enabled and self.m.bound()))
    @rule()
    def lift_all(self):
        """The operator lifts every condition again; the connections must simply work on."""
        for condition in CONDITIONS:
            self.set_condition(condition, False)

    def set_condition(self, condition, imposed):
        """Change one condition in the app (through the CLI where one exists) and the model."""
        if condition == "client disabled":
            self.w.set_client_enabled(not imposed)
            self.m.client_enabled = not imposed
        elif condition == "org suspended":
            self.w.set_org_suspended(imposed)
            self.m.org_suspended = imposed
        elif condition == "membership removed":
            self.w.set_member(not imposed)
            self.m.member = not imposed
        else:
            self.w.set_allowlist("other" if imposed else "any")
            self.m.allowlisted = not imposed

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def database_agrees(self):
        """Ended only for a documented reason, once, audited; one unrotated refresh token."""
        snapshot = self.w.snapshot([c.public_id for c in self.m.connections])
        for connection in self.m.connections:
            row = snapshot[connection.public_id]
            assert row["reason"] == connection.end_reason, (connection.public_id, row)
            assert row["ended"] == connection.ended
            assert connection.end_reason in lm.END_REASONS | {None}
            ended_events = [r for e, r in row["events"] if e == "connection_ended"]
            assert ended_events == ([connection.end_reason] if connection.ended else []), row
            reuse_events = [e for e, _ in row["events"] if e == "refresh_token_reuse"]
            assert len(reuse_events) == (connection.end_reason == "refresh_reuse"), row
            assert row["unrotated_unexpired"] <= 1, row
            expected = {cs.digest(i.refresh): i.rotated_at is not None for i in connection.issues}
            assert row["rotated"] == expected, "refresh rows differ from the tokens answered"

    @invariant()
    def one_working_refresh_token_after_grace(self):
        """Once the grace window of the last rotation has passed, at most one token refreshes."""
        for connection in self.m.connections:
            last = connection.last_rotation()
            if last is not None and self.m.now - last > lm.GRACE:
                assert len(self.m.working_refresh_tokens(connection)) <= 1

    @invariant()
    def every_token_judged_as_the_model_says(self):
        """Introspection and /api/v1/me agree with the model for every token ever held.

        The model never ends an access token because of a refresh, so this is also the check
        that earlier access tokens live to their own expiry unless the connection ended.
        Introspection judges every access token after every step; /api/v1/me (the same core
        behind the in-process guard) is asked whenever the expected verdict changes. A token
        seen as ``token_revoked`` is final (an ended connection never revives, which
        ``database_agrees`` checks on the rows), so it is not asked again. Refresh tokens are
        never bearers: both endpoints are asked about each once, when it is issued.
        """
        for issue in self.m.issues():
            if issue.refresh not in self.judged:
                seen = self.w.introspect(issue.refresh)
                assert seen["active"] is False and seen["denial"]["reason"] == "unknown_token"
                me = self.w.me(issue.refresh)
                assert me.status_code == 401
                assert me.get_json()["error"]["reason"] == "unknown_token"
                self.judged[issue.refresh] = "unknown_token"
            previous = self.judged.get(issue.access, "never asked")
            if previous == (401, "token_revoked"):
                continue
            verdict = self.m.judge_access(issue)
            seen = self.w.introspect(issue.access)
            me = self.w.me(issue.access) if verdict != previous else None
            self.judged[issue.access] = verdict
            if verdict is None:
                self.assert_active(issue, seen, me)
                continue
            status, reason = verdict
            assert seen == {"active": False, "denial": {
                "status": status, "code": "UNAUTHORIZED" if status == 401 else "FORBIDDEN",
                "reason": reason}}, (issue.connection.public_id, seen)
            if me is not None:
                assert me.status_code == status, me.get_json()
                assert me.get_json()["error"]["reason"] == reason

    def assert_active(self, issue, seen, me):
        """The claims of a good access token, from both judges."""
        w = self.w
        assert seen["active"] is True, seen
        assert seen["token_type"] == "access_token"
        assert seen["scope"] == join_scope(parse_scope(issue.access_scope))
        assert seen["org_id"] == w.demo["organization"]["id"]
        assert seen["client_id"] == w.zapier["client_id"]
        assert seen["connection_id"] == issue.connection.public_id
        assert seen["sub"] == w.user_id and seen["username"] == w.demo["user"]["email"]
        assert seen["exp"] == w.epoch(issue.access_expires_at)
        assert seen["iat"] == w.epoch(issue.issued_at)
        if me is None:
            return
        assert me.status_code == 200, me.get_json()
        body = me.get_json()
        assert body["type"] == "oauth" and body["client"]["id"] == w.zapier["client_id"]
        assert body["scopes"] == sorted(parse_scope(issue.access_scope))


@pytest.mark.slow
def test_lifecycle_state_machine(make_app, monkeypatch):
    """Run the machine; the settings keep it near a minute per database."""
    from idp.cli import seed_demo

    freeze_clock(monkeypatch)
    app = make_app(**LIFETIMES)
    with app.app_context():
        demo = seed_demo()
    seen = Counter()
    machine = type("Lifecycle", (LifecycleMachine,), {"world": World(app, demo), "seen": seen})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    ))
    print("lifecycle machine:", dict(sorted(seen.items())))
    # Not vacuous: the walks reached rotation, grace retries, theft, replay and faults.
    for outcome in ("200 rotation", "200 grace retry", "400 invalid_grant ends refresh_reuse",
                    "400 invalid_grant ends code_replay", "503 injected fault"):
        assert seen[outcome] > 0, (outcome, seen)
