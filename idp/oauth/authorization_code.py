"""RFC 6749 §4.1 authorization code grant with S256-only PKCE (RFC 7636, SPEC §5.2)."""

import hmac

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import current_app

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.credentials import connection_denial
from idp.infra.extensions import db
from idp.oauth import ending
from idp.store.codes import claim_code
from idp.store.codes import find_code
from idp.store.codes import save_code
from idp.store.connections import activate_connection
from idp.store.connections import connection_standing
from idp.store.models import Connection
from idp.store.tokens import issue_pair
from idp.store.tokens import lifetimes
from idp.store.tokens import public_body


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


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with single-use codes whose replay ends the connection (§10.5)."""

    #: Confidential clients authenticate with HTTP Basic or the form body.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        """Store the code's digest; the connection was created when the user allowed."""
        data = request.payload.data
        save_code(
            db.session, code, request.user,  # the view passes the new Connection as the user
            client_pk=request.client.id,
            redirect_uri=self.redirect_uri or request.payload.redirect_uri,
            redirect_uri_given=bool(request.payload.redirect_uri),
            challenge=data.get("code_challenge"),
            challenge_method=data.get("code_challenge_method"),
            now=utcnow(), ttl=lifetimes(request.client, current_app.config).code,
        )

    def generate_authorization_code(self):
        """256 random bits, url-safe (SPEC §2)."""
        return cs.new_authorization_code()

    def query_authorization_code(self, code, client):
        """Find the code; a used one is a replay and ends its connection (RFC 6749 §10.5)."""
        row = find_code(db.session, code)
        if row is None or row.client_id != client.id:
            return None
        now = utcnow()
        if row.used_at is not None:
            ending.end(row.connection, "code_replay", now)
            return None
        if row.expires_at <= now:
            return None
        return row

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
        if not claim_code(db.session, code.id, now):
            # Another request redeemed it between our read and our write: a replay. End the
            # connection in this same transaction: giving up its lock would let a busy SQLite
            # answer 503.
            ending.end(code.connection, "code_replay", now)
            raise InvalidGrantError("The authorization code has already been used.")
        connection = db.session.get(Connection, code.connection_id)
        if connection_denial(**connection_standing(db.session, connection.id)._asdict()):
            raise InvalidGrantError("This connection can no longer obtain tokens.")
        activate_connection(connection, now)
        life = lifetimes(self.request.client, current_app.config)
        body, _ = issue_pair(db.session, connection, life, code.scope, code.scope, now)
        return 200, public_body(body, now), self.TOKEN_RESPONSE_HEADER
