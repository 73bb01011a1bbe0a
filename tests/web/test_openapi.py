"""docs/openapi.yaml is a valid OpenAPI 3.1 document, served as is, and the live IdP keeps it.

Schemathesis generates requests from the document against a real gunicorn server (a bounded
number per operation) and checks every response: never a 5xx, only documented statuses,
content types, headers and bodies.
"""

import base64
import os
from collections import Counter

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_headers_conformance
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig
from schemathesis.generation.hypothesis.builder import HypothesisTestMode
from schemathesis.generation.hypothesis.builder import create_test
from schemathesis.specs.openapi.checks import unsupported_method

from idp.web.openapi import DOCUMENT
from tests import failing_app
from tests.helpers import TEST_SECRET_KEY
from tests.helpers import fresh_database
from tests.prod_support import ConfiguredServer
from tests.prod_support import http_tokens
from tests.prod_support import seed

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
#: Generated cases per operation: enough to walk every error branch, bounded for CI time
#: (raise it locally for a deeper search).
EXAMPLES = int(os.environ.get("IDP_TEST_OPENAPI_EXAMPLES", "30"))
#: Which Authorization header a generated request gets (see ``credentials``).
CHOICES = ["good", "oauth", "wrong", "none"]


def test_the_document_is_valid_openapi_3_1():
    document = yaml.safe_load(DOCUMENT.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {
        "/.well-known/oauth-authorization-server", "/oauth/token", "/oauth/revoke",
        "/oauth/introspect", "/api/v1/me", "/healthz", "/readyz",
    }


def test_the_document_is_served(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.data == DOCUMENT.read_bytes()


@pytest.fixture(scope="module")
def live(template_db, tmp_path_factory):
    """A gunicorn IdP on a seeded database, plus working credentials for every door."""
    url = fresh_database(template_db, tmp_path_factory.mktemp("openapi"))
    demo = seed(url, {"SECRET_KEY": TEST_SECRET_KEY, "TESTING": True})
    server = ConfiguredServer(url, tmp_path_factory.mktemp("openapi-server"), workers=1,
                              threads=4)
    server.start()
    try:
        demo["tokens"] = http_tokens(server.url, demo)
        yield server, demo
    finally:
        server.stop()


def _basic(client_id: str, secret: str) -> str:
    """An HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def credentials(demo: dict, path: str, choice: str) -> str | None:
    """The Authorization header for ``path``: a working one, a wrong one, or none."""
    zapier = demo["clients"]["zapier"]
    good = {
        "/oauth/token": _basic(zapier["client_id"], zapier["client_secret"]),
        "/oauth/revoke": _basic(zapier["client_id"], zapier["client_secret"]),
        "/oauth/introspect": _basic(*demo["resource_server"]),
        "/api/v1/me": f"Bearer {demo['api_key']}",
    }
    if path not in good or choice == "none":
        return None
    if choice == "oauth" and path == "/api/v1/me":
        return f"Bearer {demo['tokens']['access_token']}"
    if choice == "wrong":
        return good[path][:-4] + "AAAA"
    return good[path]


def exercise(operation, demo: dict, seen: Counter):
    """A Hypothesis test that calls the live server with generated requests for ``operation``."""

    @given(case=operation.as_strategy(), choice=st.sampled_from(CHOICES))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case, choice):
        """One generated request, with the chosen credentials; every check must pass."""
        headers = {k: v for k, v in (case.headers or {}).items() if k != "Authorization"}
        header = credentials(demo, case.path, choice)
        if header:
            headers["Authorization"] = header
        case.headers = headers
        with requests.Session() as session:
            response = case.call_and_validate(session=session, checks=CHECKS, timeout=30)
        seen[(operation.label, response.status_code)] += 1

    return run


def test_the_live_idp_matches_its_document(live):
    server, demo = live
    api = schemathesis.openapi.from_url(server.url + "/openapi.yaml")
    operations = [result.ok() for result in api.get_all_operations()]
    seen = Counter()
    for operation in operations:
        exercise(operation, demo, seen)()
    print("\n" + "\n".join(f"{key[0]}: {key[1]} x{n}" for key, n in sorted(seen.items())))
    assert not [key for key in seen if key[1] >= 500]
    assert {label for label, _ in seen} == {operation.label for operation in operations}


def test_successful_token_answers_match_the_document(live):
    """Generated requests cannot guess a code or a refresh token; real ones are checked here."""
    server, demo = live
    api = schemathesis.openapi.from_url(server.url + "/openapi.yaml")
    token = api["/oauth/token"]["POST"]
    first = http_tokens(server.url, demo)
    zapier = demo["clients"]["zapier"]
    refreshed = requests.post(server.url + "/oauth/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": zapier["client_id"], "client_secret": zapier["client_secret"]})
    assert refreshed.status_code == 200
    token.validate_response(refreshed)
    introspect = api["/oauth/introspect"]["POST"]
    for bearer in (refreshed.json()["access_token"], demo["api_key"]):
        verdict = requests.post(server.url + "/oauth/introspect", data={"token": bearer},
                                timeout=30, headers={"Authorization": _basic(
                                    *demo["resource_server"])})
        assert verdict.json()["active"] is True
        introspect.validate_response(verdict)


def test_the_live_idp_refuses_what_its_document_does_not_allow(live):
    """Schemathesis' coverage phase: undocumented methods, undeclared and malformed media types.

    Every method a path does not take must be 405 with Allow, every body the OAuth endpoints
    cannot read 415, each in its documented shape. (Its Hypothesis builder is the only way to
    ask for this phase from Python.)
    """
    server, demo = live
    api = schemathesis.openapi.from_url(server.url + "/openapi.yaml")
    seen = Counter()

    def run(case):
        """One coverage case with working credentials; OPTIONS is Flask's own answer."""
        header = credentials(demo, case.path, "good")
        if header:
            case.headers = {**(case.headers or {}), "Authorization": header}
        checks = [not_a_server_error] if case.method == "OPTIONS" else [
            *CHECKS, unsupported_method]
        with requests.Session() as session:
            response = case.call_and_validate(session=session, checks=checks, timeout=30)
        seen[response.status_code] += 1

    for result in api.get_all_operations():
        create_test(operation=result.ok(), test_func=run, config=HypothesisTestConfig(
            project=api.config, modes=[HypothesisTestMode.COVERAGE]))()
    print(sorted(seen.items()))
    assert seen[405] and seen[415]
    assert not [status for status in seen if status >= 500]


def _response_schema(name: str) -> Draft202012Validator:
    """A validator for the JSON body of ``components/responses/<name>``."""
    document = yaml.safe_load(DOCUMENT.read_text())
    pointer = f"#/components/responses/{name}/content/application~1json/schema"
    return Draft202012Validator({**document, "$ref": pointer})


@pytest.mark.parametrize("path, response_name", [
    ("/api/v1/nope", "ApiNotFound"), ("/oauth/nope", "OAuthNotFound"),
    ("/.well-known/nope", "OAuthNotFound"),
])
def test_not_found_answers_match_the_document(client, path, response_name):
    response = client.get(path)
    assert response.status_code == 404
    _response_schema(response_name).validate(response.get_json())


@pytest.mark.parametrize("path, response_name", [
    ("/api/v1/_boom", "ApiServerError"), ("/oauth/_boom", "OAuthServerError"),
])
def test_server_error_answers_match_the_document(make_app, path, response_name):
    app = failing_app.install(make_app(PROPAGATE_EXCEPTIONS=False))
    response = app.test_client().get(path)
    assert response.status_code == 500
    _response_schema(response_name).validate(response.get_json())
