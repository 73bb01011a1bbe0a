"""Builders for the settings-page tests: people, organizations, keys and live connections."""

import functools
import re
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store.models import ApiKey
from idp.store.models import AuditEvent
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Organization
from idp.store.models import User
from idp.store.tokens import issue_pair
from idp.store.tokens import lifetimes
from idp.web import sessions
from tests.helpers import csrf_token

PASSWORD = "correct horse battery staple"
ZAPIER_RETURN = "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"
MAKE_RETURN = "https://www.make.com/oauth/cb/app"
#: Every raw API key the pages could leak.
RAW_KEY = re.compile(r"fe_k_[0-9a-f]{32}")


@functools.cache
def password_hash() -> str:
    """One argon2id hash of PASSWORD per run: hashing costs half a second each time."""
    return accounts.hash_password(PASSWORD)


def add_person(app, email: str, memberships: dict) -> str:
    """A user with ``{org public id: role}`` memberships; returns the email."""
    with app.app_context():
        user = User(public_id=cs.new_public_id("usr_"), email=email,
                    name=email.split("@")[0].title(), password_hash=password_hash(),
                    created_at=utcnow())
        db.session.add(user)
        db.session.flush()
        for org_id, role in memberships.items():
            org = db.session.scalar(select(Organization).where(Organization.public_id == org_id))
            accounts.set_membership(user, org, role)
        db.session.commit()
    return email


def add_membership(app, email: str, org_id: str, role: str) -> None:
    """Give an existing user a role in an organization."""
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id == org_id))
        accounts.set_membership(accounts.find_user(email), org, role)
        db.session.commit()


def world(app) -> dict:
    """Acme Realty with its owner, and the Zapier and Make connectors."""
    org = add_org(app, "Acme Realty")
    owner = add_person(app, "owner@acme-realty.example", {org: "owner"})
    with app.app_context():
        catalogue = app.config["IDP_SCOPES"]
        apps = {}
        for name, uri in (("Zapier", ZAPIER_RETURN), ("Make", MAKE_RETURN)):
            client, secret = clients.create_client(name, [uri], " ".join(catalogue), None,
                                                   catalogue)
            apps[name] = {"client_id": client.public_id, "client_secret": secret,
                          "redirect_uri": uri}
        db.session.commit()
    return {"org": org, "owner": owner, "clients": apps}


def enter(client, app, email: str) -> str:
    """Sign a test client in as ``email`` (the sign-in form has its own tests); the raw id."""
    with app.app_context():
        _, raw = sessions.start(db.session, accounts.find_user(email), utcnow(), app.config,
                                "pytest", "127.0.0.1")
        db.session.commit()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], raw)
    return raw


def add_org(app, name: str) -> str:
    """A new organization; returns its public id."""
    with app.app_context():
        org = accounts.create_org(name)
        db.session.commit()
        return org.public_id


def add_key(app, org_id: str, name: str, scopes=("leads:read",), **changes) -> tuple[str, str]:
    """An API key made through idp.store.api_keys; returns (public id, raw key)."""
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id == org_id))
        key, raw = api_keys.create_key(org, name, list(scopes), app.config["IDP_SCOPES"])
        for attribute, value in changes.items():
            setattr(key, attribute, value)
        db.session.commit()
        return key.public_id, raw


def add_connection(app, email: str, org_id: str, client_name="Zapier",
                   scope="leads:read contacts:read") -> dict:
    """A redeemed connection with a live token pair, as the code exchange would leave it."""
    with app.app_context():
        user = accounts.find_user(email)
        org = db.session.scalar(select(Organization).where(Organization.public_id == org_id))
        client = db.session.scalar(select(Client).where(Client.name == client_name))
        now = utcnow()
        connection = Connection(
            public_id=cs.new_public_id("con_"), user_id=user.id, org_id=org.id,
            client_id=client.id, scope=scope, created_at=now - timedelta(days=3),
            activated_at=now - timedelta(days=3),
        )
        db.session.add(connection)
        db.session.flush()
        body, _ = issue_pair(db.session, connection, lifetimes(client, app.config), scope, scope,
                             now)
        db.session.commit()
        return {"id": connection.public_id, "access": body["access_token"],
                "refresh": body["refresh_token"]}


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
