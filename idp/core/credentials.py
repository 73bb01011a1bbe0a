"""Judge a raw bearer: the one place API keys and OAuth access tokens are authenticated.

Lookup and judgement are two steps (find the row by digest, then apply SPEC §4 in order).
Nothing here touches Flask; the caller passes the session, the clock and the raw value.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.bearer import MALFORMED
from idp.core.bearer import MISSING
from idp.core.bearer import UNKNOWN
from idp.core.bearer import Denial
from idp.core.bearer import check_shape
from idp.core.bearer import denial
from idp.core.bearer import parse_authorization
from idp.core.scopes import parse_scope
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import User

#: Re-exported so callers judge and parse from one module.
__all__ = [
    "CONNECTION_MEMBERSHIP", "MALFORMED", "MISSING", "UNKNOWN", "Credential", "Denial",
    "authenticate", "authenticate_token", "check_shape", "connection_denial",
    "parse_authorization", "require_scopes",
]


# Built once at import: a statement rebuilt per call costs its construction and its cache-key
# computation on every request; a module-level one keeps the key memoized (PERFORMANCE.md §1).
#: One API key and its organization, by the digest of the presented key: its current secret,
#: or the one a roll replaced (judged against the overlap below).
_API_KEY_BY_DIGEST = (
    select(
        ApiKey.id,
        ApiKey.previous_digest,
        ApiKey.previous_revoke_at,
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
    .where(or_(ApiKey.digest == bindparam("digest"),
               ApiKey.previous_digest == bindparam("digest")))
)
#: Join condition: the membership that keeps a connection's user in its organization (a
#: connection whose user has left answers org_unbound; refresh judges the same way).
CONNECTION_MEMBERSHIP = and_(
    Membership.user_id == Connection.user_id, Membership.org_id == Connection.org_id
)
#: One access token with everything §4 judges, by the digest of the presented token.
_ACCESS_TOKEN_BY_DIGEST = (
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
    .outerjoin(Membership, CONNECTION_MEMBERSHIP)
    .where(AccessToken.digest == bindparam("digest"))
)


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


def authenticate(session: Session, authorization: str | None, now: datetime) -> Credential | Denial:
    """Judge an Authorization header value (or None) at time ``now``."""
    token = parse_authorization(authorization)
    if isinstance(token, Denial):
        return token
    return authenticate_token(session, token, now)


def authenticate_token(
    session: Session, token: str, now: datetime
) -> Credential | Denial:
    """Judge a raw token value: an ``fe_k_`` API key or an ``fe_at_`` access token.

    The prefix alone says which table to ask, so each call makes at most one indexed lookup
    by digest, and a value of no known shape makes none.
    """
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
    """SPEC §4 for API keys: unknown, disabled, expired, suspended organization.

    A key belongs to its organization, not to the person who made it: it keeps working when
    its creator leaves. A suspended organization is an org binding that no longer holds.
    """
    presented = cs.digest(token)
    row = session.execute(_API_KEY_BY_DIGEST, {"digest": presented}).first()
    if row is None:
        return UNKNOWN
    (key_pk, previous, revoke_at, key_id, name, scopes, active, created, expires, last_used,
     org_id, org_name, suspended) = row
    if previous is not None and hmac.compare_digest(previous, presented) and (
            revoke_at is None or revoke_at <= now):
        # A rolled-away secret past its overlap belongs to no key any more: the same answer
        # as a deleted key (SPEC §4 unknown_token), not key_expired, which would suggest the
        # key itself (still working under its new secret) has run out.
        return UNKNOWN
    if not active:
        return denial("key_inactive")
    if expires is not None and expires <= now:
        return denial("key_expired")
    if suspended:
        return denial("org_unbound")
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
        return denial("token_revoked")
    if not client_enabled:
        return denial("client_disabled")
    if suspended or not member or (allowlist and org_pk not in allowlist):
        return denial("org_unbound")
    return None


def _judge_access_token(session: Session, token: str, now: datetime) -> Credential | Denial:
    """SPEC §4 for OAuth access tokens, in one indexed query."""
    row = session.execute(_ACCESS_TOKEN_BY_DIGEST, {"digest": cs.digest(token)}).first()
    if row is None:
        return UNKNOWN
    (scope, issued, expires, con_pk, con_id, ended_at, last_used, org_pk, org_id, org_name,
     suspended, user_id, email, user_name, client_id, client_name, enabled, allowlist,
     membership) = row
    if ended_at is not None:
        return denial("token_revoked")
    if expires <= now:
        return denial("token_expired")
    refusal = connection_denial(
        ended=False, client_enabled=enabled, suspended=suspended, member=membership is not None,
        allowlist=allowlist or [], org_pk=org_pk,
    )
    if refusal:
        return refusal
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
    """Refuse a credential (anything with ``scopes``) lacking any of ``needed``; write ≠ read."""
    if any(s not in credential.scopes for s in needed):
        return denial("insufficient_scope", needed=tuple(needed))
    return None
