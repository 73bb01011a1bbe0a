"""GET /api/v1/me (SPEC §5.6), last-use bookkeeping, and what the database never holds."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import last_used
from idp.store.credentials import authenticate
from idp.store.models import ApiKey
from idp.store.models import Connection
from idp.web.unit_of_work import record_use
from tests.bearer_world import build_world


@pytest.fixture
def world(app):
    """Every kind of credential, on the test's database."""
    with app.app_context():
        return build_world(app)


def auth(raw: str) -> dict:
    """A bearer header."""
    return {"Authorization": "Bearer " + raw}


def test_me_for_an_api_key(client, world):
    body = client.get("/api/v1/me", headers=auth(world.keys["good"])).get_json()
    assert body == {
        "type": "api_key",
        "organization": {"id": world.orgs["acme"], "name": "Acme Realty"},
        "user": None,
        "api_key": {"id": world.key_ids["good"], "name": "good"},
        "client": None,
        "scopes": ["contacts:read", "leads:read"],
        "expires_at": None,
    }


def test_me_for_an_oauth_token(client, world):
    response = client.get("/api/v1/me", headers=auth(world.tokens["good"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "oauth" and body["api_key"] is None
    assert body["organization"] == {"id": world.orgs["acme"], "name": "Acme Realty"}
    assert body["user"] == {"id": body["user"]["id"], "email": world.demo["user"]["email"],
                            "name": "Avery Owner"}
    assert body["user"]["id"].startswith("usr_")
    assert body["client"] == {"id": world.demo["clients"]["zapier"]["client_id"],
                              "name": "Zapier"}
    assert body["scopes"] == ["contacts:read", "leads:read"]
    assert body["expires_at"].endswith("Z")


def test_me_needs_no_particular_scope(app, client):
    from idp.cli.demo import seed_demo
    from idp.store import api_keys
    from idp.store.models import Organization

    with app.app_context():
        demo = seed_demo()
        org = db.session.scalar(select(Organization).where(
            Organization.public_id == demo["organization"]["id"]))
        _key, raw = api_keys.create_key(org, "Tasks only", ["tasks:write"],
                                       app.config["IDP_SCOPES"])
        db.session.commit()
    assert client.get("/api/v1/me", headers=auth(raw)).get_json()["scopes"] == ["tasks:write"]


def test_a_key_with_an_expiry_reports_it(app, client):
    from idp.cli.demo import seed_demo
    from idp.store import api_keys
    from idp.store.models import Organization

    with app.app_context():
        seed_demo()
        org = db.session.scalar(select(Organization))
        moment = (utcnow() + timedelta(days=2)).replace(microsecond=0)
        _key, raw = api_keys.create_key(org, "Temp", ["leads:read"], app.config["IDP_SCOPES"],
                                       expires_at=moment)
        db.session.commit()
    assert client.get("/api/v1/me", headers=auth(raw)).get_json()["expires_at"] == \
        moment.isoformat() + "Z"


def row_of(app, model, public_id):
    """Last-use columns of a key or connection."""
    with app.app_context():
        row = db.session.scalar(select(model).where(model.public_id == public_id))
        return row.last_used_at, row.last_used_ip


@pytest.mark.parametrize("kind", ["keys", "tokens"])
def test_last_use_is_written_at_most_once_per_interval(app, client, world, clock, kind):
    model, public_id = ((ApiKey, world.key_ids["good"]) if kind == "keys"
                        else (Connection, world.connections["good"]))
    header = auth(getattr(world, kind)["good"])
    updates = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
    try:
        client.get("/api/v1/me", headers=header, environ_base={"REMOTE_ADDR": "203.0.113.9"})
        first = row_of(app, model, public_id)
        assert first[0] is not None and first[1] == "203.0.113.9"
        assert len(updates) == 1
        for _ in range(5):
            clock.shift(10)
            client.get("/api/v1/me", headers=header,
                       environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert len(updates) == 1, "no write while inside IDP_LAST_USED_INTERVAL (60 s)"
        assert row_of(app, model, public_id) == first
        clock.shift(11)
        client.get("/api/v1/me", headers=header, environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert len(updates) == 2
        later = row_of(app, model, public_id)
        assert later[0] > first[0] and later[1] == "198.51.100.7"
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", record)


def test_the_update_is_conditional_so_racing_processes_write_once(app, world):
    """Another process wrote a moment ago: this one's stale view must not write again."""
    with app.app_context():
        stale = authenticate(db.session, "Bearer " + world.keys["good"], utcnow())
        assert stale.last_used_at is None
        assert record_use(db.session, stale, utcnow(), 60, "192.0.2.1") is True
        last_used.forget()  # as if this were a second process with its own memory
        assert record_use(db.session, stale, utcnow(), 60, "192.0.2.2") is False
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == world.key_ids["good"]))
        assert key.last_used_ip == "192.0.2.1"


class BrokenSession:
    """A session whose writes fail, as under a lock timeout."""

    def __init__(self):
        """Count rollbacks."""
        self.rollbacks = 0

    def commit(self):
        """Reads ended fine."""

    def execute(self, *args, **kwargs):
        """Every write fails."""
        raise OperationalError("UPDATE", {}, Exception("database is locked"))

    def rollback(self):
        """Remember the rollback."""
        self.rollbacks += 1


def test_a_failed_write_never_fails_the_request(app, world, caplog):
    with app.app_context():
        credential = authenticate(db.session, "Bearer " + world.keys["good"], utcnow())
    session = BrokenSession()
    with caplog.at_level(logging.WARNING, logger="idp.web.unit_of_work"):
        assert record_use(session, credential, utcnow(), 60, "192.0.2.1") is False
    assert session.rollbacks == 1
    assert "could not record last use" in caplog.text
    assert world.keys["good"] not in caplog.text


def all_stored_text(app) -> str:
    """Every value of every row of every table, as one string."""
    chunks = []
    with app.app_context():
        for table in inspect(db.engine).get_table_names():
            for row in db.session.execute(text(f'SELECT * FROM "{table}"')):
                chunks.extend(repr(v) for v in row)
    return "\n".join(chunks)


def test_the_database_holds_no_raw_credential(app, client, world, caplog):
    caplog.set_level(logging.DEBUG)
    raws = [*world.keys.values(), *world.tokens.values(), *world.refresh.values(),
            world.resource_server["client_secret"], world.demo["user"]["password"],
            *(c["client_secret"] for c in world.demo["clients"].values()), world.demo["api_key"]]
    for raw in raws:  # use them all, so last-use and audit paths have run too
        client.get("/api/v1/me", headers=auth(raw))
        client.post("/oauth/introspect", data={"token": raw}, auth=(
            world.resource_server["client_id"], world.resource_server["client_secret"]))
    stored = all_stored_text(app)
    assert world.key_ids["good"] in stored, "the dump does contain the rows"
    for raw in raws:
        assert raw not in stored
        assert raw[-12:] not in stored, "not even a long tail of it"
    for raw in [*world.keys.values(), *world.tokens.values(), *world.refresh.values()]:
        assert raw not in caplog.text, "never logged either"
