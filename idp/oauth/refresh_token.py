"""RFC 6749 §6 refresh grant: rotation, an idempotent grace window, reuse detection (SPEC §5.3)."""

import logging
from datetime import timedelta

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.hooks import hooked
from flask import current_app

from idp.core import secrets as cs
from idp.core.bearer import RETRY_AFTER_UNAVAILABLE
from idp.core.clock import utcnow
from idp.core.credentials import connection_denial
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from idp.infra import metrics
from idp.infra.extensions import db
from idp.oauth import ending
from idp.store import audit
from idp.store.connections import connection_standing
from idp.store.database import write_now
from idp.store.tokens import find_refresh_token
from idp.store.tokens import lifetimes
from idp.store.tokens import lock_refresh_token
from idp.store.tokens import new_pair
from idp.store.tokens import newest_successor
from idp.store.tokens import public_body
from idp.store.tokens import rotate

log = logging.getLogger(__name__)


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
        return [*super().get_headers(), ("Retry-After", str(RETRY_AFTER_UNAVAILABLE))]


def sealing_keys() -> tuple[str, ...]:
    """The keys a seal may have been made under: the current one first, then the previous."""
    config = current_app.config
    return (config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ()))


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
        return find_refresh_token(db.session.connection(), refresh_token)

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
            if rotate(db.session.connection(), token.id, token.connection_id, pair, sealed,
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
        token = lock_refresh_token(db.session, token_id)
        connection = token.connection
        if connection.client_id != client_pk:
            raise InvalidGrantError()
        if connection_denial(**connection_standing(db.session, connection.id)._asdict()):
            raise InvalidGrantError("This connection has ended or is no longer authorised.")
        if token.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired.")
        if token.rotated_at is not None:
            return self._replay_or_punish(token, raw, connection, life, now)
        pair, sealed = self._successor(token.scope, raw, life, now)
        if not rotate(db.session.connection(), token.id, connection.id, pair, sealed, now,
                      life.grace):
            raise RuntimeError("a refresh token locked for rotation was rotated by another")
        metrics.refresh_outcome("rotated")
        return 200, public_body(pair.body, now), self.TOKEN_RESPONSE_HEADER

    def _replay_or_punish(self, token, raw, connection, life, now):
        """Within the grace window answer the newest successor; after it, treat as theft."""
        if now - token.rotated_at <= timedelta(seconds=life.grace):
            body = newest_successor(db.session, sealing_keys(), token, raw)
            if body is None:
                # The connection id only: never a token, a seal or a key.
                log.warning("grace-window retry on connection %s: its sealed successor cannot "
                            "be opened (SECRET_KEY changed without SECRET_KEY_FALLBACKS, or a "
                            "corrupt seal); answered 503", connection.public_id)
                metrics.refresh_outcome("successor_unavailable")
                raise SuccessorUnavailable()
            metrics.refresh_outcome("grace_replay")
            return 200, public_body(body, now), self.TOKEN_RESPONSE_HEADER
        # Nothing was written yet; end the connection in this transaction, which holds the
        # write lock (SQLite) or the token's row lock (PostgreSQL). Rolling back first would
        # give the lock up, and on SQLite the later write could then fail with "database is
        # locked" and answer 503 to a request that must get invalid_grant. The view commits
        # the end although the answer is a refusal (idp/oauth/ending.py).
        if ending.end(connection, "refresh_reuse", now):
            audit.record(
                db.session, "refresh_token_reuse", now, org=connection.organization.public_id,
                subject=connection.public_id, ip=ending.client_ip(),
                client=connection.client.public_id,
            )
        metrics.refresh_outcome("reuse_ended")
        raise InvalidGrantError("This refresh token was already used; the connection is ended.")
