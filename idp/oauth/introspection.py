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


def resource_server(conn, headers) -> str:
    """The public id of the resource server the Basic credentials in ``headers`` name, counted
    against its limit; InvalidClientError (401) when they name none."""
    server = authenticate_resource_server(conn, headers)
    if server is None:
        raise InvalidClientError(
            status_code=401, description="Introspection needs resource-server credentials."
        )
    limits.count_resource_server(server)
    return server


def check_token(form) -> None:
    """``token`` is required and not empty (RFC 7662 §2.1).

    ``token_type_hint`` is accepted and ignored, whatever its value: the token's own prefix
    says what it is, and §2.1 lets a server that can tell by itself ignore the hint. So a
    wrong or unknown hint never changes an answer.
    """
    if not form.get("token"):
        raise InvalidRequestError(description="The token parameter is required.")


def introspect(headers, form, environ: dict) -> tuple[int, dict, list]:
    """Authenticate and count the resource server, then judge the token with the shared core:
    the answer's status, body and headers, or an OAuth2Error Authlib words.

    Used by the endpoint below and by the lean path (idp/web/lean.py), which needs only an app
    context. A good token is left in ``g.introspected`` for the caller to record its use
    (OAuth hooks never commit).
    """
    now = utcnow()
    with reading(db.engine) as conn:
        server = resource_server(conn, headers)
        environ["idp.resource_server"] = server
        check_token(form)
        verdict = authenticate_token(conn, form["token"], now)
    if isinstance(verdict, Credential):
        g.introspected = (verdict, now)
    issuer = current_app.config["IDP_ISSUER"]
    return 200, introspection_payload(verdict, issuer), [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
    ]


class Introspection(IntrospectionEndpoint):
    """RFC 7662 for resource servers only; API keys and access tokens through the same core."""

    def authenticate_endpoint_client(self, request, conn=None):
        """Only resource servers may introspect; connector clients get 401 like anyone else."""
        if conn is None:
            with reading(db.engine) as conn:
                return self.authenticate_endpoint_client(request, conn)
        server = resource_server(conn, request.headers)
        request.client = server
        flask_request.environ["idp.resource_server"] = server
        return server

    def check_params(self, request, client):
        """``token`` is required and not empty (:func:`check_token`)."""
        check_token(request.form)

    def create_endpoint_response(self, request):
        """Judge the token with the shared core and describe the verdict (:func:`introspect`)."""
        return introspect(request.headers, request.form, flask_request.environ)
