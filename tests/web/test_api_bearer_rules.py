"""SPEC §4 through three doors that must agree on every row, for API keys and OAuth tokens.

1. the IdP's own ``/api/v1/me`` (and a route needing ``leads:write``), judged in-process;
2. ``POST /oauth/introspect`` on a real IdP process, whose ``denial`` carries the same answer;
3. a toy leads API (tests/leads_app.py) protected by the kit, introspecting that real process.

One world of credentials and one server serve the whole module, so the table stays fast.
"""

from dataclasses import dataclass

import pytest
import requests

from idp import create_app
from idp.infra.extensions import db
from tests.bearer_world import SCOPED_PATH
from tests.bearer_world import WRITE_SCOPE
from tests.bearer_world import World
from tests.bearer_world import add_scoped_route
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key
from tests.conftest import BASE_CONFIG
from tests.helpers import LiveServer
from tests.helpers import fresh_database
from tests.leads_app import create_leads_app

pytestmark = pytest.mark.live

CHALLENGE = 'Bearer realm="FlowEstate"'
INVALID_TOKEN = CHALLENGE + ', error="invalid_token"'
SCOPE_CHALLENGE = CHALLENGE + f', error="insufficient_scope", scope="{WRITE_SCOPE}"'


@dataclass
class Doors:
    """The three ways in, on one database."""

    world: World
    idp: object  # Flask test client of the in-process IdP
    leads: object  # Flask test client of the toy leads API
    server: LiveServer

    def introspect(self, token: str, **extra) -> requests.Response:
        """Door 2: introspection over HTTP as the registered resource server."""
        rs = self.world.resource_server
        return requests.post(self.server.url + "/oauth/introspect",
                             data={"token": token, **extra},
                             auth=(rs["client_id"], rs["client_secret"]), timeout=10)


@pytest.fixture(scope="module")
def doors(template_db, tmp_path_factory):
    """A database with every kind of bearer, a live IdP on it, and the toy API in front."""
    directory = tmp_path_factory.mktemp("doors")
    url = fresh_database(template_db, directory)
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    add_scoped_route(app)
    with app.app_context():
        world = build_world(app)
    server = LiveServer(url, directory)
    server.start()
    rs = world.resource_server
    leads = create_leads_app(server.url + "/oauth/introspect", rs["client_id"],
                             rs["client_secret"])
    try:
        yield Doors(world, app.test_client(), leads.test_client(), server)
    finally:
        server.stop()
        leads.extensions["protector"].session.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@dataclass(frozen=True)
class Row:
    """One line of the table: what is sent, and the §4 answer every door must give."""

    name: str
    #: Builds the Authorization header value (None = no header) from the world.
    header: object
    status: int
    reason: str | None = None
    #: "read" = /api/v1/me and GET /leads; "write" = the routes needing leads:write.
    path: str = "read"
    #: The bare token, for door 2 (None when the row is about the header itself).
    token: object = None
    kind: str | None = None


def bearer(token_of):
    """A header builder 'Bearer <token>' from a token builder."""
    return lambda w: "Bearer " + token_of(w)


def token_row(name, token_of, status, reason=None, path="read", kind=None):
    """A row whose header is 'Bearer <token>' and whose token door 2 also judges."""
    return Row(name, bearer(token_of), status, reason, path, token_of, kind)


HEX31 = "0123456789abcdef0123456789abcde"
ROWS = [
    # The header itself (no token reaches introspection).
    Row("no header", lambda w: None, 401, "missing_authorization"),
    Row("basic scheme", lambda w: "Basic dXNlcjpwYXNzd29yZA==", 401, "malformed_authorization"),
    Row("bearer with nothing", lambda w: "Bearer", 401, "malformed_authorization"),
    Row("other scheme", lambda w: "Token " + w.keys["good"], 401, "malformed_authorization"),
    Row("two values", lambda w: f"Bearer {w.keys['good']} extra", 401,
        "malformed_authorization"),
    # API keys.
    token_row("key 31 hex", lambda w: "fe_k_" + HEX31, 401, "malformed_authorization",
              kind="api_key"),
    token_row("key uppercase hex", lambda w: "fe_k_" + HEX31.upper() + "F", 401,
              "malformed_authorization", kind="api_key"),
    token_row("key 10 kB", lambda w: "fe_k_" + "a" * 10240, 401, "malformed_authorization",
              kind="api_key"),
    token_row("key non-ASCII", lambda w: "fe_k_é" + HEX31, 401, "malformed_authorization",
              kind="api_key"),
    token_row("key unknown", lambda w: random_key(), 401, "unknown_token", kind="api_key"),
    token_row("key deleted", lambda w: w.keys["deleted"], 401, "unknown_token", kind="api_key"),
    token_row("key disabled", lambda w: w.keys["disabled"], 403, "key_inactive",
              kind="api_key"),
    token_row("key expired", lambda w: w.keys["expired"], 403, "key_expired", kind="api_key"),
    token_row("key of suspended org", lambda w: w.keys["suspended org"], 403, "org_unbound",
              kind="api_key"),
    token_row("key missing scope", lambda w: w.keys["good"], 403, "insufficient_scope",
              path="write", kind="api_key"),
    token_row("key whose creator left", lambda w: w.keys["creator left"], 200, kind="api_key"),
    token_row("key good", lambda w: w.keys["good"], 200, kind="api_key"),
    token_row("key with the scope", lambda w: w.keys["all scopes"], 200, path="write",
              kind="api_key"),
    # OAuth access tokens.
    token_row("token 10 kB", lambda w: "fe_at_" + "A" * 10240, 401, "malformed_authorization",
              kind="oauth"),
    token_row("token non-ASCII", lambda w: "fe_at_" + "é" * 43, 401,
              "malformed_authorization", kind="oauth"),
    token_row("token unknown", lambda w: random_access_token(), 401, "unknown_token",
              kind="oauth"),
    token_row("token expired", lambda w: w.tokens["expired"], 401, "token_expired",
              kind="oauth"),
    token_row("connection revoked", lambda w: w.tokens["revoked"], 401, "token_revoked",
              kind="oauth"),
    token_row("client disabled", lambda w: w.tokens["client disabled"], 403, "client_disabled",
              kind="oauth"),
    token_row("membership removed", lambda w: w.tokens["membership removed"], 403,
              "org_unbound", kind="oauth"),
    token_row("token of suspended org", lambda w: w.tokens["suspended org"], 403,
              "org_unbound", kind="oauth"),
    token_row("org dropped from allowlist", lambda w: w.tokens["allowlist dropped"], 403,
              "org_unbound", kind="oauth"),
    token_row("token missing scope", lambda w: w.tokens["good"], 403, "insufficient_scope",
              path="write", kind="oauth"),
    token_row("refresh token as bearer", lambda w: w.refresh["good"], 401, "unknown_token",
              kind="oauth"),
    token_row("token good", lambda w: w.tokens["good"], 200, kind="oauth"),
    token_row("token with the scope", lambda w: w.tokens["all scopes"], 200, path="write",
              kind="oauth"),
]


def answer(response):
    """Status, JSON body and challenge of a Flask test response."""
    return response.status_code, response.get_json(), response.headers.get("WWW-Authenticate")


def expected_challenge(row: Row) -> str | None:
    """The WWW-Authenticate value §4 gives this row."""
    if row.reason == "insufficient_scope":
        return SCOPE_CHALLENGE
    if row.status != 401:
        return None
    return CHALLENGE if row.reason == "missing_authorization" else INVALID_TOKEN


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_every_door_answers_the_same(doors, row):
    world = doors.world
    header = row.header(world)
    headers = {} if header is None else {"Authorization": header}
    me_path = "/api/v1/me" if row.path == "read" else SCOPED_PATH
    door1 = answer(doors.idp.get(me_path, headers=headers))
    if row.path == "read":
        door3 = answer(doors.leads.get("/api/v1/leads", headers=headers))
    else:
        door3 = answer(doors.leads.post("/api/v1/leads", headers=headers))
    token = row.token(world) if row.token else None

    if row.status == 200:
        assert door1[0] == 200, door1
        assert door3[0] in (200, 201), door3
        assert door3[1]["org_id"] == world.orgs["acme"]
        if row.path == "read":
            assert door1[1]["type"] == row.kind
            assert door1[1]["organization"]["id"] == world.orgs["acme"]
    else:
        for status, body, challenge in (door1, door3):
            assert status == row.status
            assert body["error"]["code"] == ("UNAUTHORIZED" if row.status == 401 else "FORBIDDEN")
            assert body["error"]["reason"] == row.reason
            assert body["error"]["message"]
            assert challenge == expected_challenge(row)
        assert door1[1] == door3[1], "both doors send the same body, message included"

    if token is None:
        return
    door2 = doors.introspect(token)
    assert door2.status_code == 200
    assert door2.headers["Cache-Control"] == "no-store"
    seen = door2.json()
    if row.status == 200 or row.reason == "insufficient_scope":
        # Introspection judges the credential; the endpoint judges its own scopes.
        assert seen["active"] is True
        assert seen["token_type"] == ("api_key" if row.kind == "api_key" else "access_token")
        assert seen["org_id"] == world.orgs["acme"]
        assert (WRITE_SCOPE in seen["scope"].split()) == (row.status == 200 and
                                                          row.path == "write")
    else:
        code = "UNAUTHORIZED" if row.status == 401 else "FORBIDDEN"
        assert seen == {"active": False,
                        "denial": {"status": row.status, "code": code, "reason": row.reason}}


@pytest.mark.parametrize("row", [r for r in ROWS if r.path == "read" and r.name not in
                                 ("key 10 kB", "token 10 kB")], ids=lambda r: r.name)
def test_the_live_process_agrees(doors, row):
    """/api/v1/me over real HTTP (gunicorn) gives the in-process answer."""
    header = row.header(doors.world)
    headers = {} if header is None else {"Authorization": header.encode("utf-8")}
    with requests.get(doors.server.url + "/api/v1/me", headers=headers, timeout=10) as response:
        assert response.status_code == row.status
        if row.status != 200:
            assert response.json()["error"]["reason"] == row.reason
            assert response.headers.get("WWW-Authenticate") == expected_challenge(row)


def test_a_10_kb_header_meets_the_servers_own_limit(doors):
    """Past gunicorn's header field limit (8190 bytes) the server answers before the IdP runs.

    SPEC §4 leaves such values to the HTTP server; in-process the same value is an ordinary
    401 malformed_authorization (the table above).
    """
    header = "Bearer fe_k_" + "a" * 10240
    with requests.get(doors.server.url + "/api/v1/me", headers={"Authorization": header},
                      timeout=10) as response:
        # gunicorn answers 431 Request Header Fields Too Large (RFC 6585 §5) by itself.
        assert response.status_code == 431
        assert "WWW-Authenticate" not in response.headers, "the IdP itself never ran"


def test_introspection_ignores_any_hint(doors):
    """The token's prefix says what it is; a wrong, unknown or empty hint changes nothing."""
    key = doors.world.keys["good"]
    token = doors.world.tokens["good"]
    for value, kind in ((key, "api_key"), (token, "access_token")):
        for hint in ("api_key", "access_token", "refresh_token", "bogus", ""):
            seen = doors.introspect(value, token_type_hint=hint).json()
            assert seen["active"] is True and seen["token_type"] == kind, (hint, seen)
    seen = doors.introspect(doors.world.keys["disabled"], token_type_hint="access_token").json()
    assert seen["denial"]["reason"] == "key_inactive"


def test_introspection_claims(doors):
    """The fields SPEC §5.5 lists for each kind, and nothing of the other kind."""
    world = doors.world
    key = doors.introspect(world.keys["good"]).json()
    assert key["key_id"] == world.key_ids["good"]
    assert key["scope"] == "contacts:read leads:read"
    assert key["iss"] == doors.server.url and isinstance(key["iat"], int)
    assert "exp" not in key and "connection_id" not in key and "sub" not in key
    token = doors.introspect(world.tokens["good"]).json()
    assert token["connection_id"] == world.connections["good"]
    assert token["client_id"] == world.demo["clients"]["zapier"]["client_id"]
    assert token["username"] == world.demo["user"]["email"]
    assert token["sub"].startswith("usr_") and token["exp"] > token["iat"]
    assert "key_id" not in token


def org_ids_in(text: str, world: World) -> set[str]:
    """Which of the world's organization ids appear anywhere in a response text."""
    return {name for name, org_id in world.orgs.items() if org_id in text}


@pytest.mark.parametrize("credential", [("keys", "good", "acme"), ("tokens", "good", "acme"),
                                        ("keys", "other org", "other"),
                                        ("tokens", "other org", "other")],
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_a_credential_only_ever_yields_its_own_org(doors, credential):
    """No door, parameter or header lets a credential of one org see another org's id."""
    world = doors.world
    group, name, own = credential
    raw = getattr(world, group)[name]
    auth = {"Authorization": "Bearer " + raw}
    stranger = "other" if own == "acme" else "acme"
    texts = [
        doors.idp.get("/api/v1/me", headers=auth).get_data(as_text=True),
        doors.idp.get(f"/api/v1/me?organizationId={world.orgs[stranger]}",
                      headers={**auth, "X-Organization-Id": world.orgs[stranger]})
        .get_data(as_text=True),
        doors.introspect(raw).text,
        doors.leads.get("/api/v1/whoami", headers=auth).get_data(as_text=True),
    ]
    leads = doors.leads.get(f"/api/v1/leads?organizationId={world.orgs[stranger]}",
                            headers=auth).get_json()
    assert leads["org_id"] == world.orgs[own]
    assert all(lead["org_id"] == world.orgs[own] for lead in leads["leads"])
    for text in texts:
        assert org_ids_in(text, world) == {own}, text


def test_the_server_log_holds_no_credential(doors):
    """Runs last: after every door was tried, the server's output shows no raw key or token."""
    log = doors.server.log()
    assert "Starting gunicorn" in log, "the output is there to be read"
    world = doors.world
    for raw in [*world.keys.values(), *world.tokens.values(), *world.refresh.values(),
                world.resource_server["client_secret"]]:
        assert raw not in log
