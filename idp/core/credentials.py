"""Judge a raw bearer: the one place API keys and OAuth access tokens are authenticated.

Lookup and judgement are two steps (find the row by digest, then apply SPEC §4 in order).
Nothing here touches Flask; the caller passes the session, the clock and the raw value.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.scopes import parse_scope
from idp.models import AccessToken
from idp.models import ApiKey
from idp.models import Client
from idp.models import Connection
from idp.models import Membership
from idp.models import Organization
from idp.models import User

#: RFC 6750 §2.1 b64token; anything else in the credential position is garbage.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Longer than any credential we issue by a wide margin; past it the value is garbage.
MAX_TOKEN_LENGTH = 512

#: Plain sentences for each §4 reason; the API copies them into its error bodies.
MESSAGES = {
    "missing_authorization": "Send an Authorization header of the form 'Bearer <token>'.",
    "malformed_authorization": (
        "The Authorization header is not 'Bearer <token>' with a valid token."
    ),
    "unknown_token": "This API key or access token is not recognised.",
    "token_expired": "This access token has expired; refresh it for a new one.",
    "token_revoked": "This access token belongs to a connection that has been ended.",
    "key_inactive": "This API key is disabled.",
    "key_expired": "This API key has passed its expiration date.",
    "insufficient_scope": "This credential lacks the scope this endpoint needs.",
    "client_disabled": "The app that obtained this token has been disabled.",
    "org_unbound": "This token's organization binding no longer holds.",
    "org_suspended": "This API key's organization is suspended.",
}


@dataclass(frozen=True)
class Denial:
    """Why a bearer was refused: the exact status, code and reason of SPEC §4."""

    status: int
    reason: str
    #: True when a credential was presented (RFC 6750 §3 adds error="invalid_token").
    presented: bool = True
    #: For insufficient_scope: the scopes the endpoint needs.
    needed: tuple[str, ...] = ()
    #: A more specific message key than the reason, when one applies.
    note: str | None = None

    @property
    def code(self) -> str:
        """UNAUTHORIZED or FORBIDDEN, derived from the status."""
        return "UNAUTHORIZED" if self.status == 401 else "FORBIDDEN"

    @property
    def message(self) -> str:
        """One plain sentence for people reading the error."""
        return MESSAGES[self.note or self.reason]

    def as_dict(self) -> dict:
        """The ``denial`` object of introspection (SPEC §5.5)."""
        return {"status": self.status, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class Credential:
    """An authenticated bearer, whichever kind it is."""

    kind: str  # "api_key" or "oauth"
    org_id: str
    org_name: str
    scopes: frozenset[str]
    issued_at: datetime
    expires_at: datetime | None
    #: Row id of the key or connection, for last-used bookkeeping.
    row_id: int
    key_id: str | None = None
    key_name: str | None = None
    user_id: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    connection_id: str | None = None
    last_used_at: datetime | None = None

    @property
    def rate_key(self) -> str:
        """What rate limits count against: the key or the connection (SPEC §10)."""
        return self.key_id if self.kind == "api_key" else self.connection_id


MISSING = Denial(401, "missing_authorization", presented=False)
MALFORMED = Denial(401, "malformed_authorization")
UNKNOWN = Denial(401, "unknown_token")


def parse_authorization(header: str | None) -> str | Denial:
    """Extract the token from an Authorization header value, before any database work."""
    if header is None:
        return MISSING
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return MALFORMED
    return token.strip()


def check_shape(token: str) -> Denial | None:
    """Refuse values that cannot be any credential we issue (SPEC §4 malformed row)."""
    if len(token) > MAX_TOKEN_LENGTH or not B64TOKEN.fullmatch(token):
        return MALFORMED
    if token.startswith(cs.API_KEY_PREFIX) and not cs.API_KEY_PATTERN.fullmatch(token):
        return MALFORMED
    return None


def authenticate(session: Session, authorization: str | None, now: datetime) -> Credential | Denial:
    """Judge an Authorization header value (or None) at time ``now``."""
    token = parse_authorization(authorization)
    if isinstance(token, Denial):
        return token
    return authenticate_token(session, token, now)


def authenticate_token(
    session: Session, token: str, now: datetime, hint: str | None = None
) -> Credential | Denial:
    """Judge a raw token value: an ``fe_k_`` API key or an ``fe_at_`` access token."""
    bad = check_shape(token)
    if bad:
        return bad
    if cs.API_KEY_PATTERN.fullmatch(token):
        return _judge_api_key(session, token, now)
    if cs.ACCESS_TOKEN_PATTERN.fullmatch(token):
        return _judge_access_token(session, token, now)
    # Refresh tokens, codes, secrets and anything else are never bearers here.
    return UNKNOWN


def _judge_api_key(session: Session, token: str, now: datetime) -> Credential | Denial:
    """SPEC §4 for API keys: unknown, disabled, expired (and a suspended organization)."""
    row = session.execute(
        select(
            ApiKey.id,
            ApiKey.public_id,
            ApiKey.name,
            ApiKey.scopes,
            ApiKey.active,
            ApiKey.created_at,
            ApiKey.expires_at,
            ApiKey.last_used_at,
            Organization.public_id,
            Organization.name,
            Organization.suspended,
        )
        .join(Organization, Organization.id == ApiKey.org_id)
        .where(ApiKey.digest == cs.digest(token))
    ).first()
    if row is None:
        return UNKNOWN
    (key_pk, key_id, name, scopes, active, created, expires, last_used, org_id, org_name,
     suspended) = row
    if not active:
        return Denial(403, "key_inactive")
    if suspended:
        return Denial(403, "key_inactive", note="org_suspended")
    if expires is not None and expires <= now:
        return Denial(403, "key_expired")
    return Credential(
        kind="api_key",
        org_id=org_id,
        org_name=org_name,
        scopes=frozenset(parse_scope(scopes)),
        issued_at=created,
        expires_at=expires,
        row_id=key_pk,
        key_id=key_id,
        key_name=name,
        last_used_at=last_used,
    )


def connection_denial(
    *, ended: bool, client_enabled: bool, suspended: bool, member: bool, allowlist: list,
    org_pk: int,
) -> Denial | None:
    """Whether a connection may still act: SPEC §4 rows shared by bearer use and refresh."""
    if ended:
        return Denial(401, "token_revoked")
    if not client_enabled:
        return Denial(403, "client_disabled")
    if suspended or not member or (allowlist and org_pk not in allowlist):
        return Denial(403, "org_unbound")
    return None


def _judge_access_token(session: Session, token: str, now: datetime) -> Credential | Denial:
    """SPEC §4 for OAuth access tokens, in one indexed query."""
    row = session.execute(
        select(
            AccessToken.scope,
            AccessToken.issued_at,
            AccessToken.expires_at,
            Connection.id,
            Connection.public_id,
            Connection.ended_at,
            Connection.last_used_at,
            Organization.id,
            Organization.public_id,
            Organization.name,
            Organization.suspended,
            User.public_id,
            User.email,
            User.name,
            Client.public_id,
            Client.name,
            Client.enabled,
            Client.org_allowlist,
            Membership.id,
        )
        .join(Connection, Connection.id == AccessToken.connection_id)
        .join(Organization, Organization.id == Connection.org_id)
        .join(User, User.id == Connection.user_id)
        .join(Client, Client.id == Connection.client_id)
        .outerjoin(
            Membership,
            and_(Membership.user_id == Connection.user_id, Membership.org_id == Connection.org_id),
        )
        .where(AccessToken.digest == cs.digest(token))
    ).first()
    if row is None:
        return UNKNOWN
    (scope, issued, expires, con_pk, con_id, ended_at, last_used, org_pk, org_id, org_name,
     suspended, user_id, email, user_name, client_id, client_name, enabled, allowlist,
     membership) = row
    if ended_at is not None:
        return Denial(401, "token_revoked")
    if expires <= now:
        return Denial(401, "token_expired")
    denial = connection_denial(
        ended=False, client_enabled=enabled, suspended=suspended, member=membership is not None,
        allowlist=allowlist or [], org_pk=org_pk,
    )
    if denial:
        return denial
    return Credential(
        kind="oauth",
        org_id=org_id,
        org_name=org_name,
        scopes=frozenset(parse_scope(scope)),
        issued_at=issued,
        expires_at=expires,
        row_id=con_pk,
        user_id=user_id,
        user_email=email,
        user_name=user_name,
        client_id=client_id,
        client_name=client_name,
        connection_id=con_id,
        last_used_at=last_used,
    )


def require_scopes(credential: Credential, *needed: str) -> Denial | None:
    """Refuse a credential that lacks any of ``needed``; a write scope never implies read."""
    missing = [s for s in needed if s not in credential.scopes]
    if missing:
        return Denial(403, "insufficient_scope", needed=tuple(needed))
    return None
