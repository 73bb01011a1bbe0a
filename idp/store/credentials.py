"""Find the one row a bearer can match, by its digest, and have the credential core judge it.

This is the entry point every door uses (the guard of ``/api/v1/me``, introspection and through
it the resource-server kit): parse and shape come from ``idp.core.credentials``, then at most
one indexed lookup here, then the core's §4 judgement of the plain row it returns.
"""

from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.credentials import API_KEY
from idp.core.credentials import OAUTH
from idp.core.credentials import AccessTokenRow
from idp.core.credentials import ApiKeyRow
from idp.core.credentials import Credential
from idp.core.credentials import Denial
from idp.core.credentials import bearer_kind
from idp.core.credentials import judge_access_token
from idp.core.credentials import judge_api_key
from idp.core.credentials import parse_authorization
from idp.store.connections import CONNECTION_MEMBERSHIP
from idp.store.driver import DriverStatement
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import User


def _columns(row_type, columns: dict) -> list:
    """``columns`` in the order of ``row_type``'s fields, each labelled with its field's name."""
    return [columns[field].label(field) for field in row_type._fields]


# Built once at import: a statement rebuilt per call costs its construction and its cache-key
# computation on every request; a module-level one keeps the key memoized (PERFORMANCE.md §1).
#: One API key and its organization, by the digest of the presented key: its current secret,
#: or the one a roll replaced (the core judges the overlap).
API_KEY_BY_DIGEST = (
    select(*_columns(ApiKeyRow, {
        "pk": ApiKey.id,
        "previous_digest": ApiKey.previous_digest,
        "previous_revoke_at": ApiKey.previous_revoke_at,
        "key_id": ApiKey.public_id,
        "name": ApiKey.name,
        "scopes": ApiKey.scopes,
        "active": ApiKey.active,
        "created_at": ApiKey.created_at,
        "expires_at": ApiKey.expires_at,
        "last_used_at": ApiKey.last_used_at,
        "org_id": Organization.public_id,
        "org_name": Organization.name,
        "suspended": Organization.suspended,
    }))
    .join(Organization, Organization.id == ApiKey.org_id)
    .where(or_(ApiKey.digest == bindparam("digest"),
               ApiKey.previous_digest == bindparam("digest")))
)
#: One access token with everything §4 judges, by the digest of the presented token.
ACCESS_TOKEN_BY_DIGEST = (
    select(*_columns(AccessTokenRow, {
        "scope": AccessToken.scope,
        "issued_at": AccessToken.issued_at,
        "expires_at": AccessToken.expires_at,
        "connection_pk": Connection.id,
        "connection_id": Connection.public_id,
        "ended_at": Connection.ended_at,
        "last_used_at": Connection.last_used_at,
        "org_pk": Organization.id,
        "org_id": Organization.public_id,
        "org_name": Organization.name,
        "suspended": Organization.suspended,
        "user_id": User.public_id,
        "user_email": User.email,
        "user_name": User.name,
        "client_id": Client.public_id,
        "client_name": Client.name,
        "client_enabled": Client.enabled,
        "org_allowlist": Client.org_allowlist,
        "membership_pk": Membership.id,
    }))
    .join(Connection, Connection.id == AccessToken.connection_id)
    .join(Organization, Organization.id == Connection.org_id)
    .join(User, User.id == Connection.user_id)
    .join(Client, Client.id == Connection.client_id)
    .outerjoin(Membership, CONNECTION_MEMBERSHIP)
    .where(AccessToken.digest == bindparam("digest"))
)

#: Both, run on the driver's cursor (idp/store/driver.py).
_API_KEY = DriverStatement(API_KEY_BY_DIGEST, ApiKeyRow)
_ACCESS_TOKEN = DriverStatement(ACCESS_TOKEN_BY_DIGEST, AccessTokenRow)


def authenticate(conn, authorization: str | None, now: datetime) -> Credential | Denial:
    """Judge an Authorization header value (or None) at time ``now``.

    ``conn`` is anything that executes a statement: a read connection or a session.
    """
    token = parse_authorization(authorization)
    if isinstance(token, Denial):
        return token
    return authenticate_token(conn, token, now)


def authenticate_token(conn, token: str, now: datetime) -> Credential | Denial:
    """Judge a raw token value: an ``fe_k_`` API key or an ``fe_at_`` access token.

    The prefix alone says which table to ask, so each call makes at most one indexed lookup
    by digest, and a value of no known shape makes none. The row goes to the core as it came
    from the driver, converted by the columns' types: no ORM object is built on this path.
    """
    kind = bearer_kind(token)
    if kind == API_KEY:
        presented = cs.digest(token)
        row = _API_KEY.first(conn, {"digest": presented})
        return judge_api_key(row, presented, now)
    if kind == OAUTH:
        row = _ACCESS_TOKEN.first(conn, {"digest": cs.digest(token)})
        return judge_access_token(row, now)
    return kind
