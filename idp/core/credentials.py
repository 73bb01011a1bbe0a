"""Judge a bearer: the one place API keys and OAuth access tokens are decided (SPEC §4).

Lookup and judgement are two steps, as in Authlib: ``idp.store.credentials`` finds the one row
a bearer can match (by its digest) and hands it here as a plain row; this module applies the
§4 rows in their fixed order. Nothing here touches Flask or a database: a row, a clock reading
and a raw value go in, a :class:`Credential` or a :class:`Denial` comes out.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from idp.core import secrets as cs
from idp.core.bearer import MALFORMED
from idp.core.bearer import MISSING
from idp.core.bearer import UNKNOWN
from idp.core.bearer import Denial
from idp.core.bearer import check_shape
from idp.core.bearer import denial
from idp.core.bearer import parse_authorization
from idp.core.bearer import scope_denial
from idp.core.scopes import parse_scope

#: Re-exported so callers judge and parse from one module.
__all__ = [
    "API_KEY", "MALFORMED", "MISSING", "OAUTH", "UNKNOWN", "AccessTokenRow", "ApiKeyRow",
    "Credential", "Denial", "bearer_kind", "check_shape", "connection_denial", "judge_access_token",
    "judge_api_key", "parse_authorization", "require_scopes",
]

#: The two kinds of bearer, as :attr:`Credential.kind` names them.
API_KEY = "api_key"
OAUTH = "oauth"


class ApiKeyRow(NamedTuple):
    """What §4 judges an API key by; the store selects exactly these columns, in this order."""

    pk: int
    previous_digest: str | None
    previous_revoke_at: datetime | None
    key_id: str
    name: str
    scopes: str
    active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    org_id: str
    org_name: str
    suspended: bool


class AccessTokenRow(NamedTuple):
    """What §4 judges an access token by: the token, its connection, client, org and user."""

    scope: str
    issued_at: datetime
    expires_at: datetime
    connection_pk: int
    connection_id: str
    ended_at: datetime | None
    last_used_at: datetime | None
    org_pk: int
    org_id: str
    org_name: str
    suspended: bool
    user_id: str
    user_email: str
    user_name: str
    client_id: str
    client_name: str
    client_enabled: bool
    org_allowlist: list | None
    #: The membership that keeps the connection's user in its organization, or None.
    membership_pk: int | None


@dataclass(frozen=True)
class Credential:
    """An authenticated bearer, whichever kind it is."""

    kind: str  # API_KEY or OAUTH
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
        return self.key_id if self.kind == API_KEY else self.connection_id


def bearer_kind(token: str) -> str | Denial:
    """Which table a raw bearer belongs to (API_KEY or OAUTH), or why it is judged unseen.

    The prefix alone decides, so a value of no known shape is refused before any lookup.
    """
    bad = check_shape(token)
    if bad:
        return bad
    if cs.API_KEY_PATTERN.fullmatch(token):
        return API_KEY
    if cs.ACCESS_TOKEN_PATTERN.fullmatch(token):
        return OAUTH
    # Refresh tokens, codes, secrets and anything else are never bearers here.
    return UNKNOWN


def judge_api_key(row: ApiKeyRow | None, presented: str, now: datetime) -> Credential | Denial:
    """SPEC §4 for API keys: unknown, disabled, expired, suspended organization.

    ``row`` is the key found by ``presented`` (the digest of the raw key), current or rolled
    away. A key belongs to its organization, not to the person who made it: it keeps working
    when its creator leaves. A suspended organization is an org binding that no longer holds.
    """
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
        kind=API_KEY,
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


def judge_access_token(row: AccessTokenRow | None, now: datetime) -> Credential | Denial:
    """SPEC §4 for OAuth access tokens: unknown, revoked, expired, then the connection's rows."""
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
        kind=OAUTH,
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
    return scope_denial(credential.scopes, needed)
