"""The lean read path (idp/web/lean.py) gives the product Flask's views give, row by row.

Each request goes through the app twice, once answered by the lean path and once by Flask's
views (``IDP_LEAN_PATH`` off), from the same counters; status, body and every header must
agree (the rate-limit reset and Retry-After within the second that may pass between the two).
"""

import base64
import io
import json
import logging
import re
from dataclasses import dataclass
from dataclasses import field

import pytest
from sqlalchemy.exc import OperationalError

from idp.infra.extensions import db
from idp.infra.extensions import limiter
from idp.store import last_used
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key

ME = "/api/v1/me"
INTROSPECT = "/oauth/introspect"
#: Headers that carry a time: equal within one second.
TIMED = ("X-RateLimit-Reset", "Retry-After")
REQUEST_ID = "req-lean-parity-1"
#: A request id the IdP made itself.
FRESH_ID = re.compile(r"[0-9a-f]{32}")


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@dataclass
class Row:
    """One request: method, path, headers, form or raw body, and settings for this row."""

    name: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    data: object = None
    settings: dict = field(default_factory=dict)
    repeat: int = 1  # sent this many times; the last answer is compared
    lean: bool = True  # whether the lean path answers it (else it falls through to Flask)
    base_url: str = "http://localhost"
    cookie: str | None = None  # a session cookie sent along


@pytest.fixture(scope="module")
def world_app(tmp_path_factory, template_db):
    """One IdP and one world of credentials for the whole table."""
    from idp import create_app
    from tests.conftest import BASE_CONFIG
    from tests.helpers import fresh_database

    url = fresh_database(template_db, tmp_path_factory.mktemp("lean"))
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        world = build_world(app)
    yield app, world
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def rows(world) -> list[Row]:
    """Every §4 row through /api/v1/me, and introspection's rows, plus the edges of both."""
    rs = world.resource_server
    rs_auth = basic(rs["client_id"], rs["client_secret"])
    zapier = world.demo["clients"]["zapier"]
    table = [
        Row("me, no header", "GET", ME),
        Row("me, empty bearer", "GET", ME, {"Authorization": "Bearer "}),
        Row("me, malformed", "GET", ME, {"Authorization": "Bearer not-a-token"}),
        Row("me, basic", "GET", ME, {"Authorization": "Basic Zm9vOmJhcg=="}),
        Row("me, lower-case scheme", "GET", ME, {"Authorization": "bearer " + world.keys["good"]}),
        Row("me, unknown key", "GET", ME, {"Authorization": "Bearer " + random_key()}),
        Row("me, unknown token", "GET", ME, {"Authorization": "Bearer " + random_access_token()}),
        Row("me, HEAD", "HEAD", ME, {"Authorization": "Bearer " + world.keys["good"]}),
        Row("me, no request id", "GET", ME, {"Authorization": "Bearer " + world.keys["good"],
                                             "X-Request-ID": "bad id with spaces"}),
        Row("me, oversized body", "GET", ME, {"Authorization": "Bearer " + world.keys["good"],
                                              "Content-Type": "text/plain"}, data=b"x" * 70000),
        Row("me, rate limited", "GET", ME, {"Authorization": "Bearer " + world.keys["good"]},
            settings={"IDP_API_RATE_LIMIT": "1 per minute"}, repeat=2),
        Row("me, OPTIONS", "OPTIONS", ME, lean=False),
        Row("me, PUT", "PUT", ME, {"Authorization": "Bearer " + world.keys["good"]}, lean=False),
        Row("me, POST", "POST", ME, data={"x": "1"}, lean=False),
        Row("me, with a cookie", "GET", ME, {"Authorization": "Bearer " + world.keys["good"]},
            cookie="stale", lean=False),
        Row("introspect, no client", "POST", INTROSPECT, data={"token": world.keys["good"]}),
        Row("introspect, wrong secret", "POST", INTROSPECT,
            basic(rs["client_id"], rs["client_secret"] + "x"), {"token": world.keys["good"]}),
        Row("introspect, connector", "POST", INTROSPECT,
            basic(zapier["client_id"], zapier["client_secret"]), {"token": world.keys["good"]}),
        Row("introspect, garbled basic", "POST", INTROSPECT,
            {"Authorization": "Basic !!!"}, {"token": world.keys["good"]}),
        Row("introspect, missing token", "POST", INTROSPECT, rs_auth, {}),
        Row("introspect, empty token", "POST", INTROSPECT, rs_auth, {"token": ""}),
        Row("introspect, junk token", "POST", INTROSPECT, rs_auth, {"token": "junk"}),
        Row("introspect, hint", "POST", INTROSPECT, rs_auth,
            {"token": world.tokens["good"], "token_type_hint": "refresh_token"}),
        Row("introspect, json body", "POST", INTROSPECT,
            {**rs_auth, "Content-Type": "application/json"},
            json.dumps({"token": world.keys["good"]}).encode()),
        Row("introspect, multipart", "POST", INTROSPECT,
            {**rs_auth, "Content-Type": "multipart/form-data; boundary=b"},
            (b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n'
             + world.keys["good"].encode() + b"\r\n--b--\r\n")),
        Row("introspect, oversized body", "POST", INTROSPECT, rs_auth,
            {"token": world.keys["good"], "pad": "x" * 70000}),
        Row("introspect, failing address limited", "POST", INTROSPECT,
            basic(rs["client_id"], "wrong"), {"token": world.keys["good"]},
            settings={"IDP_AUTH_FAILURE_RATE_LIMIT": "1 per minute"}, repeat=2),
        Row("introspect, resource server limited", "POST", INTROSPECT, rs_auth,
            {"token": world.keys["good"]},
            settings={"IDP_INTROSPECTION_RATE_LIMIT": "1 per minute"}, repeat=2),
        Row("introspect, GET", "GET", INTROSPECT, rs_auth, lean=False),
        Row("introspect, HEAD", "HEAD", INTROSPECT, rs_auth, lean=False),
        Row("introspect, OPTIONS", "OPTIONS", INTROSPECT, lean=False),
        Row("introspect, PUT", "PUT", INTROSPECT, rs_auth, {"token": "x"}, lean=False),
    ]
    for name, raw in world.keys.items():
        table.append(Row(f"me, key {name}", "GET", ME, {"Authorization": "Bearer " + raw}))
        table.append(Row(f"introspect, key {name}", "POST", INTROSPECT, rs_auth, {"token": raw}))
    for name, raw in world.tokens.items():
        table.append(Row(f"me, token {name}", "GET", ME, {"Authorization": "Bearer " + raw}))
        table.append(Row(f"introspect, token {name}", "POST", INTROSPECT, rs_auth,
                         {"token": raw}))
    return table


def reset_counters(app) -> None:
    """Every rate-limit counter back to zero (the shared store's and this process's own)."""
    with app.app_context():
        limiter.reset()
    app.extensions["idp.local_counters"].reset()


def send(app, row: Row, lean: bool):
    """The row's last answer with the lean path on or off, from fresh counters."""
    saved = {name: app.config[name] for name in row.settings}
    app.config.update(row.settings, IDP_LEAN_PATH=lean)
    reset_counters(app)
    last_used.forget()
    client = app.test_client()
    if row.cookie:
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], row.cookie)
    headers = {"X-Request-ID": REQUEST_ID, **row.headers}
    try:
        for _ in range(row.repeat):
            answer = client.open(row.path, method=row.method, headers=headers, data=row.data,
                                 base_url=row.base_url)
    finally:
        app.config.update(saved, IDP_LEAN_PATH=True)
    return answer


def assert_same(lean, flask) -> None:
    """Same status, body and headers (times within a second)."""
    assert lean.status_code == flask.status_code
    assert lean.get_data() == flask.get_data()
    assert {k for k, _ in lean.headers} == {k for k, _ in flask.headers}
    for name, value in flask.headers.items():
        if name == "X-Request-ID" and value != REQUEST_ID:  # a fresh one on each path
            assert FRESH_ID.fullmatch(lean.headers[name]) and FRESH_ID.fullmatch(value)
        elif name in TIMED:
            assert abs(int(lean.headers[name]) - int(value)) <= 1, name
        else:
            assert lean.headers.getlist(name) == flask.headers.getlist(name), name


def test_every_row_gets_the_same_answer_from_both_paths(world_app):
    app, world = world_app
    lean_path = app.extensions["idp.lean"]
    for row in rows(world):
        before = lean_path.answered
        lean = send(app, row, lean=True)
        answered = lean_path.answered - before
        flask = send(app, row, lean=False)
        assert lean_path.answered - before == answered, row.name
        assert answered == (row.repeat if row.lean else 0), row.name
        try:
            assert_same(lean, flask)
        except AssertionError as error:
            raise AssertionError(f"{row.name}: {error}") from error


def test_the_lean_path_answers_the_tables_own_status_codes(world_app):
    """The table is not one answer compared with itself: it meets every kind of answer."""
    app, world = world_app
    statuses = {send(app, row, lean=True).status_code for row in rows(world)}
    assert {200, 400, 401, 403, 413, 415, 429} <= statuses


def test_limits_count_across_both_paths(world_app):
    app, world = world_app
    app.config["IDP_API_RATE_LIMIT"] = "2 per minute"
    try:
        reset_counters(app)
        client = app.test_client()
        headers = {"Authorization": "Bearer " + world.keys["good"]}
        app.config["IDP_LEAN_PATH"] = False
        assert client.get(ME, headers=headers).status_code == 200
        app.config["IDP_LEAN_PATH"] = True
        assert client.get(ME, headers=headers).status_code == 200
        refused = client.get(ME, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Remaining"] == "0"
    finally:
        app.config["IDP_API_RATE_LIMIT"] = "100000 per minute"


@pytest.mark.parametrize("path", [ME, INTROSPECT])
def test_a_database_outage_is_the_same_503(world_app, monkeypatch, path):
    app, world = world_app

    def down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr("idp.web.guard.authenticate", down)
    monkeypatch.setattr("idp.oauth.introspection.authenticate_token", down)
    rs = world.resource_server
    row = Row("outage", "POST", path, basic(rs["client_id"], rs["client_secret"]),
              {"token": world.keys["good"]})
    if path == ME:
        row = Row("outage", "GET", path, {"Authorization": "Bearer " + world.keys["good"]})
    lean, flask = send(app, row, lean=True), send(app, row, lean=False)
    assert lean.status_code == 503 and lean.headers["Retry-After"]
    assert_same(lean, flask)


def test_insecure_transport_in_production_is_the_same_503(make_app):
    app = make_app(IDP_ISSUER="https://idp.flowestate.example", IDP_DEVELOPMENT=False,
                   IDP_ALLOW_SQLITE=True,
                   IDP_PROXY_HOPS=1)
    row = Row("plain http", "POST", INTROSPECT, {"X-Forwarded-Proto": "http"},
              {"token": "fe_k_" + "0" * 32}, base_url="http://idp.flowestate.example")
    lean, flask = send(app, row, lean=True), send(app, row, lean=False)
    assert lean.status_code == 503
    assert lean.headers["Strict-Transport-Security"]
    assert_same(lean, flask)
    assert app.extensions["idp.lean"].answered == 1


def test_lean_answers_are_counted_as_flask_counts_them(make_app):
    from idp.infra import metrics

    app = make_app(IDP_METRICS_BIND="127.0.0.1:9", IDP_INTROSPECTION_RATE_LIMIT="1 per minute")
    with app.app_context():
        world = build_world(app)
    rs = world.resource_server
    row = Row("limited", "POST", INTROSPECT, basic(rs["client_id"], rs["client_secret"]),
              {"token": world.keys["good"]}, repeat=2)

    def sample(name, **labels):
        return metrics.registry().get_sample_value(name, labels) or 0.0

    def counts():
        return (sample("idp_http_requests_total", endpoint="oauth.introspect", status="200"),
                sample("idp_http_requests_total", endpoint="oauth.introspect", status="429"),
                sample("idp_rate_limit_refusals_total", limit="introspection"),
                sample("idp_http_request_duration_seconds_count", endpoint="oauth.introspect"))

    before = counts()
    send(app, row, lean=False)
    middle = counts()
    send(app, row, lean=True)
    after = counts()
    flask_moved = [b - a for a, b in zip(before, middle, strict=True)]
    lean_moved = [b - a for a, b in zip(middle, after, strict=True)]
    assert flask_moved == lean_moved == [1, 1, 1, 2]
    assert app.extensions["idp.lean"].answered == 2


def test_log_lines_of_a_lean_answer_carry_its_request_id(world_app, monkeypatch, caplog):
    app, world = world_app

    def down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr("idp.web.guard.authenticate", down)
    from idp.infra import logs

    stream = io.StringIO()
    handler = logs.make_handler("json", stream)
    logging.getLogger().addHandler(handler)
    try:
        send(app, Row("outage", "GET", ME, {"Authorization": "Bearer " + world.keys["good"]}),
             lean=True)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"database unavailable: OperationalError"} <= {line["message"] for line in lines}
    assert {line["request_id"] for line in lines} == {REQUEST_ID}
