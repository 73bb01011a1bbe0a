"""RFC 7009 token revocation: revoking either token of a connection ends it (SPEC §5.4)."""

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.oauth import ending
from idp.oauth import limits
from idp.store.connections import connection_of_token


class Revocation(RevocationEndpoint):
    """RFC 7009: the token presented names the connection to end; the connection is revoked."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def check_params(self, request, client):
        """``token`` is required (RFC 7009 §2.1); a hint we do not know is ignored, not refused.

        RFC 7009 §2.1: "An invalid token type hint value is ignored by the authorization
        server and does not influence the revocation response."
        """
        if not request.form.get("token"):
            raise InvalidRequestError(description="The token parameter is required.")

    def authenticate_token(self, request, client):
        """The connection of the presented access or refresh token; the hint only orders the
        look-ups. Other clients' tokens are treated as unknown: 200 and nothing changes."""
        self.check_params(request, client)
        refresh_first = request.form.get("token_type_hint") == "refresh_token"
        connection = connection_of_token(db.session, request.form["token"],
                                         refresh_first=refresh_first)
        if connection is not None and connection.client_id != client.id:
            connection = None
        limits.count_connection(connection.id if connection else None, client.id)
        return connection

    def revoke_token(self, token, request):
        """End the connection (all its tokens) and record why; ``token`` is the connection."""
        ending.end(token, "revoked_by_client", utcnow(), actor=request.client.public_id)
