"""The kit's plain WSGI middleware answers exactly as its Flask adapter, and routes by rule.

Both face the same in-process IdP (tests/kit_support.py): the toy leads API of
tests/leads_app.py behind the Flask adapter, and the same routes as a bare WSGI application
behind :class:`BearerMiddleware`.
"""

import json

import pytest
from werkzeug.test import Client

from flowestate_kit.wsgi import ENVIRON_KEY
from flowestate_kit.wsgi import BearerMiddleware
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key
from tests.kit_support import UNREACHABLE
from tests.kit_support import FlaskTransport
from tests.leads_app import create_leads_app

URL = "https://idp.test/oauth/introspect"
RULES = {"/api/v1/leads": "leads:read", "POST /api/v1/leads": ("leads:write",),
         "/api/v1/whoami": ()}
#: The headers a §4 answer is made of; Retry-After of a 429 is compared apart (it ticks).
COMPARED = ("WWW-Authenticate", "X-RateLimit-Limit", "X-RateLimit-Remaining")


def leads_wsgi(environ, start_response):
    """The toy leads API's routes as a bare WSGI application reading the judged bearer."""
    bearer = environ[ENVIRON_KEY]
    if environ["REQUEST_METHOD"] == "POST":
        status, body = "201 CREATED", {"org_id": bearer.org_id, "created": True}
    elif environ["PATH_INFO"] == "/api/v1/whoami":
        status, body = "200 OK", {"token_type": bearer.token_type, "org_id": bearer.org_id}
    else:
        status, body = "200 OK", {"org_id": bearer.org_id, "ignored_parameter": None,
                                  "leads": [{"id": "lead_1", "org_id": bearer.org_id}]}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


@pytest.fixture
def world(app):
    """Every kind of credential, on the test's database."""
    with app.app_context():
        return build_world(app)


def both(app, world, **options):
    """The Flask adapter's and the middleware's clients, each with its own IdP transport."""
    rs = world.resource_server
    flask_transport, wsgi_transport = FlaskTransport(app.test_client()), FlaskTransport(
        app.test_client())
    flask = create_leads_app(URL, rs["client_id"], rs["client_secret"],
                             session=flask_transport, **options).test_client()
    rate_limit = options.pop("rate_limit", "100000 per minute")
    middleware = BearerMiddleware(leads_wsgi, URL, rs["client_id"], rs["client_secret"],
                                  rules=RULES, rate_limit=rate_limit, session=wsgi_transport,
                                  **options)
    return (flask, flask_transport), (Client(middleware), wsgi_transport)


def answer(response) -> tuple:
    """Status, JSON body and the §4 headers of a response."""
    return (response.status_code, response.get_json(),
            {name: response.headers.get(name) for name in COMPARED})


ROWS = {
    "missing": ("GET", lambda w: None, 401, "missing_authorization"),
    "malformed scheme": ("GET", lambda w: "Basic dXNlcjpwYXNz", 401, "malformed_authorization"),
    "malformed key": ("GET", lambda w: "Bearer fe_k_" + "A" * 32, 401,
                      "malformed_authorization"),
    "unknown key": ("GET", lambda w: "Bearer " + random_key(), 401, "unknown_token"),
    "unknown token": ("GET", lambda w: "Bearer " + random_access_token(), 401,
                      "unknown_token"),
    "disabled key": ("GET", lambda w: "Bearer " + w.keys["disabled"], 403, "key_inactive"),
    "expired token": ("GET", lambda w: "Bearer " + w.tokens["expired"], 401, "token_expired"),
    "active, insufficient scope": ("POST", lambda w: "Bearer " + w.keys["good"], 403,
                                   "insufficient_scope"),
    "active key": ("GET", lambda w: "Bearer " + w.keys["good"], 200, None),
    "active token": ("GET", lambda w: "Bearer " + w.tokens["good"], 200, None),
    "active with the write scope": ("POST", lambda w: "Bearer " + w.keys["all scopes"], 201,
                                    None),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_the_middleware_answers_as_the_flask_adapter(app, world, name):
    method, header_of, status, reason = ROWS[name]
    (flask, _), (wsgi, _) = both(app, world)
    header = header_of(world)
    headers = {"Authorization": header} if header is not None else {}
    via_flask = answer(flask.open("/api/v1/leads", method=method, headers=headers))
    via_wsgi = answer(wsgi.open("/api/v1/leads", method=method, headers=headers))
    assert via_wsgi == via_flask
    assert via_wsgi[0] == status
    if reason is None:
        assert via_wsgi[1]["org_id"] == world.orgs["acme"]
    else:
        assert via_wsgi[1]["error"]["reason"] == reason


def test_when_the_idp_is_down_both_answer_503_and_cache_nothing(app, world):
    (flask, flask_transport), (wsgi, wsgi_transport) = both(app, world)
    headers = {"Authorization": "Bearer " + world.keys["good"]}
    flask_transport.failure = wsgi_transport.failure = UNREACHABLE
    via_flask = flask.get("/api/v1/leads", headers=headers)
    via_wsgi = wsgi.get("/api/v1/leads", headers=headers)
    assert answer(via_wsgi) == answer(via_flask)
    assert via_wsgi.status_code == 503
    assert via_wsgi.headers["Retry-After"] == via_flask.headers["Retry-After"] == "5"
    assert via_wsgi.get_json()["error"]["reason"] == "temporarily_unavailable"
    wsgi_transport.failure = None
    assert wsgi.get("/api/v1/leads", headers=headers).status_code == 200


def test_both_limit_a_flood_of_unknown_bearers_alike(app, world):
    (flask, _), (wsgi, wsgi_transport) = both(app, world, unknown_rate_limit="2 per minute")
    for _ in range(2):
        headers = {"Authorization": "Bearer " + random_key()}
        assert answer(wsgi.get("/api/v1/leads", headers=headers)) == answer(
            flask.get("/api/v1/leads", headers=headers))
    headers = {"Authorization": "Bearer " + random_key()}
    via_flask = flask.get("/api/v1/leads", headers=headers)
    via_wsgi = wsgi.get("/api/v1/leads", headers=headers)
    assert via_wsgi.status_code == via_flask.status_code == 429
    assert via_wsgi.get_json() == via_flask.get_json()
    assert 0 < int(via_wsgi.headers["Retry-After"]) <= 60
    assert wsgi_transport.calls == 2, "the third never reached the IdP"


def test_both_limit_each_credential_alike(app, world):
    (flask, _), (wsgi, _) = both(app, world, rate_limit="2 per minute")
    headers = {"Authorization": "Bearer " + world.keys["good"]}
    for expected in (200, 200, 429):
        via_flask = flask.get("/api/v1/leads", headers=headers)
        via_wsgi = wsgi.get("/api/v1/leads", headers=headers)
        assert answer(via_wsgi) == answer(via_flask)
        assert via_wsgi.status_code == expected
    assert via_wsgi.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(via_wsgi.headers["Retry-After"]) <= 60


def test_the_application_finds_the_bearer_and_unruled_paths_pass_untouched(app, world):
    seen = []

    def inner(environ, start_response):
        seen.append((environ["PATH_INFO"], environ.get(ENVIRON_KEY)))
        start_response("204 NO CONTENT", [])
        return [b""]

    rs = world.resource_server
    transport = FlaskTransport(app.test_client())
    wsgi = Client(BearerMiddleware(inner, URL, rs["client_id"], rs["client_secret"],
                                   rules=RULES, session=transport))
    assert wsgi.get("/healthz").status_code == 204
    assert wsgi.get("/api/v1/leadsheet").status_code == 204, "a prefix ends at a slash"
    assert wsgi.get("/api/v1/whoami/x", headers={
        "Authorization": "Bearer " + world.keys["good"]}).status_code == 204
    assert transport.calls == 1
    assert [path for path, _ in seen] == ["/healthz", "/api/v1/leadsheet", "/api/v1/whoami/x"]
    assert seen[0][1] is None and seen[1][1] is None
    bearer = seen[2][1]
    assert (bearer.token_type, bearer.org_id) == ("api_key", world.orgs["acme"])


def test_a_rule_naming_the_method_wins_and_the_longest_prefix_first(app, world):
    rs = world.resource_server
    middleware = BearerMiddleware(leads_wsgi, URL, rs["client_id"], rs["client_secret"],
                                  rules={"/": "leads:read", "/api": "contacts:read",
                                         "DELETE /api": "leads:write"})
    assert middleware.scopes_for("GET", "/api/v1/leads") == ("contacts:read",)
    assert middleware.scopes_for("DELETE", "/api/v1/leads") == ("leads:write",)
    assert middleware.scopes_for("GET", "/other") == ("leads:read",)


@pytest.mark.parametrize("options", [{"rules": {"api/v1": "leads:read"}},
                                     {"rules": {}, "rate_limit": "often"},
                                     {"rules": {}, "inactive_ttl": 6}])
def test_bad_middleware_settings_are_refused(options):
    with pytest.raises(ValueError):
        BearerMiddleware(leads_wsgi, URL, "rs_x", "secret", **options)
