"""One clock for every time decision (docs/OPERATIONS.md, "One clock"; issue 18).

The clock itself (a reading of the database's clock carried forward by the monotonic clock,
re-read when old), then every decision and every stamp under a reading three days away from
this host's clock: a single comparison still made with the host's clock would show. On
PostgreSQL, the reading is the database's and /readyz reports the drift.
"""

import logging
import math
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import DateTime
from sqlalchemy import select
from sqlalchemy import text

from idp.core import clock as core_clock
from idp.core import secrets as cs
from idp.core.clock import Anchor
from idp.core.clock import utcnow
from idp.infra.config import ConfigError
from idp.infra.config import build_config
from idp.infra.config_checks import check_config
from idp.infra.extensions import db
from idp.store import api_keys
from idp.store import clients
from idp.store import dbclock
from idp.store import last_used as lastused
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Organization
from idp.store.models import RefreshToken
from tests.prod_support import flask_tokens
from tests.prod_support import token_form

T = datetime(2026, 6, 1, 12, 0, 0)
#: How far the reading used below is from this host's clock.
FAR = timedelta(days=3)


class Ticker:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 100.0):
        """Start at ``start`` seconds."""
        self.now = start

    def __call__(self) -> float:
        """The current reading."""
        return self.now


@pytest.fixture
def fresh_clock(monkeypatch):
    """No reading, no first-use hook, a due re-read, a fake monotonic clock; all restored."""
    ticker = Ticker()
    monkeypatch.setattr(core_clock, "_anchor", None)
    monkeypatch.setattr(core_clock, "_first_reading", None)
    monkeypatch.setattr(core_clock, "_offset", timedelta(0))
    monkeypatch.setattr(core_clock, "monotonic", ticker)
    monkeypatch.setattr(dbclock, "_next_due", -math.inf)
    monkeypatch.setattr(dbclock, "_limit", dbclock.DEFAULT_LIMIT_SECONDS)
    return ticker


class FakeCursor:
    """A DB-API cursor whose one query takes ``trip`` seconds and returns ``value``."""

    def __init__(self, connection):
        """Belong to ``connection``."""
        self.connection = connection
        self.closed = False

    def execute(self, statement):
        """Answer the clock query, letting the round trip pass."""
        if self.connection.error:
            raise self.connection.error
        assert statement == dbclock.QUERY
        assert self.connection.autocommit, "read outside any transaction"
        self.connection.ticker.now += self.connection.trip
        self.connection.reads += 1

    def fetchone(self):
        """The database's time."""
        return (self.connection.value,)

    def close(self):
        """Close."""
        self.closed = True


class FakeConnection:
    """Just enough of a psycopg connection for dbclock.read()."""

    def __init__(self, ticker, value, trip=0.2, error=None):
        """A connection whose clock reads ``value``."""
        self.ticker, self.value, self.trip, self.error = ticker, value, trip, error
        self.autocommit, self.closed, self.reads = False, False, 0

    def cursor(self):
        """A fresh cursor."""
        return FakeCursor(self)


# --- the clock --------------------------------------------------------------------------


def test_without_a_reading_the_hosts_clock_is_the_one_clock(fresh_clock, monkeypatch):
    monkeypatch.setattr(core_clock, "host_now", lambda: T)
    assert utcnow() == T
    core_clock.shift(5)
    assert utcnow() == T + timedelta(seconds=5)


def test_a_reading_is_carried_forward_by_the_monotonic_clock_not_the_wall_clock(
        fresh_clock, monkeypatch):
    core_clock.anchor(Anchor(database=T, monotonic=100.0, host_offset=4.0))
    fresh_clock.now = 107.5
    assert utcnow() == T + timedelta(seconds=7.5)
    # The host's wall clock is stepped an hour (NTP, a VM resumed): no decision moves.
    monkeypatch.setattr(core_clock, "host_now", lambda: T + timedelta(hours=1))
    assert utcnow() == T + timedelta(seconds=7.5)


def test_the_test_clock_still_moves_an_anchored_clock(fresh_clock):
    core_clock.anchor(Anchor(database=T, monotonic=100.0, host_offset=0.0))
    core_clock.shift(3600)
    assert utcnow() == T + timedelta(hours=1)
    core_clock.reset()
    assert utcnow() == T, "reset undoes shifts and keeps the reading"


def test_a_reading_is_pinned_to_the_middle_of_its_round_trip(fresh_clock, monkeypatch):
    walls = iter([T + timedelta(seconds=4), T + timedelta(seconds=4.2)])
    monkeypatch.setattr(core_clock, "host_now", lambda: next(walls))
    connection = FakeConnection(fresh_clock, value=T, trip=0.2)
    reading = dbclock.read(connection)
    assert reading.database == T
    assert reading.monotonic == pytest.approx(100.1)
    assert reading.host_offset == pytest.approx(4.1)
    assert connection.autocommit is False, "the connection's own mode is given back"


def test_checkouts_read_the_clock_at_first_and_then_every_half_minute(fresh_clock):
    connection = FakeConnection(fresh_clock, value=T)
    dbclock._read_if_due(connection, None, None)
    assert connection.reads == 1
    assert core_clock.current_anchor().database == T
    fresh_clock.now += dbclock.REMEASURE_SECONDS - 1
    for _ in range(100):  # the hot path: checkouts cost no query between readings
        dbclock._read_if_due(connection, None, None)
    assert connection.reads == 1
    connection.value = T + timedelta(seconds=40)  # the database's clock was stepped
    fresh_clock.now += 1.5
    dbclock._read_if_due(connection, None, None)
    assert connection.reads == 2
    # Read at the middle of its 0.2 s round trip, so 0.1 s has passed since.
    assert utcnow() == T + timedelta(seconds=40.1)


def test_a_failed_reading_keeps_the_last_one_and_is_retried_later(fresh_clock, caplog):
    core_clock.anchor(Anchor(database=T, monotonic=100.0, host_offset=0.0))
    broken = FakeConnection(fresh_clock, value=None, error=OSError("connection lost"))
    with caplog.at_level(logging.WARNING, logger="idp.store.dbclock"):
        dbclock._read_if_due(broken, None, None)
    assert "could not read the database's clock: OSError" in caplog.text
    assert core_clock.current_anchor().database == T
    working = FakeConnection(fresh_clock, value=T + timedelta(hours=1))
    dbclock._read_if_due(working, None, None)
    assert working.reads == 0, "not retried on every checkout while the database is down"
    fresh_clock.now += dbclock.RETRY_SECONDS
    dbclock._read_if_due(working, None, None)
    assert working.reads == 1


def test_a_host_clock_past_the_limit_is_logged(fresh_clock, caplog):
    dbclock.configure(2.0)
    with caplog.at_level(logging.WARNING, logger="idp.store.dbclock"):
        dbclock.settle(Anchor(database=T, monotonic=100.0, host_offset=1.5))
        assert caplog.records == []
        dbclock.settle(Anchor(database=T, monotonic=100.0, host_offset=-5.0))
    assert "this host's clock is -5.000 s off the database's (limit 2 s)" in caplog.text


def test_time_asked_for_before_any_checkout_takes_a_reading_first(fresh_clock):
    calls = []

    def take_reading():
        calls.append(1)
        core_clock.anchor(Anchor(database=T, monotonic=fresh_clock.now, host_offset=0.0))

    core_clock.on_first_use(take_reading)
    assert utcnow() == T
    assert utcnow() == T
    assert calls == [1]


# --- every decision and every stamp, under a reading far from the host's clock -------


@pytest.fixture
def far_clock(clock, monkeypatch):
    """Judge time by a reading three days behind this host's clock for the whole test."""
    monkeypatch.setattr(core_clock, "_anchor", Anchor(
        database=core_clock.host_now() - FAR, monotonic=core_clock.monotonic(),
        host_offset=FAR.total_seconds()))
    # No re-reading of the real database's clock midway.
    monkeypatch.setattr(dbclock, "_next_due", math.inf)
    lastused.forget()
    yield clock
    lastused.forget()


def _me(client, bearer: str):
    """GET /api/v1/me with a bearer."""
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"})


def _refresh(client, demo, raw: str):
    """POST a refresh."""
    return client.post("/oauth/token", data=token_form(
        demo, grant_type="refresh_token", refresh_token=raw))


def test_codes_and_access_tokens_expire_by_the_one_clock(far_clock, app, client, demo):
    tokens = flask_tokens(client, demo)  # the code was judged unexpired
    assert _me(client, tokens["access_token"]).status_code == 200
    far_clock.shift(app.config["IDP_ACCESS_TOKEN_TTL"] + 1)
    response = _me(client, tokens["access_token"])
    assert response.get_json()["error"]["reason"] == "token_expired"


def test_the_grace_window_and_reuse_are_judged_by_the_one_clock(far_clock, app, client, demo):
    first = flask_tokens(client, demo)["refresh_token"]
    successor = _refresh(client, demo, first).get_json()["refresh_token"]
    retry = _refresh(client, demo, first)
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert retry.get_json()["refresh_token"] == successor
    far_clock.shift(app.config["IDP_REFRESH_GRACE_SECONDS"] + 1)
    assert _refresh(client, demo, first).get_json()["error"] == "invalid_grant"


def test_refresh_tokens_and_sessions_expire_by_the_one_clock(far_clock, make_app):
    from idp.cli.demo import seed_demo

    # Lifetimes shorter than the distance to the host's clock, which would judge both over.
    app = make_app(IDP_REFRESH_TOKEN_TTL=24 * 3600, IDP_SESSION_IDLE_SECONDS=12 * 3600)
    with app.app_context():
        demo = seed_demo()
    client = app.test_client()
    first = flask_tokens(client, demo)["refresh_token"]  # signed in: the session is live
    second = _refresh(client, demo, first)
    assert second.status_code == 200, second.get_data(as_text=True)
    far_clock.shift(24 * 3600 + 1)
    assert _refresh(client, demo, second.get_json()["refresh_token"]).status_code == 400
    page = client.get("/settings/connected-apps")
    assert page.status_code == 302 and "/login" in page.headers["Location"], "idle: signed out"


def test_seals_are_cleared_by_the_one_clock(far_clock, app, client, demo):
    first = flask_tokens(client, demo)["refresh_token"]
    second = _refresh(client, demo, first).get_json()["refresh_token"]
    far_clock.shift(app.config["IDP_REFRESH_GRACE_SECONDS"] + 1)
    third = _refresh(client, demo, second).get_json()["refresh_token"]
    assert _refresh(client, demo, second).get_json()["refresh_token"] == third
    with app.app_context():
        seals = {row.digest: row.sealed_successor for row in db.session.scalars(
            select(RefreshToken).where(RefreshToken.digest.in_(
                [cs.digest(first), cs.digest(second)])))}
    assert seals[cs.digest(first)] is None, "past its window: cleared"
    assert seals[cs.digest(second)] is not None, "inside its window: kept"


def test_api_key_expiry_and_last_use_go_by_the_one_clock(far_clock, app, client):
    with app.app_context():
        org = Organization(public_id="org_oneclock", name="One Clock", created_at=utcnow())
        db.session.add(org)
        db.session.flush()
        key, raw = api_keys.create_key(org, "Zap", ["leads:read"], app.config["IDP_SCOPES"],
                                      expires_at=utcnow() + timedelta(days=1))
        db.session.commit()
        key_id = key.id

    def last_used():
        with app.app_context():
            return db.session.get(ApiKey, key_id).last_used_at

    assert _me(client, raw).status_code == 200
    stamped = last_used()
    assert abs(stamped - utcnow()) < timedelta(seconds=5), "stamped by the one clock"
    lastused.forget()  # as another process would
    far_clock.shift(app.config["IDP_LAST_USED_INTERVAL"] - 5)
    assert _me(client, raw).status_code == 200
    assert last_used() == stamped, "within the interval: not written again"
    far_clock.shift(10)
    assert _me(client, raw).status_code == 200
    assert last_used() > stamped
    far_clock.shift(24 * 3600)
    assert _me(client, raw).get_json()["error"]["reason"] == "key_expired"


def test_a_rotated_client_secret_overlaps_by_the_one_clock(far_clock, app, demo):
    old = demo["clients"]["zapier"]["client_secret"]
    with app.app_context():
        row = db.session.scalar(select(Client).where(
            Client.public_id == demo["clients"]["zapier"]["client_id"]))
        clients.rotate_secret(row, 60)
        db.session.commit()
        assert row.check_client_secret(old)
        far_clock.shift(61)
        assert not row.check_client_secret(old)


def test_the_purge_cuts_by_the_one_clock(far_clock, app, client, demo):
    flask_tokens(client, demo)
    runner = app.test_cli_runner()

    def access_tokens():
        with app.app_context():
            return db.session.scalar(select(db.func.count(AccessToken.id)))

    assert runner.invoke(args=["purge"]).exit_code == 0
    assert access_tokens() == 1, "unexpired: kept"
    far_clock.shift(app.config["IDP_ACCESS_TOKEN_TTL"] + 24 * 3600 + 1)
    assert runner.invoke(args=["purge"]).exit_code == 0
    assert access_tokens() == 0


def test_every_time_written_comes_from_the_one_clock(far_clock, app, client, demo):
    tokens = flask_tokens(client, demo)
    _refresh(client, demo, tokens["refresh_token"])
    assert _me(client, demo["api_key"]).status_code == 200
    assert _me(client, tokens["access_token"]).status_code == 200
    cutoff = core_clock.host_now() - FAR / 2
    seen = 0
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for column in table.columns:
                # Expiries lie in the future by design; every other time is a stamp of "now".
                if not isinstance(column.type, DateTime) or "expires" in column.name:
                    continue
                for (value,) in db.session.execute(
                        select(column).where(column.isnot(None))):
                    seen += 1
                    assert value < cutoff, (table.name, column.name, value)
    assert seen > 10


# --- PostgreSQL: the reading is the database's ---------------------------------------


@pytest.fixture
def postgres_app(app):
    """The app, on PostgreSQL only."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the database's clock is read on PostgreSQL; SQLite is single-host, so "
                    "its host clock is the one clock (the SQLite case is tested below)")
    return app


def test_postgresql_time_is_the_databases_and_costs_no_query_per_call(
        postgres_app, client, demo, monkeypatch):
    monkeypatch.setattr(core_clock, "_anchor", None)
    monkeypatch.setattr(dbclock, "_next_due", -math.inf)
    reads = []
    real_read = dbclock.read
    monkeypatch.setattr(dbclock, "read", lambda c: reads.append(1) or real_read(c))
    for _ in range(50):
        assert _me(client, demo["api_key"]).status_code == 200
    assert reads == [1], "one reading for fifty API calls"
    with postgres_app.app_context():
        database = db.session.execute(text(dbclock.QUERY)).scalar()
        assert abs(utcnow() - database) < timedelta(milliseconds=50)


def test_readyz_fails_past_the_limit_and_recovers(postgres_app, client, monkeypatch, caplog):
    ahead = core_clock.host_now
    monkeypatch.setattr(core_clock, "host_now", lambda: ahead() + timedelta(seconds=5))
    with caplog.at_level(logging.WARNING, logger="idp.store.dbclock"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["clock"], body["clock_offset_limit_seconds"]) == (
        "clock_offset", "database", 2)
    assert 4.5 < body["clock_offset_seconds"] < 5.5
    assert "off the database's" in caplog.text
    # Time sync fixed the host's clock: the next probe passes.
    monkeypatch.setattr(core_clock, "host_now", ahead)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert abs(response.get_json()["clock_offset_seconds"]) < 0.5


def test_readyz_on_sqlite_says_the_hosts_clock_is_the_one(app, client):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite only; PostgreSQL reports its offset (above)")
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["clock"] == "host"


# --- the setting -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "must be a number of seconds, got 'abc'"),
    ("0", "must be a positive number of seconds"),
    ("-1", "must be a positive number of seconds"),
    ("nan", "must be a positive number of seconds"),
    ("inf", "must be a positive number of seconds"),
])
def test_the_clock_offset_limit_must_be_a_positive_number(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        check_config(build_config(str(tmp_path), {"IDP_CLOCK_OFFSET_LIMIT": value}))


def test_the_clock_offset_limit_is_two_seconds_unless_set(tmp_path):
    assert build_config(str(tmp_path), {})["IDP_CLOCK_OFFSET_LIMIT"] == 2
    assert build_config(str(tmp_path), {"IDP_CLOCK_OFFSET_LIMIT": "0.5"})[
        "IDP_CLOCK_OFFSET_LIMIT"] == 0.5
