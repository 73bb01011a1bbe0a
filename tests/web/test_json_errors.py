"""JSON paths answer every error as JSON; people get styled pages (SPEC §5, 2026-11-28)."""

import pytest
import requests

from tests import failing_app
from tests.helpers import LiveServer

#: (method, path, status, Allow) of routing errors on JSON paths.
ROUTING = [
    ("GET", "/api/v1/nope", 404, None),
    ("GET", "/api/v1", 404, None),
    ("POST", "/api/v1/me", 405, {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/oauth/token", 405, {"POST", "OPTIONS"}),
    ("PUT", "/oauth/introspect", 405, {"POST", "OPTIONS"}),
    ("DELETE", "/oauth/revoke", 405, {"POST", "OPTIONS"}),
    ("GET", "/oauth/nope", 404, None),
    ("GET", "/.well-known/nope", 404, None),
    ("POST", "/.well-known/oauth-authorization-server", 405, {"GET", "HEAD", "OPTIONS"}),
    ("POST", "/healthz", 405, {"GET", "HEAD", "OPTIONS"}),
    ("DELETE", "/readyz", 405, {"GET", "HEAD", "OPTIONS"}),
    ("POST", "/openapi.yaml", 405, {"GET", "HEAD", "OPTIONS"}),
]
#: The SPEC §4 code and reason on /api/*, the RFC 6749 error elsewhere.
API_CODES = {404: ("NOT_FOUND", "not_found"), 405: ("METHOD_NOT_ALLOWED", "method_not_allowed")}
OAUTH_CODES = {404: "not_found", 405: "invalid_request"}


def assert_json_error(response, path: str, status: int, allow=None):
    """The body is the shape of the path, with the expected code, and Allow on a 405."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    # Flask's test response has a ``json`` property, a requests response a ``json()`` method.
    body = response.json() if callable(response.json) else response.json
    if path.startswith("/api/"):
        code, reason = API_CODES[status]
        assert body["error"]["code"] == code
        assert body["error"]["reason"] == reason
        assert body["error"]["message"]
    else:
        assert body["error"] == OAUTH_CODES[status]
        assert body["error_description"]
        assert response.headers["Cache-Control"] == "no-store"
    if allow is None:
        assert "Allow" not in response.headers
    else:
        assert set(response.headers["Allow"].split(", ")) == allow
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("method, path, status, allow", ROUTING)
def test_routing_errors_on_json_paths_are_json(client, method, path, status, allow):
    assert_json_error(client.open(path, method=method), path, status, allow)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize("content_type, body", [
    ("application/json", '{"grant_type": "refresh_token"}'),
    ("text/plain", "grant_type=refresh_token"),
    ("application/xml", "<grant_type/>"),
    (None, "grant_type=refresh_token"),
])
def test_a_body_that_is_not_a_form_is_415(client, path, content_type, body):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 415
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "Send the parameters as application/x-www-form-urlencoded."}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8",
    "multipart/form-data",
])
def test_form_bodies_reach_the_endpoint(client, demo, content_type):
    zapier = demo["clients"]["zapier"]
    response = client.post("/oauth/revoke", content_type=content_type, data={
        "token": "fe_rt_" + "a" * 43,
        "client_id": zapier["client_id"], "client_secret": zapier["client_secret"]})
    assert response.status_code == 200


def test_no_body_is_left_to_the_endpoint_whatever_its_content_type(client):
    response = client.post("/oauth/token", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_an_unsupported_grant_type_is_described(client):
    response = client.post("/oauth/token", data={"grant_type": "password\u00e9"})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "unsupported_grant_type",
        "error_description": "grant_type must be authorization_code or refresh_token."}


@pytest.mark.parametrize("path", ["/", "/settings", "/settings/"])
def test_bare_addresses_lead_to_connected_apps_then_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/connected-apps"
    signed_out = client.get(path, follow_redirects=True)
    assert signed_out.request.path == "/login"


@pytest.mark.parametrize("method, path, status, title", [
    ("GET", "/nope", 404, "Page not found"),
    ("GET", "/oauth", 404, "Page not found"),
    ("GET", "/logout", 405, "This page cannot be opened this way"),
    ("DELETE", "/oauth/authorize", 405, "This page cannot be opened this way"),
])
def test_people_get_a_styled_page_with_a_next_step(client, method, path, status, title):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f'<h1 id="error-title">{title}</h1>' in page
    assert 'href="/settings/connected-apps"' in page
    assert "/static/app.css" in page


@pytest.fixture
def failing(make_app):
    """The IdP with routes that raise, answered as production would (not re-raised)."""
    app = failing_app.install(make_app(PROPAGATE_EXCEPTIONS=False))
    return app.test_client()


@pytest.mark.parametrize("path, expected", [
    ("/api/v1/_boom", {"error": {"code": "INTERNAL_ERROR", "reason": "internal_error",
                                 "message": "An unexpected error occurred; retry later, and "
                                            "quote the X-Request-ID if it persists."}}),
    ("/oauth/_boom", {"error": "server_error",
                      "error_description": "An unexpected error occurred; retry later, and "
                                           "quote the X-Request-ID if it persists."}),
])
def test_an_unexpected_failure_is_json_without_its_details(failing, path, expected):
    response = failing.get(path)
    assert response.status_code == 500
    assert response.get_json() == expected
    assert failing_app.SECRET not in response.get_data(as_text=True)


def test_an_unexpected_failure_on_a_page_gives_a_reference(failing):
    response = failing.get("/_boom", headers={"X-Request-ID": "req-500-page"})
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page
    assert "<code>req-500-page</code>" in page
    assert failing_app.SECRET not in page and "Traceback" not in page


@pytest.fixture
def failing_server(database_url, tmp_path):
    """gunicorn serving the IdP with the failing routes."""
    server = LiveServer(database_url, tmp_path, workers=1, threads=2,
                        target="tests.failing_app:app")
    server.start()
    yield server
    server.stop()


def test_json_errors_under_gunicorn(failing_server):
    url = failing_server.url
    for method, path, status, allow in ROUTING:
        assert_json_error(requests.request(method, url + path, timeout=10), path, status, allow)
    refused = requests.post(url + "/oauth/token", json={"grant_type": "refresh_token"},
                            timeout=10)
    assert refused.status_code == 415
    assert refused.json()["error"] == "invalid_request"
    for path, shape in (("/api/v1/_boom", "api"), ("/oauth/_boom", "oauth")):
        failed = requests.get(url + path, timeout=10)
        assert failed.status_code == 500
        body = failed.json()
        assert (body["error"]["code"] if shape == "api" else body["error"]) in (
            "INTERNAL_ERROR", "server_error")
        assert failing_app.SECRET not in failed.text
    # The traceback goes to the log, where operators look, and nowhere else.
    assert "RuntimeError" in failing_server.log()
