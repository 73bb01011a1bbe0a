"""The Authlib authorization server: client lookup and authentication, and its wiring."""

from dataclasses import dataclass
from dataclasses import fields
from datetime import datetime

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.errors import UnsupportedGrantTypeError
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import select

from idp.core import secrets as cs
from idp.infra.extensions import db
from idp.oauth import limits
from idp.oauth import resource_auth
from idp.oauth.authorization_code import AuthorizationCodeGrant
from idp.oauth.authorization_code import S256CodeChallenge
from idp.oauth.client_auth import client_secret_basic
from idp.oauth.introspection import Introspection
from idp.oauth.refresh_token import RefreshTokenGrant
from idp.oauth.revocation import Revocation
from idp.store.models import Client
from idp.store.models import ConnectorClientRules


@dataclass(frozen=True)
class ClientRecord(ConnectorClientRules):
    """A connector client's row as the OAuth endpoints use it: read-only, no ORM state.

    Loading a full ORM entity cost about a tenth of a refresh (PERFORMANCE.md); the endpoints
    only read the client's columns, through the same rules as the :class:`Client` model.
    """

    id: int
    public_id: str
    name: str
    secret_digest: str
    previous_secret_digest: str | None
    previous_secret_expires_at: datetime | None
    redirect_uris: list
    allowed_scopes: str
    default_scopes: str
    org_allowlist: list
    enabled: bool
    code_ttl: int | None
    access_token_ttl: int | None
    refresh_token_ttl: int | None
    require_pkce: bool


# Statements built once at import so their cache keys stay memoized (PERFORMANCE.md §1).
#: A connector client's columns by its public client_id.
_CLIENT_BY_PUBLIC_ID = select(
    *(getattr(Client, field.name) for field in fields(ClientRecord))
).where(Client.public_id == bindparam("public_id"))


def query_client(client_id) -> ClientRecord | None:
    """Find a connector client by its public client_id."""
    if not cs.plausible_client_id(client_id):
        return None
    row = db.session.connection().execute(_CLIENT_BY_PUBLIC_ID, {"public_id": client_id}).first()
    if row is None:
        return None
    return ClientRecord(*row)


#: The error_description of an unsupported grant_type (RFC 6749 §5.2).
UNSUPPORTED_GRANT_TYPE = "grant_type must be authorization_code or refresh_token."


class MissingGrantTypeError(UnsupportedGrantTypeError):
    """No grant_type at all: a missing required parameter, not an unsupported grant."""

    #: RFC 6749 §5.2 names a missing parameter ``invalid_request``.
    error = "invalid_request"

    def __init__(self):
        """Carry a fixed description; there is no grant type to name."""
        super().__init__(None)
        self.description = "The grant_type parameter is required."

    def get_error_description(self):
        """The fixed description."""
        return self.description


class IdpAuthorizationServer(AuthorizationServer):
    """Authlib's Flask server with our rules for client authentication."""

    def get_token_grant(self, request):
        """Refuse a request without grant_type as ``invalid_request`` (RFC 6749 §5.2).

        Raised as a subclass of the error Authlib's token endpoint already turns into a
        response, so it never escapes as a server error.
        """
        if not request.payload.grant_type:
            raise MissingGrantTypeError()
        try:
            return super().get_token_grant(request)
        except UnsupportedGrantTypeError as error:
            # Authlib sends no error_description here; the value itself is not echoed, since
            # RFC 6749 §5.2 allows only printable ASCII in a description.
            error.description = UNSUPPORTED_GRANT_TYPE
            raise

    def authenticate_client(self, request, methods, endpoint="token"):
        """Every client-auth failure is 401 invalid_client; a disabled client is refused too.

        A stray ``Authorization: Bearer`` header is not Basic, so Authlib's basic method skips
        it and the form-body secret decides (Zapier sends both on refresh).
        """
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            error.status_code = 401
            raise
        if not client.enabled:
            raise InvalidClientError(status_code=401, description="This client is disabled.")
        return client


class Issuer(IssuerParameter):
    """RFC 9207 ``iss`` on every authorization response, success or error."""

    def get_issuer(self):
        """The configured issuer identifier."""
        return current_app.config["IDP_ISSUER"]


def init_app(app):
    """Build this app's authorization server with grants, PKCE, RFC 9207 and endpoints."""
    authorization = IdpAuthorizationServer()
    authorization.init_app(app, query_client=query_client)
    authorization.register_client_auth_method("client_secret_basic", client_secret_basic)
    authorization.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), limits.ConnectionLimit()])
    authorization.register_grant(RefreshTokenGrant, [limits.ConnectionLimit()])
    authorization.register_endpoint(Revocation)
    authorization.register_endpoint(Introspection)
    authorization.register_extension(Issuer())
    app.extensions["idp.authorization"] = authorization
    app.extensions["idp.resource_server_memo"] = resource_auth.Memo()


def server() -> IdpAuthorizationServer:
    """The current app's authorization server."""
    return current_app.extensions["idp.authorization"]
