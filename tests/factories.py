"""Factories: the one way tests make organizations, people, connectors, keys and connections.

Every row is made by the IdP's own store functions (``idp.store``), so test data stays what the
product would have made. The plain functions work inside an app context and only flush, so a
builder can compose several in one transaction; :class:`AppFactory` (the ``factory`` fixture)
runs one in its own app context, commits, and answers plain values (public ids, raw secrets).
The ``demo`` fixture is the demo seed's data made from these pieces.
"""

import secrets
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store import presets
from idp.store import resource_servers
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import ResourceServer
from idp.store.models import User
from idp.store.tokens import issue_pair
from idp.store.tokens import lifetimes

#: The password of people the factories make, unless a test gives another.
PASSWORD = "correct horse battery staple"
#: The demo seed's names, so data made here and by ``flask seed-demo`` is the same.
DEMO_ORG = "Acme Realty"
DEMO_EMAIL = "owner@acme-realty.example"
DEMO_NAME = "Avery Owner"
DEMO_RESOURCE_SERVER = "FlowEstate API (demo)"
DEMO_KEY_NAME = "Demo key"
#: What a connection is granted unless a test says otherwise.
CONNECTION_SCOPE = "contacts:read leads:read"


def catalogue() -> dict:
    """The app's scope catalogue."""
    return current_app.config["IDP_SCOPES"]


# --- rows, inside an app context (flushed, not committed) --------------------------------------

def organization(name: str = DEMO_ORG, *, suspended: bool = False) -> Organization:
    """An organization, active unless ``suspended``."""
    org = accounts.create_org(name)
    org.suspended = suspended
    db.session.flush()
    return org


def person(email: str = DEMO_EMAIL, *, name: str | None = None,
           password: str = PASSWORD) -> User:
    """A person who can sign in with ``password`` (hashed at the tests' low argon2 cost)."""
    user = accounts.create_user(email, name or email.split("@")[0].title(), password)
    db.session.flush()
    return user


def membership(user: User, org: Organization, role: str = "owner") -> Membership:
    """Give ``user`` a role in ``org`` (replacing an earlier one)."""
    row = accounts.set_membership(user, org, role)
    db.session.flush()
    return row


def connector(kind: str = "zapier", *, name: str | None = None,
              app_id: str = presets.DEMO_ZAPIER_APP_ID, redirect_uris=None, scopes=None,
              **options) -> tuple[Client, str]:
    """A connector client registered with a preset's name and redirect URIs (``zapier`` or
    ``make``), allowed the whole catalogue unless ``scopes`` says otherwise; ``options`` go to
    :func:`idp.store.clients.create_client` (org_allowlist, lifetimes, require_pkce, actor).
    Returns the row and its raw secret."""
    chosen = presets.preset(kind, app_id if kind == "zapier" else None)
    whole = catalogue()
    client, secret = clients.create_client(
        name or chosen.name, list(redirect_uris or chosen.redirect_uris),
        " ".join(scopes or whole), None, whole, **options)
    db.session.flush()
    return client, secret


def resource_server(name: str = "Leads API") -> tuple[ResourceServer, str]:
    """A resource server; returns the row and its raw secret."""
    server, secret = resource_servers.create(name)
    db.session.flush()
    return server, secret


def api_key(org: Organization, name: str = "Key", scopes=("leads:read",), *,
            creator: User | None = None, **changes) -> tuple[ApiKey, str]:
    """An API key of ``org``; ``changes`` are set on the row afterwards (``expires_at`` in the
    past, ``active=False`` ...). Returns the row and the raw ``fe_k_`` value."""
    key, raw = api_keys.create_key(org, name, list(scopes), catalogue(), created_by=creator)
    for attribute, value in changes.items():
        setattr(key, attribute, value)
    db.session.flush()
    return key, raw


def connection(user: User, org: Organization, client: Client, *,
               scope: str = CONNECTION_SCOPE, age: timedelta = timedelta(0),
               label: str | None = None) -> tuple[Connection, dict]:
    """A connected (redeemed) connection made ``age`` ago with one live token pair issued now,
    as the code exchange leaves it. Returns the row and the token body (access_token,
    refresh_token ...)."""
    scope = " ".join(sorted(scope.split()))
    now = utcnow()
    row = Connection(public_id=cs.new_public_id("con_"), user_id=user.id, org_id=org.id,
                     client_id=client.id, scope=scope, created_at=now - age,
                     activated_at=now - age, label=label)
    db.session.add(row)
    db.session.flush()
    body, _ = issue_pair(db.session, row, lifetimes(client, current_app.config), scope, scope,
                         now)
    return row, body


def client_credentials(client: Client, secret: str) -> dict:
    """How tests hold a connector: its id, raw secret and redirect URIs."""
    return {"client_id": client.public_id, "client_secret": secret,
            "redirect_uris": list(client.redirect_uris)}


def demo_data(*, password: str | None = None) -> dict:
    """The demo seed's data (the owner of Acme Realty, Zapier, Make, a resource server and an
    all-scopes key), committed; the same answer as ``flask seed-demo --json``."""
    password = password or secrets.token_urlsafe(12)
    org = organization(DEMO_ORG)
    owner = person(DEMO_EMAIL, name=DEMO_NAME, password=password)
    membership(owner, org, "owner")
    zapier = connector("zapier")
    make = connector("make")
    server, server_secret = resource_server(DEMO_RESOURCE_SERVER)
    _, key = api_key(org, DEMO_KEY_NAME, list(catalogue()), creator=owner)
    db.session.commit()
    return {
        "user": {"email": owner.email, "password": password},
        "organization": {"id": org.public_id, "name": org.name},
        "clients": {"zapier": client_credentials(*zapier), "make": client_credentials(*make)},
        "resource_server": {"client_id": server.public_id, "client_secret": server_secret},
        "api_key": key,
    }


# --- finding what a factory made, by the values tests hold ------------------------------------

def org_by_id(public_id: str) -> Organization:
    """The organization with this public id."""
    return db.session.scalar(select(Organization).where(Organization.public_id == public_id))


def client_by_name(name: str) -> Client:
    """The connector client with this name."""
    return db.session.scalar(select(Client).where(Client.name == name))


# --- one committed change per call, from outside an app context -------------------------------

@contextmanager
def committing(app):
    """An app context whose session is committed when the block ends without error."""
    with app.app_context():
        yield
        db.session.commit()


class AppFactory:
    """The factories for tests that hold an app rather than an app context: each call commits
    and answers plain values."""

    def __init__(self, app) -> None:
        """Make rows in ``app``'s database."""
        self.app = app

    def org(self, name: str = DEMO_ORG, **options) -> str:
        """An organization; its public id."""
        with committing(self.app):
            return organization(name, **options).public_id

    def person(self, email: str, memberships: dict | None = None, **options) -> str:
        """A person with ``{org public id: role}`` memberships; the email."""
        with committing(self.app):
            user = person(email, **options)
            for org_id, role in (memberships or {}).items():
                membership(user, org_by_id(org_id), role)
            return user.email

    def member(self, email: str, org_id: str, role: str) -> None:
        """Give an existing person a role in an organization."""
        with committing(self.app):
            membership(accounts.find_user(email), org_by_id(org_id), role)

    def connector(self, kind: str = "zapier", **options) -> dict:
        """A connector client; its credentials (see :func:`client_credentials`)."""
        with committing(self.app):
            return client_credentials(*connector(kind, **options))

    def resource_server(self, name: str = "Leads API") -> dict:
        """A resource server; its client_id and raw client_secret."""
        with committing(self.app):
            server, secret = resource_server(name)
            return {"client_id": server.public_id, "client_secret": secret}

    def key(self, org_id: str, name: str = "Key", scopes=("leads:read",),
            **changes) -> tuple[str, str]:
        """An API key; (public id, raw key)."""
        with committing(self.app):
            key, raw = api_key(org_by_id(org_id), name, scopes, **changes)
            return key.public_id, raw

    def connection(self, email: str, org_id: str, client_name: str = "Zapier",
                   **options) -> dict:
        """A connected connection with a live pair; its id and both raw tokens."""
        with committing(self.app):
            row, body = connection(accounts.find_user(email), org_by_id(org_id),
                                   client_by_name(client_name), **options)
            return {"id": row.public_id, "access": body["access_token"],
                    "refresh": body["refresh_token"]}


@pytest.fixture
def factory(app) -> AppFactory:
    """The factories bound to the test's app."""
    return AppFactory(app)


@pytest.fixture
def demo(app) -> dict:
    """The demo data: owner, Acme Realty, Zapier and Make with raw secrets, a resource server
    and an all-scopes API key."""
    with app.app_context():
        return demo_data()
