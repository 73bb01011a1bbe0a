"""Request bodies over IDP_MAX_BODY_BYTES: 413 in the shape of the endpoint that was called."""

import io

import pytest

LIMIT = 64 * 1024
#: A form just over the default limit.
TOO_LARGE = {"grant_type": "refresh_token", "token": "t", "padding": "x" * LIMIT}
FORM = "application/x-www-form-urlencoded"


def test_the_default_limit_is_64_kib(app):
    assert app.config["MAX_CONTENT_LENGTH"] == LIMIT


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_oauth_endpoints_answer_413_invalid_request(client, path):
    response = client.post(path, data=TOO_LARGE)
    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_request"
    assert str(LIMIT) in response.get_json()["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


def test_a_chunked_body_without_a_length_is_refused_too(client):
    # gunicorn marks a chunked body as terminated; Werkzeug then reads it up to the limit.
    response = client.post("/oauth/token", input_stream=io.BytesIO(b"a=" + b"x" * LIMIT),
                           content_type=FORM, environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"


def test_api_endpoints_answer_413_in_the_bearer_error_shape(client, demo):
    response = client.get("/api/v1/me", data=b"x" * (LIMIT + 1),
                          headers={"Authorization": "Bearer " + demo["api_key"]})
    assert response.status_code == 413
    assert response.get_json() == {"error": {
        "code": "CONTENT_TOO_LARGE", "reason": "content_too_large",
        "message": f"The request body is larger than {LIMIT} bytes."}}


@pytest.mark.parametrize("path", ["/login", "/settings/api-keys"])
def test_pages_answer_413_with_a_page(client, path):
    response = client.post(path, data={"email": "x" * LIMIT})
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "This request is too large" in response.get_data(as_text=True)


def test_a_body_under_the_limit_is_judged_as_usual(client):
    response = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                 "padding": "x" * (LIMIT - 1024)})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_the_limit_follows_the_setting(make_app):
    client = make_app(MAX_CONTENT_LENGTH=8 * 1024).test_client()
    response = client.post("/oauth/revoke", data={"token": "x" * 9000})
    assert response.status_code == 413
    assert response.get_json()["error_description"].endswith("8192 bytes.")
