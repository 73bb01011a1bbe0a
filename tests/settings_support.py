"""Builders for the settings-page tests: people, organizations, keys and live connections.

Each builder is a thin composition of the factories in tests/factories.py.
"""

import re
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import user_sessions
from idp.store.models import ApiKey
from idp.store.models import AuditEvent
from idp.store.models import Connection
from tests.factories import PASSWORD  # noqa: F401 (the settings tests import it from here)
from tests.factories import AppFactory
from tests.helpers import csrf_token

ZAPIER_RETURN = "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"
MAKE_RETURN = "https://www.make.com/oauth/cb/app"
#: Every raw API key the pages could leak.
RAW_KEY = re.compile(r"fe_k_[0-9a-f]{32}")


def add_person(app, email: str, memberships: dict) -> str:
    """A user with ``{org public id: role}`` memberships; returns the email."""
    return AppFactory(app).person(email, memberships)


def add_membership(app, email: str, org_id: str, role: str) -> None:
    """Give an existing user a role in an organization."""
    AppFactory(app).member(email, org_id, role)


def world(app) -> dict:
    """Acme Realty with its owner, and the Zapier and Make connectors (one return URL each)."""
    make = AppFactory(app)
    org = make.org("Acme Realty")
    owner = make.person("owner@acme-realty.example", {org: "owner"})
    apps = {}
    for kind, uri in (("zapier", ZAPIER_RETURN), ("make", MAKE_RETURN)):
        creds = make.connector(kind, redirect_uris=[uri])
        apps[kind.title()] = {**creds, "redirect_uri": uri}
    return {"org": org, "owner": owner, "clients": apps}


def enter(client, app, email: str) -> str:
    """Sign a test client in as ``email`` (the sign-in form has its own tests); the raw id."""
    with app.app_context():
        _, raw = user_sessions.start(db.session, accounts.find_user(email), utcnow(), app.config,
                                "pytest", "127.0.0.1")
        db.session.commit()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], raw)
    return raw


def add_org(app, name: str) -> str:
    """A new organization; returns its public id."""
    return AppFactory(app).org(name)


def add_key(app, org_id: str, name: str, scopes=("leads:read",), **changes) -> tuple[str, str]:
    """An API key made through idp.store.api_keys; returns (public id, raw key)."""
    return AppFactory(app).key(org_id, name, scopes, **changes)


def add_connection(app, email: str, org_id: str, client_name="Zapier",
                   scope="leads:read contacts:read") -> dict:
    """A redeemed connection, three days old, with a live token pair issued now."""
    return AppFactory(app).connection(email, org_id, client_name, scope=scope,
                                      age=timedelta(days=3))


def post_form(client, page_url: str, action: str, data=None, **kwargs):
    """POST ``data`` to ``action`` with the CSRF token of the page at ``page_url``."""
    page = client.get(page_url)
    token = csrf_token(page.get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **(data or {})}, **kwargs)


def key_row(app, public_id: str) -> ApiKey | None:
    """The key as stored now (None once revoked)."""
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        if key is not None:
            db.session.expunge(key)
        return key


def key_row_id(app, name: str) -> str:
    """The public id of the key with this name."""
    with app.app_context():
        return db.session.scalar(select(ApiKey.public_id).where(ApiKey.name == name))


def connection_row(app, public_id: str) -> Connection:
    """The connection as stored now."""
    with app.app_context():
        connection = db.session.scalar(select(Connection).where(Connection.public_id == public_id))
        db.session.expunge(connection)
        return connection


def events(app, event: str | None = None) -> list[AuditEvent]:
    """Audit events, oldest first, optionally of one kind."""
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if event:
            query = query.where(AuditEvent.event == event)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        return rows


def key_count(app) -> int:
    """How many API keys exist."""
    with app.app_context():
        return db.session.scalar(select(func.count(ApiKey.id)))


def database_text(app) -> bytes:
    """Everything the database holds, as bytes: the SQLite files, or every PostgreSQL row."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        db.session.remove()
        if url.startswith("sqlite:///"):
            db.engine.dispose()
            path = url.removeprefix("sqlite:///")
            data = b""
            for suffix in ("", "-wal", "-journal"):
                try:
                    with open(path + suffix, "rb") as handle:
                        data += handle.read()
                except FileNotFoundError:
                    continue
            return data
        with db.engine.connect() as conn:
            tables = conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            rows = []
            for table in tables:
                rows += conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            return "\n".join(rows).encode()
