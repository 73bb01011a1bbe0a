"""Authlib grant subclasses: storage hooks and the connector-safe refresh rules (SPEC §5.2–5.3)."""

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import select
from sqlalchemy import update

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.credentials import connection_denial
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from idp.infra import metrics
from idp.infra.extensions import db
from idp.store import audit
from idp.store.credentials import CONNECTION_MEMBERSHIP
from idp.store.database import begin_write
from idp.store.database import write_now
from idp.store.models import AuthorizationCode
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import RefreshToken
from idp.store.tokens import end_connection
from idp.store.tokens import issue_pair
from idp.store.tokens import lifetimes
from idp.store.tokens import new_pair
from idp.store.tokens import public_body
from idp.store.tokens import store_pair
from idp.web.errors import RETRY_AFTER_FAULT

log = logging.getLogger(__name__)


def _s256_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6 S256 comparison, in constant time."""
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only: ``plain`` (and a challenge without a method) is refused."""

    #: RFC 7636 §4.3 makes a missing method mean "plain", which we refuse.
    DEFAULT_CODE_CHALLENGE_METHOD = "plain"
    #: Only S256 is accepted (SPEC §5.2).
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": _s256_matches}

    def validate_code_challenge(self, grant, redirect_uri):
        """Refuse a non-S256 challenge, and none at all when the client requires PKCE."""
        payload = grant.request.payload.data
        # RFC 7636 §4.4.1. Authlib runs this hook after the client and redirect URI passed,
        # so the refusal goes back to the client as invalid_request (RFC 6749 §4.1.2.1).
        if not payload.get("code_challenge") and grant.request.client.require_pkce:
            raise InvalidRequestError("This client must send a PKCE code_challenge (S256).")
        if payload.get("code_challenge") and not payload.get("code_challenge_method"):
            raise InvalidRequestError("code_challenge_method must be S256.")
        return super().validate_code_challenge(grant, redirect_uri)


def _connection_refusal(connection: Connection):
    """Why a connection may no longer obtain tokens, as a Denial, or None."""
    member = db.session.scalar(
        select(Membership.id).where(
            Membership.user_id == connection.user_id, Membership.org_id == connection.org_id
        )
    )
    return connection_denial(
        ended=connection.ended_at is not None,
        client_enabled=connection.client.enabled,
        suspended=connection.organization.suspended,
        member=member is not None,
        allowlist=connection.client.org_allowlist or [],
        org_pk=connection.org_id,
    )


def _client_ip():
    """The caller's address for audit rows (after ProxyFix, when configured)."""
    from flask import request

    return request.remote_addr


class SuccessorUnavailable(OAuth2Error):
    """A grace-window retry whose sealed successor cannot be opened: 503, try again.

    Inside the window a presented rotated token is a retry by definition, so failing to open
    its seal (SECRET_KEY replaced without SECRET_KEY_FALLBACKS, a corrupt seal, or a seal
    already erased because the database's own clock stepped) is our fault, never evidence of
    theft. Hosts' clocks cannot cause it: every host judges by the database's clock
    (idp/store/dbclock.py).
    """

    #: The fault body the OAuth endpoints use for passing faults (docs/DESIGN.md).
    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self):
        """Carry a fixed description; nothing about the token is told."""
        super().__init__(description="The service is briefly unavailable; retry shortly.")

    def get_headers(self):
        """JSON headers and when to retry (SPEC §5.3: faults answer 503 with Retry-After)."""
        return [*super().get_headers(), ("Retry-After", str(RETRY_AFTER_FAULT))]


def sealing_keys() -> tuple[str, ...]:
    """The keys a seal may have been made under: the current one first, then the previous."""
    config = current_app.config
    return (config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ()))


def _newest_successor(token: RefreshToken, raw: str) -> dict:
    """Open the token's sealed successor and follow the chain to the live one.

    Each seal holds the next raw refresh token, which opens the next seal. If a successor was
    itself rotated (it is younger, so still within its own window), answering with the stale
    successor would hand the client a token that later counts as reuse; the newest one is safe.
    Raises SuccessorUnavailable when a link of the chain cannot be opened.
    """
    keys = sealing_keys()
    sealed, opener = token.sealed_successor, raw
    while True:
        body = cs.unseal(keys, opener, sealed) if sealed else None
        if body is None:
            raise SuccessorUnavailable()
        successor = db.session.scalar(
            select(RefreshToken).where(RefreshToken.digest == cs.digest(body["refresh_token"]))
        )
        if successor is None or successor.rotated_at is None:
            return body
        sealed, opener = successor.sealed_successor, body["refresh_token"]


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with single-use codes whose replay ends the connection (§10.5)."""

    #: Confidential clients authenticate with HTTP Basic or the form body.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        """Store the code's digest; the connection was created when the user allowed."""
        connection = request.user  # the view passes the new Connection as the grant user
        now = utcnow()
        life = lifetimes(request.client, current_app.config)
        data = request.payload.data
        db.session.add(
            AuthorizationCode(
                digest=cs.digest(code),
                connection_id=connection.id,
                client_id=request.client.id,
                redirect_uri=self.redirect_uri or request.payload.redirect_uri,
                redirect_uri_given=bool(request.payload.redirect_uri),
                scope=connection.scope,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                created_at=now,
                expires_at=now + timedelta(seconds=life.code),
            )
        )

    def generate_authorization_code(self):
        """256 random bits, url-safe (SPEC §2)."""
        return cs.new_authorization_code()

    def query_authorization_code(self, code, client):
        """Find the code; a used one is a replay and ends its connection (RFC 6749 §10.5)."""
        # Read-then-write: hold the write lock (SQLite) from this first read of the code.
        begin_write(db.session)
        row = db.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.digest == cs.digest(code))
        )
        if row is None or row.client_id != client.id:
            return None
        now = utcnow()
        if row.used_at is not None:
            self._punish_replay(row, now)
            return None
        if row.expires_at <= now:
            return None
        return row

    def _punish_replay(self, row, now):
        """End the connection the code created, committed on its own before refusing."""
        end_connection(db.session, row.connection, "code_replay", now, ip=_client_ip())
        db.session.commit()

    def validate_token_request(self):
        """RFC 6749 §4.1.3; a redirect_uri sent at the token step must equal the stored one."""
        super().validate_token_request()
        code = self.request.authorization_code
        given = self.request.payload.redirect_uri
        if given is not None and given != code.redirect_uri:
            raise InvalidGrantError("redirect_uri does not match the authorization request.")

    @hooked  # before_create_token_response: the connection's limit (idp/oauth/limits.py)
    def create_token_response(self):
        """Claim the code atomically, then issue the first pair of the connection."""
        code = self.request.authorization_code
        now = utcnow()
        claimed = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == code.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            # Another request redeemed it between our read and our write: a replay. Punish in
            # this same transaction: giving up its lock would let a busy SQLite answer 503.
            self._punish_replay(code, now)
            raise InvalidGrantError("The authorization code has already been used.")
        connection = db.session.get(Connection, code.connection_id)
        if _connection_refusal(connection):
            raise InvalidGrantError("This connection can no longer obtain tokens.")
        connection.activated_at = now
        life = lifetimes(self.request.client, current_app.config)
        body, _ = issue_pair(db.session, connection, life, code.scope, code.scope, now)
        return 200, public_body(body, now), self.TOKEN_RESPONSE_HEADER


#: Everything a refresh judges about the presented token, in one indexed query and without a
#: lock: the rotation itself claims the row with a conditional UPDATE (docs/PERFORMANCE.md, item 6).
_REFRESH_BY_DIGEST = (
    select(
        RefreshToken.id,
        RefreshToken.scope,
        RefreshToken.expires_at,
        RefreshToken.rotated_at,
        Connection.id,
        Connection.client_id,
        Connection.org_id,
        Connection.ended_at,
        Organization.suspended,
        Membership.id,
    )
    .join(Connection, Connection.id == RefreshToken.connection_id)
    .join(Organization, Organization.id == Connection.org_id)
    .outerjoin(Membership, CONNECTION_MEMBERSHIP)
    .where(RefreshToken.digest == bindparam("digest"))
)
#: The claim: only the request that turns a live token of a live connection into a rotated
#: one may issue its pair (a Disconnect committed since the lookup makes the claim miss).
_CLAIM = (
    update(RefreshToken.__table__)
    .where(RefreshToken.__table__.c.id == bindparam("token_id"),
           RefreshToken.__table__.c.rotated_at.is_(None),
           exists().where(Connection.__table__.c.id == RefreshToken.__table__.c.connection_id,
                          Connection.__table__.c.ended_at.is_(None)))
    .values(rotated_at=bindparam("now"), successor_id=bindparam("successor_id"),
            sealed_successor=bindparam("sealed"))
)
#: Seals whose grace window has passed can never be opened legitimately again.
_DROP_OLD_SEALS = (
    update(RefreshToken.__table__)
    .where(RefreshToken.__table__.c.connection_id == bindparam("of_connection"),
           RefreshToken.__table__.c.sealed_successor.isnot(None),
           RefreshToken.__table__.c.rotated_at < bindparam("cutoff"))
    .values(sealed_successor=None)
)


@dataclass(frozen=True)
class PresentedToken:
    """A refresh token as looked up for a refresh, with its connection's standing."""

    id: int
    scope: str
    expires_at: datetime
    rotated_at: datetime | None
    connection_id: int
    client_pk: int
    org_pk: int
    ended: bool
    suspended: bool
    member: bool

    def check_client(self, client):
        """A refresh token works only for the client its connection belongs to."""
        return self.client_pk == client.id

    def get_scope(self):
        """Scope the refresh token may grant."""
        return self.scope


def _rotate(connection, token_id: int, connection_id: int, pair, sealed: bytes, now, grace: int):
    """Store the successor pair and claim the token; False (caller rolls back) if it was
    rotated, or its connection ended, since it was read. Runs inside the write transaction."""
    successor_id = store_pair(connection, connection_id, pair)
    # PostgreSQL: the claim waits here for the row lock of a concurrent rotation of the token.
    with metrics.LockWait("row"):
        claimed = connection.execute(
            _CLAIM,
            {"token_id": token_id, "now": now, "successor_id": successor_id, "sealed": sealed},
        ).rowcount
    if claimed != 1:
        return False
    connection.execute(
        _DROP_OLD_SEALS, {"of_connection": connection_id, "cutoff": now - timedelta(seconds=grace)}
    )
    return True


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation, an idempotent grace window and reuse detection (SPEC §5.3).

    The common case, a live token, is judged and its successor minted and sealed before the
    write lock is taken; the lock then covers four short statements (docs/PERFORMANCE.md, item 6).
    A token already rotated, or one that another request rotates meanwhile, takes the locked
    path: the row is read again under the lock and answered as a retry or as reuse.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        """Find the token by digest with what the refresh rules need; no lock yet."""
        if not cs.REFRESH_TOKEN_PATTERN.fullmatch(refresh_token):
            return None
        row = db.session.connection().execute(
            _REFRESH_BY_DIGEST, {"digest": cs.digest(refresh_token)}
        ).first()
        if row is None:
            return None
        (token_id, scope, expires_at, rotated_at, connection_id, client_pk, org_pk, ended_at,
         suspended, membership) = row
        return PresentedToken(
            id=token_id, scope=scope, expires_at=expires_at, rotated_at=rotated_at,
            connection_id=connection_id, client_pk=client_pk, org_pk=org_pk,
            ended=ended_at is not None, suspended=suspended, member=membership is not None,
        )

    def _validate_token_scope(self, token):
        """A narrower scope is honoured; spaces or commas separate (RFC 6749 §3.3)."""
        requested = parse_scope(self.request.payload.scope)
        if requested and not set(requested) <= set(parse_scope(token.scope)):
            raise InvalidScopeError("The requested scope exceeds what was granted.")

    @hooked  # before_create_token_response: the connection's limit (idp/oauth/limits.py)
    def create_token_response(self):
        """Rotate a live token; anything else is settled under the lock."""
        token = self.request.refresh_token
        raw = self.request.form.get("refresh_token")
        client = self.request.client
        life = lifetimes(client, current_app.config)
        now = utcnow()
        refusal = connection_denial(
            ended=token.ended, client_enabled=client.enabled, suspended=token.suspended,
            member=token.member, allowlist=client.org_allowlist or [], org_pk=token.org_pk,
        )
        if refusal:
            raise InvalidGrantError("This connection has ended or is no longer authorised.")
        if token.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired.")
        if token.rotated_at is None:
            pair, sealed = self._successor(token.scope, raw, life, now)
            write_now(db.session)
            if _rotate(db.session.connection(), token.id, token.connection_id, pair, sealed,
                       now, life.grace):
                metrics.refresh_outcome("rotated")
                return 200, public_body(pair.body, now), self.TOKEN_RESPONSE_HEADER
            # Rotated (or its connection ended) after we looked: judge it again under the lock.
        return self._settle_under_lock(token.id, raw, client.id, life, now)

    def _successor(self, token_scope, raw, life, now):
        """The successor pair (with a narrower access scope if asked) and its seal, which only
        the presented raw token opens."""
        requested = parse_scope(self.request.payload.scope)
        access_scope = join_scope(requested) if requested else token_scope
        pair = new_pair(life, access_scope, token_scope, now)
        return pair, cs.seal(current_app.config["SECRET_KEY"], raw, pair.body)

    def _settle_under_lock(self, token_id, raw, client_pk, life, now):
        """Judge the token again holding the write lock (SQLite) or its row lock (PostgreSQL)."""
        begin_write(db.session)
        with metrics.LockWait("row"):
            token = db.session.scalar(
                select(RefreshToken)
                .where(RefreshToken.id == token_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        connection = token.connection
        if connection.client_id != client_pk:
            raise InvalidGrantError()
        if _connection_refusal(connection):
            raise InvalidGrantError("This connection has ended or is no longer authorised.")
        if token.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired.")
        if token.rotated_at is not None:
            return self._replay_or_punish(token, raw, connection, life, now)
        pair, sealed = self._successor(token.scope, raw, life, now)
        if not _rotate(db.session.connection(), token.id, connection.id, pair, sealed, now,
                       life.grace):
            raise RuntimeError("a refresh token locked for rotation was rotated by another")
        metrics.refresh_outcome("rotated")
        return 200, public_body(pair.body, now), self.TOKEN_RESPONSE_HEADER

    def _replay_or_punish(self, token, raw, connection, life, now):
        """Within the grace window answer the newest successor; after it, treat as theft."""
        if now - token.rotated_at <= timedelta(seconds=life.grace):
            try:
                body = _newest_successor(token, raw)
            except SuccessorUnavailable:
                # The connection id only: never a token, a seal or a key.
                log.warning("grace-window retry on connection %s: its sealed successor cannot "
                            "be opened (SECRET_KEY changed without SECRET_KEY_FALLBACKS, or a "
                            "corrupt seal); answered 503", connection.public_id)
                metrics.refresh_outcome("successor_unavailable")
                raise
            metrics.refresh_outcome("grace_replay")
            return 200, public_body(body, now), self.TOKEN_RESPONSE_HEADER
        # Nothing was written yet; end the connection in this transaction, which holds the
        # write lock (SQLite) or the token's row lock (PostgreSQL). Rolling back first would
        # give the lock up, and on SQLite the later write could then fail with "database is
        # locked" and answer 503 to a request that must get invalid_grant.
        if end_connection(db.session, connection, "refresh_reuse", now, ip=_client_ip()):
            audit.record(
                db.session, "refresh_token_reuse", now, org=connection.organization.public_id,
                subject=connection.public_id, ip=_client_ip(), client=connection.client.public_id,
            )
        db.session.commit()
        metrics.refresh_outcome("reuse_ended")
        raise InvalidGrantError("This refresh token was already used; the connection is ended.")
