"""The outbox (docs/ssf.md, "The path of one event", item 1): every kill and every restoration
commits exactly one event with its change, through the same path an operator, a person or a
connector takes; a change rolled back or failing at COMMIT leaves no event."""

import pytest
from sqlalchemy import func
from sqlalchemy import select

from idp.core import ssf_events
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import api_keys
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import ResourceServer
from idp.store.models import SsfEvent
from idp.store.models import User
from tests.factories import AppFactory
from tests.helpers import flask_sign_in
from tests.oauth_helpers import ISSUER
from tests.oauth_helpers import client_row
from tests.oauth_helpers import connect
from tests.oauth_helpers import exchange
from tests.oauth_helpers import new_code
from tests.oauth_helpers import only_connection
from tests.oauth_helpers import org_row
from tests.oauth_helpers import refresh
from tests.settings_support import post_form

PAUSED = ssf_events.access_paused(ISSUER)
RESUMED = ssf_events.access_resumed(ISSUER)
MEMBER = "morgan@acme-realty.example"


class World:
    """The demo, its test client and clock, and the ids a row's subject names."""

    def __init__(self, app, client, demo, clock):
        """Hold the fixtures."""
        self.app, self.client, self.demo, self.clock = app, client, demo, clock
        self.org = demo["organization"]["id"]
        self.zapier = demo["clients"]["zapier"]["client_id"]

    def cli(self, *args) -> None:
        """Run one operator command; it must succeed."""
        with self.app.app_context():
            result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output

    def row(self, model, **where):
        """One row as the database holds it now (its columns only)."""
        with self.app.app_context():
            row = db.session.scalar(select(model).filter_by(**where))
            if row is not None:
                db.session.expunge(row)
            return row

    def key_id(self) -> str:
        """The demo key's public id."""
        return self.row(ApiKey).public_id

    def user_id(self, email: str) -> str:
        """A person's public id."""
        return self.row(User, email=email).public_id

    def other_org(self) -> str:
        """A second organization, made for the row."""
        return AppFactory(self.app).org("Bayside Homes")

    def allowlist(self, *org_ids: str) -> None:
        """Set Zapier's allowlist directly (the setup of an allowlist row)."""
        with self.app.app_context():
            pks = [db.session.scalar(select(Organization.id).filter_by(public_id=org))
                   for org in org_ids]
            client_row(self.demo).org_allowlist = pks
            db.session.commit()


def connection_subject(world) -> dict:
    """The ids of the demo's only connection."""
    with world.app.app_context():
        connection = only_connection()
        return {"connection": connection.public_id, "user": connection.user.public_id,
                "org": world.org, "client": world.zapier}


def disconnected(world):
    """Disconnect on Connected Apps, by the person who connected."""
    connect(world.client, world.demo)
    ids = connection_subject(world)
    url = f"/settings/connected-apps/{ids['connection']}/disconnect"
    assert post_form(world.client, url, url).status_code == 302
    return ids


def revoked(world):
    """RFC 7009 revocation by the connector."""
    body = connect(world.client, world.demo)
    creds = world.demo["clients"]["zapier"]
    response = world.client.post("/oauth/revoke", data={
        "token": body["refresh_token"], "client_id": creds["client_id"],
        "client_secret": creds["client_secret"]})
    assert response.status_code == 200
    return connection_subject(world)


def refresh_reuse(world):
    """A rotated refresh token presented after its grace window."""
    body = connect(world.client, world.demo)
    assert refresh(world.client, world.demo, body["refresh_token"]).status_code == 200
    world.clock.shift(61)
    assert refresh(world.client, world.demo, body["refresh_token"]).status_code == 400
    return connection_subject(world)


def code_replay(world):
    """An authorization code redeemed twice."""
    code, verifier = new_code(world.client, world.demo)
    assert exchange(world.client, world.demo, code, verifier).status_code == 200
    assert exchange(world.client, world.demo, code, verifier).status_code == 400
    return connection_subject(world)


def api_key_disabled(world):
    """``flask api-key disable``."""
    world.cli("api-key", "disable", world.key_id())
    assert world.row(ApiKey).active is False
    return {"api_key": world.key_id()}


def api_key_enabled(world):
    """``flask api-key enable`` of a disabled key."""
    world.cli("api-key", "disable", world.key_id())
    yield
    world.cli("api-key", "enable", world.key_id())
    assert world.row(ApiKey).active is True
    return {"api_key": world.key_id()}


def api_key_revoked(world):
    """Revoke on the API Keys page."""
    key_id = world.key_id()
    flask_sign_in(world.client, world.demo)
    url = f"/settings/api-keys/{key_id}/revoke"
    assert post_form(world.client, url, url).status_code == 302
    assert world.row(ApiKey) is None
    return {"api_key": key_id}


def client_disabled(world):
    """``flask client disable``."""
    world.cli("client", "disable", world.zapier)
    assert world.row(Client, public_id=world.zapier).enabled is False
    return {"client": world.zapier}


def client_enabled(world):
    """``flask client enable`` of a disabled client."""
    world.cli("client", "disable", world.zapier)
    yield
    world.cli("client", "enable", world.zapier)
    assert world.row(Client, public_id=world.zapier).enabled is True
    return {"client": world.zapier}


def org_suspended(world):
    """``flask suspend-org``."""
    world.cli("suspend-org", world.org)
    assert world.row(Organization, public_id=world.org).suspended is True
    return {"org": world.org}


def org_restored(world):
    """``flask suspend-org --undo`` of a suspended organization."""
    world.cli("suspend-org", world.org)
    yield
    world.cli("suspend-org", world.org, "--undo")
    assert world.row(Organization, public_id=world.org).suspended is False
    return {"org": world.org}


def membership_removed(world):
    """``flask remove-member``."""
    AppFactory(world.app).person(MEMBER, {world.org: "member"})
    yield
    world.cli("remove-member", MEMBER, world.org)
    assert world.row(Membership, user_id=world.row(User, email=MEMBER).id) is None
    return {"user": world.user_id(MEMBER), "org": world.org}


def membership_restored(world):
    """``flask add-member`` of a person who is not a member."""
    AppFactory(world.app).person(MEMBER)
    yield
    world.cli("add-member", MEMBER, world.org)
    assert world.row(Membership, user_id=world.row(User, email=MEMBER).id).role == "member"
    return {"user": world.user_id(MEMBER), "org": world.org}


def org_disallowed(world):
    """``flask client update --org``, leaving one organization off the allowlist."""
    other = world.other_org()
    world.allowlist(world.org, other)
    yield
    world.cli("client", "update", world.zapier, "--org", world.org)
    return {"client": world.zapier, "org": other}


def org_allowed(world):
    """``flask client update --org``, putting an organization back on the allowlist."""
    other = world.other_org()
    world.allowlist(world.org)
    yield
    world.cli("client", "update", world.zapier, "--org", world.org, "--org", other)
    return {"client": world.zapier, "org": other}


def resource_server_disabled(world):
    """``flask resource-server disable``."""
    rs = world.demo["resource_server"]["client_id"]
    world.cli("resource-server", "disable", rs)
    assert world.row(ResourceServer, public_id=rs).enabled is False
    return {"resource_server": rs}


#: One row per kind of docs/ssf.md's event table: the real path, the type it is told as.
TABLE = [
    (disconnected, ssf_events.SESSION_REVOKED),
    (revoked, ssf_events.SESSION_REVOKED),
    (refresh_reuse, ssf_events.SESSION_REVOKED),
    (code_replay, ssf_events.SESSION_REVOKED),
    (api_key_disabled, PAUSED),
    (api_key_enabled, RESUMED),
    (api_key_revoked, ssf_events.CREDENTIAL_CHANGE),
    (client_disabled, PAUSED),
    (client_enabled, RESUMED),
    (org_suspended, PAUSED),
    (org_restored, RESUMED),
    (membership_removed, PAUSED),
    (membership_restored, RESUMED),
    (org_disallowed, PAUSED),
    (org_allowed, RESUMED),
    (resource_server_disabled, PAUSED),
]


def events(app) -> list[SsfEvent]:
    """Every committed event, oldest first, read on a fresh session."""
    with app.app_context():
        rows = list(db.session.scalars(select(SsfEvent).order_by(SsfEvent.id)))
        db.session.expunge_all()
        return rows


def run(change, world) -> dict:
    """Run a row: a generator row sets up before its ``yield`` and changes after it; the ids
    it returns are what the event's subject must name. The setup's own events are dropped."""
    result = change(world)
    if not hasattr(result, "send"):
        return result, 0
    next(result)
    before = len(events(world.app))
    try:
        next(result)
    except StopIteration as done:
        return done.value, before
    raise AssertionError("a row yields once")


def test_the_table_has_every_kind():
    assert sorted(change.__name__ for change, _ in TABLE) == sorted(ssf_events.KINDS)


@pytest.mark.parametrize("change, event_type", TABLE, ids=[row[0].__name__ for row in TABLE])
def test_each_change_commits_exactly_one_event(app, client, demo, clock, change, event_type):
    world = World(app, client, demo, clock)
    ids, setup_events = run(change, world)
    made = events(app)[setup_events:]
    kind = change.__name__
    assert [event.kind for event in made] == [kind]
    event = made[0]
    assert event.event_type == event_type
    assert event.subject == ssf_events.subject(kind, ids)
    assert event.payload["reason"] == kind
    assert event.stream_id is None and event.seq is None
    assert event.public_id.startswith("evt_")


@pytest.mark.parametrize("command", [
    ("api-key", "enable", "{key}"),
    ("client", "enable", "{zapier}"),
    ("suspend-org", "{org}", "--undo"),
    ("resource-server", "enable", "{rs}"),
    ("add-member", "{email}", "{org}", "--role", "admin"),
    ("client", "update", "{zapier}", "--any-org"),
    ("client", "update", "{zapier}", "--name", "Zapier (renamed)"),
], ids=["key already enabled", "client already enabled", "org not suspended",
        "enabling a server", "role change", "allowlist already empty", "name change"])
def test_no_real_change_no_event(app, client, demo, clock, command):
    world = World(app, client, demo, clock)
    values = {"key": world.key_id(), "zapier": world.zapier, "org": world.org,
              "rs": demo["resource_server"]["client_id"], "email": demo["user"]["email"]}
    world.cli(*(part.format(**values) for part in command))
    assert events(app) == []


def test_twice_is_one_event(app, client, demo, clock):
    world = World(app, client, demo, clock)
    for _ in range(2):
        world.cli("api-key", "disable", world.key_id())
        world.cli("client", "disable", world.zapier)
        world.cli("suspend-org", world.org)
        world.cli("resource-server", "disable", demo["resource_server"]["client_id"])
    assert [event.kind for event in events(app)] == [
        "api_key_disabled", "client_disabled", "org_suspended", "resource_server_disabled"]


def test_an_allowlist_from_any_org_names_the_organizations_that_lose_the_client(
        app, client, demo, clock):
    world = World(app, client, demo, clock)
    connect(client, demo)
    other = world.other_org()
    # Only the demo org has a connection of Zapier: it is the one a resource server may hold.
    world.cli("client", "update", world.zapier, "--org", other)
    assert [(e.kind, e.subject["tenant"]["id"]) for e in events(app)] == [
        ("org_disallowed", world.org)]
    world.cli("client", "update", world.zapier, "--any-org")
    assert [(e.kind, e.subject["tenant"]["id"]) for e in events(app)][1:] == [
        ("org_allowed", world.org)]


def test_a_manager_disconnecting_anothers_connection_acts_as_admin(app, client, demo, clock):
    world = World(app, client, demo, clock)
    factory = AppFactory(app)
    factory.person(MEMBER, {world.org: "member"})
    connection = factory.connection(MEMBER, world.org)
    flask_sign_in(client, demo)
    url = f"/settings/connected-apps/{connection['id']}/disconnect"
    assert post_form(client, url, url).status_code == 302
    [event] = events(app)
    assert event.kind == "disconnected" and event.payload["initiating_entity"] == "admin"


def test_an_operator_ending_a_connection_is_an_admin_revocation(app, client, demo, clock):
    world = World(app, client, demo, clock)
    connect(client, demo)
    world.cli("connection", "end", connection_subject(world)["connection"])
    [event] = events(app)
    assert event.kind == "revoked" and event.payload["initiating_entity"] == "admin"


def test_a_rolled_back_change_leaves_no_event(app, demo):
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        api_keys.set_active(key, False, issuer=ISSUER)
        db.session.flush()
        assert db.session.scalar(select(func.count(SsfEvent.id))) == 1
        db.session.rollback()
    with app.app_context():
        assert db.session.scalar(select(ApiKey.active)) is True
        assert db.session.scalar(select(func.count(SsfEvent.id))) == 0


def test_a_fault_at_commit_leaves_neither_change_nor_event(app, demo, monkeypatch):
    world = World(app, None, demo, None)
    key_id = world.key_id()
    with app.app_context():
        dialect = db.engine.dialect

    def failing_commit(dbapi_connection):
        # What a COMMIT that fails does on either database: the transaction is aborted.
        dbapi_connection.rollback()
        raise dialect.loaded_dbapi.OperationalError("disk I/O error (injected at COMMIT)")

    monkeypatch.setattr(dialect, "do_commit", failing_commit)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["api-key", "disable", key_id])
    assert result.exit_code != 0
    monkeypatch.undo()
    with app.app_context():
        assert db.session.scalar(select(ApiKey.active)) is True
        assert db.session.scalar(select(func.count(SsfEvent.id))) == 0
    # The same change, committed for real, has its event.
    world.cli("api-key", "disable", key_id)
    assert [event.kind for event in events(app)] == ["api_key_disabled"]


def test_stream_only_kinds_need_their_stream(app):
    from idp.store import outbox

    with app.app_context(), pytest.raises(ValueError, match="stream"):
        outbox.emit(db.session, "verification", utcnow(), issuer=ISSUER, state="x")
    with app.app_context(), pytest.raises(ValueError):
        outbox.emit(db.session, "api_key_revoked", utcnow(), issuer=ISSUER)


def test_suspending_through_the_store_reports_a_real_change(app, demo):
    from idp.store import accounts

    with app.app_context():
        org = org_row(demo)
        assert accounts.set_suspended(org, True, issuer=ISSUER) is True
        assert accounts.set_suspended(org, True, issuer=ISSUER) is False
        db.session.commit()
    assert [event.kind for event in events(app)] == ["org_suspended"]
