"""The pieces that keep the hot paths lean still do their jobs (docs/PERFORMANCE.md).

In-process fixed-window counters, the rate limits counted without Flask-Limiter's per-request
hooks, the one-statement read connection, and PostgreSQL's ping of idle connections only.
"""

import functools

import pytest
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import text

from idp.infra import throttle
from idp.infra.extensions import db
from idp.infra.extensions import limiter
from idp.infra.ratelimit import LocalCounters
from idp.infra.ratelimit import count as count_in
from idp.store import database


class FakeClock:
    """Seconds since the epoch that a test moves by hand."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_local_counters_count_within_a_window_and_start_a_new_one_after_it():
    clock = FakeClock()
    counters = LocalCounters(clock=clock)
    assert [counters.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert counters.get("k") == 3
    assert counters.get_expiry("k") == clock.now + 60
    assert counters.incr("other", 60) == 1, "keys count apart"
    clock.now += 59.9
    assert counters.incr("k", 60) == 4, "still the same window"
    clock.now += 0.1
    assert counters.get("k") == 0, "the window has ended"
    assert counters.incr("k", 60) == 1
    assert counters.get_expiry("k") == clock.now + 60


def test_local_counters_give_the_same_usage_as_the_limits_memory_storage():
    clock = FakeClock()
    strategy = FixedWindowRateLimiter(LocalCounters(clock=clock))
    usages = [count_in(strategy, "3 per minute", "key_1", "p", clock=clock) for _ in range(4)]
    assert [u.allowed for u in usages] == [True, True, True, False]
    assert [u.remaining for u in usages] == [2, 1, 0, 0]
    assert usages[-1].limit == 3


def test_local_counters_sweep_ended_windows_and_do_not_rescan_live_ones_per_key():
    clock = FakeClock()
    counters = LocalCounters(clock=clock, sweep_at=4)
    for key in "abcd":
        counters.incr(key, 10)
    clock.now += 10
    counters.incr("e", 10)
    assert set(counters._windows) == {"e"}, "ended windows went with the sweep"
    sweeps = []
    real_sweep = counters._sweep
    counters._sweep = lambda now: (sweeps.append(now), real_sweep(now))
    for key in "fghijklm":  # all live: the threshold doubles instead of sweeping each time
        counters.incr(key, 10)
    assert len(sweeps) <= 2
    assert len(counters._windows) == 9
    counters.clear("e")
    assert counters.get("e") == 0
    assert counters.reset() == 8


def test_flask_limiter_runs_no_per_request_hook(app):
    hooks = [*app.before_request_funcs.get(None, []), *app.after_request_funcs.get(None, []),
             *app.teardown_request_funcs.get(None, [])]
    assert not [hook for hook in hooks if throttle._bound_to_limiter(hook)]
    assert limiter in app.extensions["limiter"], "still initialised for sign-in's decorator"


def test_bound_to_limiter_tells_the_limiters_own_hooks_from_others():
    bare = Flask("bare")
    bare.config["RATELIMIT_STORAGE_URI"] = "memory://"
    limiter.init_app(bare)
    hooks = [*bare.before_request_funcs[None], *bare.after_request_funcs[None],
             *bare.teardown_request_funcs[None]]
    # Flask-Limiter registers a bound method, a partial of a private method, and a teardown.
    assert len(hooks) == 3
    assert all(throttle._bound_to_limiter(hook) for hook in hooks)
    other = Flask("other")
    Limiter(get_remote_address, app=other, storage_uri="memory://")
    assert other.before_request_funcs[None]
    assert not [h for h in other.before_request_funcs[None] if throttle._bound_to_limiter(h)]
    assert not throttle._bound_to_limiter(lambda: None)
    assert not throttle._bound_to_limiter(functools.partial(print, "unrelated"))


def test_memory_storage_counts_in_the_apps_own_counters(make_app):
    app = make_app(IDP_TOKEN_RATE_LIMIT="2 per minute")
    with app.test_request_context("/oauth/token", method="POST"):
        usages = [throttle.count("2 per minute", "oauth.token", "client:x") for _ in range(3)]
    assert [u.allowed for u in usages] == [True, True, False]
    counters = app.extensions["idp.local_counters"]
    assert [counters.get(key) for key in counters._windows] == [3]


def test_reading_runs_one_statement_outside_any_transaction(app):
    with app.app_context():
        with database.reading(db.engine) as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
            if db.engine.dialect.name == "sqlite":
                raw = connection.connection.driver_connection
                assert not raw.in_transaction, "no BEGIN was sent"
            else:
                raw = connection.connection.driver_connection
                assert raw.autocommit is True
                assert raw.info.transaction_status.name == "IDLE", "no BEGIN was sent"


def test_read_then_write_takes_the_write_lock_on_the_same_connection(app):
    with app.app_context():
        database.read_then_write(db.session)
        first = db.session.connection()
        assert first.execute(text("SELECT 1")).scalar() == 1
        database.write_now(db.session)
        assert db.session.connection() is first, "no rollback, no new checkout"
        if db.engine.dialect.name == "sqlite":
            assert first.connection.driver_connection.in_transaction, "BEGIN IMMEDIATE ran"
        db.session.rollback()


def test_postgresql_pings_only_connections_that_sat_idle(app, monkeypatch):
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            pytest.skip("the idle ping is installed for PostgreSQL only")
        pings = []
        real_ping = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping",
                            lambda dbapi_connection: pings.append(1) or real_ping(dbapi_connection))
        clock = FakeClock(500.0)
        monkeypatch.setattr(database.time, "monotonic", clock)
        for _ in range(3):  # busy: handed back and out again at once
            with database.reading(engine) as connection:
                connection.execute(text("SELECT 1"))
        assert pings == []
        clock.now += database.PING_AFTER_IDLE_SECONDS + 0.1
        with database.reading(engine) as connection:
            connection.execute(text("SELECT 1"))
        assert pings == [1], "an idle connection is checked before use"
