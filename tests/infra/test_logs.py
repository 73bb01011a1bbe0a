"""Request ids, structured lines, and no secret in any log line (SPEC §2)."""

import base64
import io
import json
import logging
import re
import threading

import pytest
import requests
from werkzeug.serving import make_server

from idp.cli.demo import seed_demo
from idp.infra import logs
from tests.prod_support import add_credentials
from tests.prod_support import http_code
from tests.prod_support import token_form

REDACTION_CASES = [
    ("issued fe_at_" + "A" * 43 + " ok", "issued fe_at_[redacted] ok"),
    ("key fe_k_0123456789abcdef0123456789abcdef.", "key fe_k_[redacted]."),
    ("rt=fe_rt_abc-_DEF", "rt=fe_rt_[redacted]"),
    ("GET /cb?code=Zm9vYmFy&state=st-1", "GET /cb?code=[redacted]&state=st-1"),
    ("client_secret=s3cr3t&client_id=abc", "client_secret=[redacted]&client_id=abc"),
    ("password=hunter2 next", "password=[redacted] next"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"),
    ("{'authorization': 'Bearer abc.def'}", "{'authorization': 'Bearer [redacted]'}"),
    ('{"refresh_token": "abc", "scope": "leads:read"}',
     '{"refresh_token": "[redacted]", "scope": "leads:read"}'),
    ("{'code': 'abc', 'state': 'x'}", "{'code': \"[redacted]\", 'state': 'x'}"),
    ("error_code=E42 status=401", "error_code=E42 status=401"),
]


@pytest.mark.parametrize("line, expected", REDACTION_CASES)
def test_redact(line, expected):
    assert logs.redact(line) == expected


@pytest.fixture
def captured():
    """Our own handler (the production formatter) writing into a buffer, on the root logger."""
    buffers = {}

    def attach(fmt="text"):
        stream = io.StringIO()
        handler = logs.make_handler(fmt, stream)
        logging.getLogger().addHandler(handler)
        buffers[handler] = stream
        return stream

    yield attach
    for handler in buffers:
        logging.getLogger().removeHandler(handler)


def test_request_id_is_echoed_when_sane(client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42:1"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.42:1"


@pytest.mark.parametrize("incoming", [
    "", "has space", "x" * 129, "tab\there", "-starts-with-dash", "ünïcode", "a;b", "q\"x",
])
def test_insane_request_id_is_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_request_id_made_when_absent_and_differs_per_request(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/readyz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_error_responses_carry_the_request_id(client):
    response = client.post("/oauth/token", data={"grant_type": "refresh_token"},
                           headers={"X-Request-ID": "req-1"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-1"


def test_log_lines_name_the_request(app, captured):
    stream = captured("json")
    logger = logging.getLogger("idp.test")
    logger.setLevel(logging.INFO)

    @app.get("/_probe")
    def probe():
        logger.info("probing with fe_rt_%s", "x" * 43)
        try:
            raise ValueError("client_secret=abc")
        except ValueError:
            logger.exception("failed")
        return "ok"

    app.test_client().get("/_probe", headers={"X-Request-ID": "abc-123"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["probing with fe_rt_[redacted]", "failed"]
    assert {line["request_id"] for line in lines} == {"abc-123"}
    assert {line["logger"] for line in lines} == {"idp.test"}
    assert "client_secret=[redacted]" in lines[1]["exception"]
    assert "abc" not in lines[1]["exception"].split("client_secret=")[1][:12]


def test_text_lines_outside_a_request_have_a_dash(captured):
    stream = captured("text")
    logger = logging.getLogger("idp.test")
    logger.setLevel(logging.INFO)
    logger.info("startup")
    assert re.search(r" INFO idp\.test \[-\] startup$", stream.getvalue().strip())


#: Loggers that could ever see a secret, all turned up to DEBUG for the flow below
#: (``sqlalchemy.engine`` by name: the migrations' logging config pins it to WARN).
NOISY = ("idp", "authlib", "werkzeug", "sqlalchemy", "sqlalchemy.engine")


@pytest.fixture
def debug_everything(template_db):
    """DEBUG on every noisy logger, captured raw (no redaction) and through our handler.

    Depends on the migrated template so the migrations' logging setup has already run.
    """
    raw, ours = io.StringIO(), io.StringIO()
    raw_handler = logging.StreamHandler(raw)
    raw_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    our_handler = logs.make_handler("json", ours)
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in NOISY}
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(raw_handler)
    root.addHandler(our_handler)
    yield raw, ours
    root.removeHandler(raw_handler)
    root.removeHandler(our_handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def served(make_app):
    """The IdP on werkzeug's own server in a thread, so its request log runs too."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["IDP_ISSUER"] = f"http://127.0.0.1:{server.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_no_secret_reaches_any_log_line_at_debug(debug_everything, served):
    raw, ours = debug_everything
    app, base = served
    with app.app_context():
        demo = seed_demo()
    extra = add_credentials(app, demo)
    rs_id, rs_secret = extra["resource_server"]
    rs_basic = "Basic " + base64.b64encode(f"{rs_id}:{rs_secret}".encode()).decode()
    secrets_seen = [demo["user"]["password"], extra["api_key"], rs_secret, "Wrong-Pass-123!"]
    secrets_seen += [c["client_secret"] for c in demo["clients"].values()]

    with requests.Session() as http:
        # A failed sign-in first: a mistyped password is as secret as the right one.
        http.post(base + "/login", data={"email": demo["user"]["email"],
                                         "password": "Wrong-Pass-123!"})
        code, verifier = http_code(base, demo, http)
        secrets_seen += [code, verifier]
        zapier = demo["clients"]["zapier"]
        tokens = http.post(base + "/oauth/token", data=token_form(
            demo, grant_type="authorization_code", code=code, code_verifier=verifier,
            redirect_uri=zapier["redirect_uris"][0])).json()
        secrets_seen += [tokens["access_token"], tokens["refresh_token"]]
        # A replayed code (ends the connection) is logged about, never echoed.
        replay = http.post(base + "/oauth/token", data=token_form(
            demo, grant_type="authorization_code", code=code, code_verifier=verifier,
            redirect_uri=zapier["redirect_uris"][0]))
        assert replay.status_code == 400
        code, verifier = http_code(base, demo, http)
        secrets_seen += [code, verifier]
        tokens = http.post(base + "/oauth/token", data=token_form(
            demo, grant_type="authorization_code", code=code, code_verifier=verifier,
            redirect_uri=zapier["redirect_uris"][0])).json()
        secrets_seen += [tokens["access_token"], tokens["refresh_token"]]
        old_refresh = tokens["refresh_token"]
        for _ in range(2):  # a rotation, then a grace-window replay of the same token
            body = http.post(base + "/oauth/token", data=token_form(
                demo, grant_type="refresh_token", refresh_token=old_refresh),
                headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
            secrets_seen += [body["access_token"], body["refresh_token"]]
        for bearer in (body["access_token"], extra["api_key"], "fe_at_" + "x" * 43):
            http.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {bearer}"})
            http.post(base + "/oauth/introspect", data={"token": bearer},
                      headers={"Authorization": rs_basic})
        http.post(base + "/oauth/revoke", data=token_form(demo, token=body["refresh_token"]),
                  auth=(zapier["client_id"], zapier["client_secret"]))

    raw_text, our_text = raw.getvalue(), ours.getvalue()
    # The capture really ran at DEBUG across the libraries (the IdP's own loggers were
    # listening too, but a healthy flow gives them nothing to say).
    for name in ("authlib", "werkzeug", "sqlalchemy.engine"):
        assert re.search(rf"^{re.escape(name)}[.\w]* ", raw_text, re.M), f"nothing from {name}"
    leaked = [s for s in secrets_seen if s in raw_text or s in our_text]
    assert len(leaked) == 0, f"{len(leaked)} secret(s) appear in the logs"
    for line in our_text.splitlines():
        json.loads(line)
