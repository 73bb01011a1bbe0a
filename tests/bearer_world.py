"""Build every kind of bearer SPEC §4 talks about, for the tests of the three doors.

One call makes organizations, people, connector clients, API keys and connections in every
state of the table (good, disabled, expired, deleted, ended, unbound ...) and returns the raw
values, which exist nowhere but in the returned object.
"""

import secrets
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta

from flask import g
from flask import jsonify
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from idp.cli.demo import seed_demo
from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store import resource_servers
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import User
from idp.store.tokens import end_connection
from idp.store.tokens import issue_pair
from idp.store.tokens import lifetimes
from idp.web.guard import require_bearer

#: The scope the "missing scope" rows lack, and the test route of the IdP that needs it.
WRITE_SCOPE = "leads:write"
SCOPED_PATH = "/test/leads-write"
#: Scopes of the ordinary credentials: they may read leads, not write them.
READ_SCOPES = ["leads:read", "contacts:read"]


@require_bearer(WRITE_SCOPE)
def scoped_view():
    """An IdP view that needs leads:write, for the §4 insufficient_scope row."""
    return jsonify(org_id=g.credential.org_id)


def add_scoped_route(app) -> None:
    """Mount :func:`scoped_view` on an IdP app (before its first request)."""
    app.add_url_rule(SCOPED_PATH, "test_scoped", scoped_view)


@dataclass
class World:
    """Raw credentials by name, plus the ids a test needs to check answers."""

    demo: dict
    resource_server: dict
    keys: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    refresh: dict = field(default_factory=dict)
    orgs: dict = field(default_factory=dict)
    connections: dict = field(default_factory=dict)
    key_ids: dict = field(default_factory=dict)


def connect(user, org, client, scopes, config) -> tuple[str, str, Connection]:
    """A live connection with one access/refresh pair; returns both raw tokens."""
    now = utcnow()
    connection = Connection(
        public_id=cs.new_public_id("con_"), user_id=user.id, org_id=org.id, client_id=client.id,
        scope=" ".join(sorted(scopes)), created_at=now, activated_at=now,
    )
    db.session.add(connection)
    db.session.flush()
    scope = " ".join(sorted(scopes))
    body, _row = issue_pair(db.session, connection, lifetimes(client, config), scope, scope, now)
    return body["access_token"], body["refresh_token"], connection


def _client(name, org_allowlist=None):
    """A connector client with the whole catalogue."""
    from flask import current_app

    catalogue = current_app.config["IDP_SCOPES"]
    client, _secret = clients.create_client(
        name, [f"https://{name.lower().replace(' ', '-')}.example/cb"], " ".join(catalogue),
        None, catalogue, org_allowlist=org_allowlist,
    )
    db.session.flush()
    return client


def person(email: str, name: str, like) -> User:
    """A user who never signs in: borrows a hash instead of paying for argon2 again."""
    user = User(public_id=cs.new_public_id("usr_"), email=email, name=name,
                password_hash=like.password_hash, created_at=utcnow())
    db.session.add(user)
    return user


def build_world(app) -> World:
    """Every row of the §4 table for both kinds; call inside ``app.app_context()``."""
    config = app.config
    catalogue = config["IDP_SCOPES"]
    demo = seed_demo()
    owner = accounts.find_user(demo["user"]["email"])
    acme = db.session.scalar(
        select(Organization).where(Organization.public_id == demo["organization"]["id"]))
    world = World(demo=demo, resource_server=demo["resource_server"])

    other = accounts.create_org("Other Realty")
    suspended = accounts.create_org("Suspended Realty")
    db.session.flush()
    world.orgs = {"acme": acme.public_id, "other": other.public_id,
                  "suspended": suspended.public_id}
    leaver = person("leaver@acme-realty.example", "Lee Leaver", owner)
    stranger = person("owner@other-realty.example", "Olly Other", owner)
    db.session.flush()
    accounts.set_membership(leaver, acme, "admin")
    accounts.set_membership(stranger, other, "owner")
    accounts.set_membership(owner, suspended, "owner")
    db.session.flush()

    def key(name, org=acme, scopes=READ_SCOPES, creator=owner, **kwargs):
        row, raw = api_keys.create_key(org, name, list(scopes), catalogue, created_by=creator,
                                      **kwargs)
        db.session.flush()
        world.keys[name] = raw
        world.key_ids[name] = row.public_id
        return row

    key("good")
    key("all scopes", scopes=list(catalogue))
    key("other org", org=other, creator=stranger)
    disabled = key("disabled")
    api_keys.set_active(disabled, False)
    expired = key("expired", expires_at=utcnow() + timedelta(days=1))
    deleted = key("deleted")
    api_keys.revoke(deleted)
    key("suspended org", org=suspended)
    key("creator left", creator=leaver)
    db.session.flush()
    # Past dates cannot be chosen at creation; move this one into the past afterwards.
    db.session.execute(update(ApiKey).where(ApiKey.id == expired.id)
                       .values(expires_at=utcnow() - timedelta(minutes=5)))

    zapier = clients.get_client(demo["clients"]["zapier"]["client_id"])
    off_app = _client("Switched Off App")
    fenced_app = _client("Fenced App", org_allowlist=[acme.id])

    def token(name, user=owner, org=acme, client=zapier, scopes=READ_SCOPES):
        access, refresh, connection = connect(user, org, client, scopes, config)
        world.tokens[name] = access
        world.refresh[name] = refresh
        world.connections[name] = connection
        return connection

    token("good")
    token("all scopes", scopes=list(catalogue))
    token("other org", user=stranger, org=other)
    expired_conn = token("expired")
    ended = token("revoked")
    token("client disabled", client=off_app)
    token("membership removed", user=leaver)
    token("suspended org", org=suspended)
    token("allowlist dropped", client=fenced_app)
    db.session.flush()
    db.session.execute(update(AccessToken).where(AccessToken.connection_id == expired_conn.id)
                       .values(expires_at=utcnow() - timedelta(minutes=5)))
    end_connection(db.session, ended, "disconnected", utcnow(), actor="test")
    clients.set_enabled(off_app, False)
    fenced_app.org_allowlist = [other.id]
    db.session.execute(delete(Membership).where(Membership.user_id == leaver.id))
    suspended.suspended = True
    world.connections = {k: v.public_id for k, v in world.connections.items()}
    db.session.commit()
    return world


def new_resource_server(name="Leads API") -> dict:
    """Register one more resource server; returns its raw credentials."""
    server, secret = resource_servers.create(name)
    db.session.commit()
    return {"client_id": server.public_id, "client_secret": secret}


def random_key() -> str:
    """A well-formed API key that was never issued."""
    return "fe_k_" + secrets.token_hex(16)


def random_access_token() -> str:
    """A well-formed access token that was never issued."""
    return "fe_at_" + secrets.token_urlsafe(32)
