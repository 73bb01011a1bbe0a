"""The Authlib authorization server: client lookup, client auth, revocation, introspection."""

from dataclasses import dataclass
from dataclasses import fields
from datetime import datetime

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.errors import UnsupportedGrantTypeError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import current_app
from flask import request as flask_request
from sqlalchemy import bindparam
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import epoch
from idp.core.clock import utcnow
from idp.core.credentials import Credential
from idp.core.scopes import join_scope
from idp.infra.extensions import db
from idp.oauth import limits
from idp.oauth import resource_auth
from idp.oauth.grants import AuthorizationCodeGrant
from idp.oauth.grants import RefreshTokenGrant
from idp.oauth.grants import S256CodeChallenge
from idp.store import last_used
from idp.store.credentials import authenticate_token
from idp.store.database import reading
from idp.store.models import AccessToken
from idp.store.models import Client
from idp.store.models import ConnectorClientRules
from idp.store.models import RefreshToken
from idp.store.tokens import end_connection


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


def basic_credentials(headers) -> tuple[str | None, str | None]:
    """HTTP Basic client credentials, percent-decoded (RFC 6749 §2.3.1); (None, None) when the
    header is not Basic or cannot be decoded.

    RFC 7617 §2.1 lets a server expect UTF-8 and RFC 6749 §2.3.1 form-encodes UTF-8 octets, so
    bytes that are not UTF-8 can name no registered client; they are read like any other Basic
    header we cannot decode (Authlib itself would raise, a 500).
    """
    try:
        return extract_basic_authorization(headers)
    except UnicodeDecodeError:
        return None, None


def client_secret_basic(query_client, request):
    """Authlib's ``client_secret_basic`` method, reading the header with basic_credentials."""
    client_id, secret = basic_credentials(request.headers)
    if not client_id or not secret:
        return None
    client = query_client(client_id)
    if client is None:
        # RFC 6749 §5.2: credentials sent in the Authorization header fail with 401.
        raise InvalidClientError(
            status_code=401, description="The client does not exist on this server."
        )
    return client if client.check_client_secret(secret) else None


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


class Revocation(RevocationEndpoint):
    """RFC 7009: revoking either token of a connection ends the connection (SPEC §5.4)."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        """Look the value up as an access or refresh token by digest; the hint only orders."""
        models = [AccessToken, RefreshToken]
        if token_type_hint == "refresh_token":
            models.reverse()
        for model in models:
            row = db.session.scalar(select(model).where(model.digest == cs.digest(token_string)))
            if row is not None:
                return row
        return None

    def check_params(self, request, client):
        """``token`` is required (RFC 7009 §2.1); a hint we do not know is ignored, not refused.

        RFC 7009 §2.1: "An invalid token type hint value is ignored by the authorization
        server and does not influence the revocation response."
        """
        if not request.form.get("token"):
            raise InvalidRequestError(description="The token parameter is required.")

    def authenticate_token(self, request, client):
        """Other clients' tokens are treated as unknown: 200 and nothing changes."""
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is not None and token.connection.client_id != client.id:
            token = None
        limits.count_connection(token.connection_id if token else None, client.id)
        return token

    def revoke_token(self, token, request):
        """End the token's connection (all its tokens) and record why."""
        end_connection(
            db.session, token.connection, "revoked_by_client", utcnow(),
            actor=request.client.public_id, ip=flask_request.remote_addr,
        )
        db.session.commit()


def authenticate_resource_server(connection, headers) -> str | None:
    """Public id of the registered, enabled resource server whose Basic credentials these are."""
    client_id, secret = basic_credentials(headers)
    memo = current_app.extensions["idp.resource_server_memo"]
    return resource_auth.check(connection, memo, client_id, secret)


def introspection_payload(result, issuer: str) -> dict:
    """RFC 7662 §2.2 body for a core verdict: active claims, or the §4 denial."""
    if not isinstance(result, Credential):
        return {"active": False, "denial": result.as_dict()}
    body = {
        "active": True,
        "token_type": "api_key" if result.kind == "api_key" else "access_token",
        "scope": join_scope(result.scopes),
        "org_id": result.org_id,
        "iat": epoch(result.issued_at),
        "iss": issuer,
    }
    if result.expires_at is not None:
        body["exp"] = epoch(result.expires_at)
    if result.kind == "api_key":
        body["key_id"] = result.key_id
    else:
        body.update(
            client_id=result.client_id, sub=result.user_id, username=result.user_email,
            connection_id=result.connection_id,
        )
    return body


class Introspection(IntrospectionEndpoint):
    """RFC 7662 for resource servers only; API keys and access tokens through the same core."""

    SUPPORTED_TOKEN_TYPES = ("access_token", "api_key", "refresh_token")

    def authenticate_endpoint_client(self, request, connection=None):
        """Only resource servers may introspect; connector clients get 401 like anyone else."""
        if connection is None:
            with reading(db.engine) as connection:
                return self.authenticate_endpoint_client(request, connection)
        server = authenticate_resource_server(connection, request.headers)
        if server is None:
            raise InvalidClientError(
                status_code=401, description="Introspection needs resource-server credentials."
            )
        request.client = server
        flask_request.environ["idp.resource_server"] = server
        limits.count_resource_server(server)
        return server

    def check_params(self, request, client):
        """``token`` is required and not empty (RFC 7662 §2.1).

        ``token_type_hint`` is accepted and ignored, whatever its value: the token's own
        prefix says what it is, and §2.1 lets a server that can tell by itself ignore the
        hint. So a wrong or unknown hint never changes an answer.
        """
        if not request.form.get("token"):
            raise InvalidRequestError(description="The token parameter is required.")

    def create_endpoint_response(self, request):
        """Judge the token with the shared core and describe the verdict."""
        now = utcnow()
        with reading(db.engine) as connection:
            self.authenticate_endpoint_client(request, connection)
            self.check_params(request, None)
            verdict = authenticate_token(connection, request.form["token"], now)
        if isinstance(verdict, Credential):
            # The caller is a service, not the token's user: record the time of use only and
            # keep the last address seen directly (by /api/v1/me) as it was.
            last_used.touch(db.session, verdict, now, current_app.config["IDP_LAST_USED_INTERVAL"])
        issuer = current_app.config["IDP_ISSUER"]
        return 200, introspection_payload(verdict, issuer), [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ]


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
