"""RFC 8414 metadata (SPEC §5.1): every field the contract names, with exactly its value."""

from tests.oauth_helpers import ISSUER


def test_metadata_fields_exactly_as_specified(client):
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200 and response.mimetype == "application/json"
    meta = response.get_json()
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == ISSUER + "/oauth/authorize"
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["revocation_endpoint"] == ISSUER + "/oauth/revoke"
    assert meta["introspection_endpoint"] == ISSUER + "/oauth/introspect"
    assert meta["scopes_supported"] == [
        "leads:read", "leads:write", "contacts:read", "contacts:write", "properties:read",
        "properties:write", "pipelines:read", "pipelines:write", "tasks:read", "tasks:write",
        "webhooks:read", "webhooks:write",
    ]
    assert meta["response_types_supported"] == ["code"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert sorted(meta["token_endpoint_auth_methods_supported"]) == [
        "client_secret_basic", "client_secret_post"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    # Nothing advertised beyond what the server really does (RFC 8414 §2).
    assert set(meta) <= {
        "issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint",
        "introspection_endpoint", "scopes_supported", "response_types_supported",
        "response_modes_supported", "grant_types_supported",
        "token_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported", "code_challenge_methods_supported",
        "authorization_response_iss_parameter_supported",
    }
    assert meta.get("response_modes_supported", ["query"]) == ["query"]
    assert meta.get("introspection_endpoint_auth_methods_supported",
                    ["client_secret_basic"]) == ["client_secret_basic"]


def test_metadata_follows_the_configured_issuer(make_app):
    app = make_app(IDP_ISSUER="http://localhost:8123")
    meta = app.test_client().get("/.well-known/oauth-authorization-server").get_json()
    assert meta["issuer"] == "http://localhost:8123"
    assert meta["token_endpoint"] == "http://localhost:8123/oauth/token"
