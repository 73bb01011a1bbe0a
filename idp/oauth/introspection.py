"""RFC 7662 token introspection for resource servers: API keys and access tokens alike."""

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app
from flask import g
from flask import request as flask_request

from idp.core.clock import epoch
from idp.core.clock import utcnow
from idp.core.credentials import Credential
from idp.core.scopes import join_scope
from idp.infra.extensions import db
from idp.oauth import limits
from idp.oauth.client_auth import authenticate_resource_server
from idp.store.credentials import authenticate_token
from idp.store.database import reading


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

    def authenticate_endpoint_client(self, request, conn=None):
        """Only resource servers may introspect; connector clients get 401 like anyone else."""
        if conn is None:
            with reading(db.engine) as conn:
                return self.authenticate_endpoint_client(request, conn)
        server = authenticate_resource_server(conn, request.headers)
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
        with reading(db.engine) as conn:
            self.authenticate_endpoint_client(request, conn)
            self.check_params(request, None)
            verdict = authenticate_token(conn, request.form["token"], now)
        if isinstance(verdict, Credential):
            # The view records the time of use after this hook (OAuth hooks never commit).
            g.introspected = (verdict, now)
        issuer = current_app.config["IDP_ISSUER"]
        return 200, introspection_payload(verdict, issuer), [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ]
