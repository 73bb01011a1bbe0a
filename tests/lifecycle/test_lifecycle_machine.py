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
from hypothesis.stateful import rule
from hypothesis.stateful import run_state_machine_as_test

from idp.core import clock as idp_clock
from idp.core import secrets as cs
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from tests import lifecycle_model as lm
from tests.lifecycle_env import LIFETIMES
from tests.lifecycle_env import World
from tests.lifecycle_env import lifecycle_world
from tests.lifecycle_env import random_refresh_token

#: At most this many connections (live ones, all) per example keeps each example cheap.
MAX_LIVE = 2
MAX_CONNECTIONS = 8
#: Narrower, comma-separated, and not-granted scopes for refresh requests.
REFRESH_SCOPES = [None, "leads:read", "leads:read,contacts:read", "tasks:read"]
#: Clock moves: (what to approach, seconds relative to it); for "tick", seconds from now.
CLOCK_STEPS = [("grace", 1), ("tick", 5), ("grace", 0), ("grace", -1), ("tick", 30),
               ("access", 0), ("access", -1), ("refresh", 0), ("refresh", -1), ("code", 0),
               ("code", -1), ("far", 0), ("retention", 0), ("retention", -1), ("day", 0)]
#: Actions and their weights (an action listed twice is chosen twice as often). The everyday
#: refresh comes first because hypothesis leans towards the first choice when it simplifies.
ACTIONS = [
    *["refresh newest"] * 3, *["lost response"] * 2, *["refresh current"] * 2,
    *["retry previous"] * 2, *["reuse after grace"] * 2, *["refresh held"] * 2,
    "connect", "exchange code", *["advance clock"] * 3, *["fault"] * 2, "revoke", "disconnect",
    "impose", *["lift all"] * 3, "purge",
]
#: The conditions that pause a connection without ending it.
CONDITIONS = ["client disabled", "org suspended", "membership removed", "org not allowlisted"]
#: Where a fault may strike: before the k-th write statement, or at COMMIT.
FAULT_POINTS = [1, 2, 3, 4, 5, 6, "commit"]
#: Examples and steps per example: about half a minute of CPU per database. A longer hunt:
#: IDP_LIFECYCLE_EXAMPLES=500 IDP_LIFECYCLE_STEPS=60 pytest tests/lifecycle/
EXAMPLES = int(os.environ.get("IDP_LIFECYCLE_EXAMPLES", "30"))
STEPS = int(os.environ.get("IDP_LIFECYCLE_STEPS", "30"))


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
        #: The verdict each token was last checked against (None = active).
        self.judged: dict[str, tuple | str | None] = {}

    @initialize()
    def start(self):
        """Every example starts with all conditions lifted and the clock at zero."""
        self.w.faults.disarm()
        self.w.reset_conditions()
        self.seen["examples"] += 1
        # Begin with one redeemed connection so every action has something to act on at once.
        self.do_connect(None, redeem=True)

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
            return "200 grace retry"
        return "200 rotation" if expect.rotates else "200 first pair"

    def assert_unavailable(self, response):
        """A passing fault is 503 with Retry-After, never a 4xx a connector would act on."""
        self.seen["503 injected fault"] += 1
        assert response.status_code == 503, (response.status_code, response.get_json(silent=True))
        assert response.headers.get("Retry-After")
        if response.is_json:  # the OAuth endpoints; the settings page answers an HTML page
            assert response.get_json()["error"] == "temporarily_unavailable"

    def refresh_and_check(self, raw, *, client="zapier", scope=None):
        """Present a value to the refresh grant, judge the answer, move the model."""
        expect = self.m.expect_refresh(raw, other_client=client != "zapier", scope=scope)
        presented, _ = self.m.find(raw)
        if expect.same_as is not None and presented.successor is not expect.same_as:
            self.seen["200 grace retry via chain"] += 1
        response = self.w.refresh(raw, client=client, scope=scope)
        body = self.check_token_answer(expect, response, scope)
        self.m.apply(expect, body)

    # --- one step: an action chosen by weight ----------------------------------------------

    @rule(data=st.data())
    def step(self, data):
        """Take one action, chosen among those that apply now with the weights of ACTIONS.

        One rule with weighted actions rather than a rule per action: hypothesis would switch
        whole rules off per example (swarm testing) and favour whichever comes first, which
        left theft and faults too rare to matter in the examples a minute allows.
        """
        available = [name for name in ACTIONS if self.applies(name)]
        if not any(not c.ended for c in self.m.connections) and self.applies("connect"):
            # Everything has ended: mostly start over, as the person would reconnect.
            available += ["connect"] * len(available)
        name = data.draw(st.sampled_from(available), label="action")
        getattr(self, "do_" + name.replace(" ", "_"))(data)

    def applies(self, name: str) -> bool:
        """Whether an action has something to act on in the current state."""
        m = self.m
        heads = any(c.head for c in m.connections)
        live_heads = any(c.head and not c.ended for c in m.connections)
        rotated = any(i.rotated_at is not None for i in m.issues())
        return {
            "connect": len(m.connections) < MAX_CONNECTIONS
            and sum(not c.ended for c in m.connections) < MAX_LIVE,
            "refresh newest": live_heads,
            "lost response": live_heads,
            "refresh current": heads,
            "retry previous": rotated,
            "reuse after grace": m.client_enabled and m.bound() and any(
                i.rotated_at is not None and not i.connection.ended for i in m.issues()),
            "lift all": not (m.client_enabled and m.bound()),
        }.get(name, bool(m.connections))

    # --- connect and redeem -------------------------------------------------------------------

    def do_connect(self, data, redeem=None):
        """Authorize + Allow (or an error page when refused); a connector redeems at once."""
        if redeem is None:
            redeem = data.draw(st.sampled_from([True, True, True, False]), label="redeem")
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

    def do_exchange_code(self, data):
        """Redeem a code: the first time it activates; again, RFC 6749 §10.5 ends the connection."""
        again = data.draw(st.booleans(), label="again")
        unused = [c for c in self.m.connections if not c.code_used]
        used = [c for c in self.m.connections if c.code_used]
        connection = data.draw(st.sampled_from((used if again else unused) or self.m.connections),
                               label="connection")
        self.exchange_and_check(connection)

    def exchange_and_check(self, connection):
        """Present a connection's code and judge the answer."""
        expect = self.m.expect_code(connection)
        self.m.apply(expect, self.check_token_answer(expect, self.w.exchange(connection)))

    # --- refresh ------------------------------------------------------------------------------

    def do_refresh_newest(self, data):
        """The everyday step: the newest live connection refreshes with its newest token."""
        self.refresh_and_check(self.newest_head().refresh)

    def do_lost_response(self, data):
        """Two zaps refresh with the same token one after the other (or one retries after
        losing the response): the second must get the very same successor."""
        raw = self.newest_head().refresh
        self.refresh_and_check(raw)
        self.refresh_and_check(raw)

    def newest_head(self) -> lm.Issue:
        """The live refresh token of the newest connection still alive."""
        return [c.head for c in self.m.connections if c.head and not c.ended][-1]

    def do_refresh_current(self, data):
        """Refresh with a connection's newest token, maybe asking for a narrower scope."""
        heads = [c.head for c in self.m.connections if c.head]
        issue = data.draw(st.sampled_from(heads), label="token")
        scope = data.draw(st.sampled_from(REFRESH_SCOPES), label="scope")
        self.refresh_and_check(issue.refresh, scope=scope)

    def do_retry_previous(self, data):
        """A rotated token again: a lost response's retry, or a slow concurrent zap."""
        rotated = sorted((i for i in self.m.issues() if i.rotated_at is not None),
                         key=lambda i: -i.rotated_at)
        issue = data.draw(st.sampled_from(rotated), label="token")
        # A retry repeats its request, narrower scope included; a wider one is refused first.
        scope = data.draw(st.sampled_from(REFRESH_SCOPES), label="scope")
        self.refresh_and_check(issue.refresh, scope=scope)

    def do_reuse_after_grace(self, data):
        """A rotated token of a live connection comes back after the grace window: theft."""
        rotated = [i for i in self.m.issues()
                   if i.rotated_at is not None and not i.connection.ended]
        issue = data.draw(st.sampled_from(rotated), label="token")
        self.move_clock_to(max(self.m.now, issue.rotated_at + lm.GRACE + 1))
        self.refresh_and_check(issue.refresh)

    def do_refresh_held(self, data):
        """Refresh with any token ever held, an access token, another app's credentials or a
        never-issued token."""
        held = data.draw(st.sampled_from(["any", "access", "other app", "unknown"]), label="held")
        issue = data.draw(st.sampled_from(self.m.issues()), label="token")
        raw, client = {
            "any": (issue.refresh, "zapier"),
            "access": (issue.access, "zapier"),
            "other app": (issue.refresh, "make"),
            "unknown": (random_refresh_token(), "zapier"),
        }[held]
        self.refresh_and_check(raw, client=client)

    # --- faults -------------------------------------------------------------------------------

    def do_fault(self, data):
        """A database fault between any two writes (or at COMMIT): 503, and nothing changed,
        so the very same request made again gets the answer it should have got."""
        connection = data.draw(st.sampled_from(self.m.connections), label="connection")
        action = data.draw(st.sampled_from(["refresh current", "refresh any", "exchange",
                                            "revoke", "disconnect"]), label="during")
        at = data.draw(st.sampled_from(FAULT_POINTS), label="fault before write")
        issues = connection.issues
        if action == "exchange" or not issues:
            action, expect = "exchange", self.m.expect_code(connection)
            call = lambda: self.w.exchange(connection)  # noqa: E731
        elif action == "disconnect":
            expect = self.m.expect_disconnect(connection)
            # Re-signing in (when the clock ended the session) writes too: not under the fault.
            self.w.stay_signed_in()
            call = lambda: self.w.disconnect(connection.public_id, signed_in=True)  # noqa: E731
        elif action == "revoke":
            raw = data.draw(st.sampled_from([v for i in issues for v in (i.access, i.refresh)]),
                            label="token")
            expect, call = self.m.expect_revoke(raw), lambda: self.w.revoke(raw)
        else:
            issue = connection.head if action == "refresh current" and connection.head else \
                data.draw(st.sampled_from(issues), label="token")
            expect = self.m.expect_refresh(issue.refresh)
            call = lambda: self.w.refresh(issue.refresh)  # noqa: E731
        self.w.faults.arm(at)
        try:
            response = call()
        finally:
            fired = self.w.faults.fired
            self.w.faults.disarm()
        if fired:
            self.assert_unavailable(response)
            response = call()
        if action in ("revoke", "disconnect"):
            assert response.status_code == expect.status, (expect, response.status_code)
            self.m.apply(expect)
        else:
            self.m.apply(expect, self.check_token_answer(expect, response))

    # --- revocation and disconnect ------------------------------------------------------------

    def do_revoke(self, data):
        """RFC 7009: revoking either token ends the connection; another app's attempt is a no-op."""
        issue = data.draw(st.sampled_from(self.m.issues()), label="issue")
        half = data.draw(st.sampled_from(["refresh", "access"]), label="half")
        hint = data.draw(st.sampled_from([None, "access_token", "refresh_token"]), label="hint")
        client = data.draw(st.sampled_from(["zapier", "zapier", "make"]), label="client")
        raw = getattr(issue, half)
        expect = self.m.expect_revoke(raw, other_client=client != "zapier")
        response = self.w.revoke(raw, client=client, hint=hint)
        body = response.get_json(silent=True)
        assert response.status_code == expect.status, (expect, body)
        if expect.status != 200:
            assert body["error"] == expect.error
        self.m.apply(expect)

    def do_disconnect(self, data):
        """The Connected Apps action; pending and ended connections are not there (404)."""
        connection = data.draw(st.sampled_from(self.m.connections), label="connection")
        expect = self.m.expect_disconnect(connection)
        response = self.w.disconnect(connection.public_id)
        assert response.status_code == expect.status, (expect, response.status_code)
        self.m.apply(expect)

    # --- time, the janitor and the conditions -----------------------------------------------

    def do_advance_clock(self, data):
        """Move time a little, or to a boundary: one second before it, at it, or just past it."""
        kind, edge = data.draw(st.sampled_from(CLOCK_STEPS), label="clock")
        m = self.m
        marks = {
            "grace": [t + lm.GRACE for c in m.connections if (t := c.last_rotation()) is not None],
            "access": [i.access_expires_at for i in m.issues()],
            "refresh": [c.head.refresh_expires_at for c in m.connections if c.head],
            "code": [c.code_expires_at for c in m.connections if not c.code_used],
            "far": [m.now + lm.REFRESH_TTL // 2],
            "retention": [c.ended_at + lm.RETENTION for c in m.connections if c.ended],
            "day": [i.access_expires_at + lm.EXPIRED_ACCESS_KEEP for i in m.issues()],
            "tick": [m.now + edge],
        }[kind]
        upcoming = sorted(t + (0 if kind == "tick" else edge) for t in marks)
        upcoming = [t for t in upcoming if t > m.now]
        self.move_clock_to(upcoming[0] if upcoming else m.now + 7)

    def move_clock_to(self, target: int) -> None:
        """Shift the app's clock and the model's together."""
        idp_clock.shift(target - self.m.now)
        self.m.now = target

    def do_purge(self, data):
        """The operator's janitor runs: it may only forget what can no longer matter (and a
        dry run forgets nothing)."""
        dry_run = data.draw(st.booleans(), label="dry run")
        self.w.purge(dry_run)
        if not dry_run:
            self.m.purge()
        self.seen["purge"] += 1

    def do_impose(self, data):
        """An operator pauses things: disables the client, suspends the org, removes the
        person, or drops the org from the client's allowlist."""
        self.set_condition(data.draw(st.sampled_from(CONDITIONS), label="condition"), True)

    def do_lift_all(self, data):
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
            # Lifted alternately to "any organization" and "only this one": both allow it.
            self.w.set_allowlist("other" if imposed else ("any", "ours")[self.m.now % 2])
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
            expected = {cs.digest(i.refresh): i.rotated_at is not None
                        for i in connection.issues if not i.refresh_purged}
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
        Introspection judges every good access token after every step, and every other one
        whenever its expected verdict changes; /api/v1/me (the same core behind the in-process
        guard) is asked on every change. A refused token could only start working again by
        the clock going back or an ended connection reviving, and ``database_agrees`` checks
        the rows for the latter after every step. Refresh tokens are never bearers: both
        endpoints are asked about each once, when it is issued.
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
            verdict = self.m.judge_access(issue)
            if verdict == previous and verdict is not None:
                continue
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
    """Run the machine; a failure prints its steps and a blob for @reproduce_failure."""
    seen = Counter()
    world = lifecycle_world(make_app, monkeypatch, **LIFETIMES)
    machine = type("Lifecycle", (LifecycleMachine,), {"world": world, "seen": seen})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    ))
    print("lifecycle machine:", dict(sorted(seen.items())))
    # Not vacuous: the walks reached rotation, grace retries, theft, replay and faults.
    for outcome in ("200 rotation", "200 grace retry", "400 invalid_grant ends refresh_reuse",
                    "400 invalid_grant ends code_replay", "503 injected fault"):
        assert seen[outcome] > 0, (outcome, seen)
