"""Build every kind of bearer SPEC §4 talks about, for the tests of the three doors.

One call makes organizations, people, connector clients, API keys and connections in every
state of the table (good, disabled, expired, deleted, ended, unbound ...) with the factories of
tests/factories.py, and returns the raw values, which exist nowhere but in the returned object.
"""

import secrets
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta

from flask import current_app
from flask import g
from flask import jsonify
from sqlalchemy import delete
from sqlalchemy import update

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store.connections import end_connection
from idp.store.models import AccessToken
from idp.store.models import Membership
from idp.web.guard import require_bearer
from tests import factories

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


def _client(name, org_allowlist=None):
    """A connector client with the whole catalogue and a return URL of its own."""
    slug = name.lower().replace(" ", "-")
    client, _secret = factories.connector(name=name, redirect_uris=[f"https://{slug}.example/cb"],
                                          org_allowlist=org_allowlist)
    return client


def build_world(app) -> World:
    """Every row of the §4 table for both kinds; call inside ``app.app_context()``."""
    catalogue = app.config["IDP_SCOPES"]
    demo = factories.demo_data()
    owner = accounts.find_user(demo["user"]["email"])
    acme = factories.org_by_id(demo["organization"]["id"])
    world = World(demo=demo, resource_server=demo["resource_server"])

    other = factories.organization("Other Realty")
    suspended = factories.organization("Suspended Realty")
    world.orgs = {"acme": acme.public_id, "other": other.public_id,
                  "suspended": suspended.public_id}
    leaver = factories.person("leaver@acme-realty.example", name="Lee Leaver")
    stranger = factories.person("owner@other-realty.example", name="Olly Other")
    factories.membership(leaver, acme, "admin")
    factories.membership(stranger, other, "owner")
    factories.membership(owner, suspended, "owner")

    def key(name, org=acme, scopes=READ_SCOPES, creator=owner, **changes):
        row, raw = factories.api_key(org, name, scopes, creator=creator, **changes)
        world.keys[name] = raw
        world.key_ids[name] = row.public_id
        return row

    key("good")
    key("all scopes", scopes=list(catalogue))
    key("other org", org=other, creator=stranger)
    issuer = current_app.config["IDP_ISSUER"]
    api_keys.set_active(key("disabled"), False, issuer=issuer)
    # Past dates cannot be chosen at creation; the factory sets this one afterwards.
    key("expired", expires_at=utcnow() - timedelta(minutes=5))
    api_keys.revoke(key("deleted"), issuer=issuer)
    key("suspended org", org=suspended)
    key("creator left", creator=leaver)

    zapier = clients.get_client(demo["clients"]["zapier"]["client_id"])
    off_app = _client("Switched Off App")
    fenced_app = _client("Fenced App", org_allowlist=[acme.id])

    def token(name, user=owner, org=acme, client=zapier, scopes=READ_SCOPES):
        connection, body = factories.connection(user, org, client, scope=" ".join(scopes))
        world.tokens[name] = body["access_token"]
        world.refresh[name] = body["refresh_token"]
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
    end_connection(db.session, ended, "disconnected", utcnow(), actor="test", issuer=issuer)
    clients.set_enabled(off_app, False, issuer=issuer)
    fenced_app.org_allowlist = [other.id]
    db.session.execute(delete(Membership).where(Membership.user_id == leaver.id))
    suspended.suspended = True
    world.connections = {k: v.public_id for k, v in world.connections.items()}
    db.session.commit()
    return world


def new_resource_server(name="Leads API") -> dict:
    """Register one more resource server; returns its raw credentials."""
    server, secret = factories.resource_server(name)
    db.session.commit()
    return {"client_id": server.public_id, "client_secret": secret}


def random_key() -> str:
    """A well-formed API key that was never issued."""
    return "fe_k_" + secrets.token_hex(16)


def random_access_token() -> str:
    """A well-formed access token that was never issued."""
    return "fe_at_" + secrets.token_urlsafe(32)
