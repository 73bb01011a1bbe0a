"""In-process helpers for the OAuth tests: connect, exchange, refresh, and edit rows."""

import base64
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text

from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import AuditEvent
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Organization
from tests.helpers import authorize_params
from tests.helpers import csrf_token
from tests.helpers import flask_connect
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.helpers import token_request

#: The issuer every in-process test app uses (tests/conftest.py BASE_CONFIG).
ISSUER = "http://127.0.0.1:5000"


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 6749 §2.3.1)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def authorize_url(demo, client_key="zapier", **params) -> str:
    """An /oauth/authorize URL for a demo client; ``None`` values drop a parameter.

    The demo clients require PKCE, so an S256 challenge is added unless the test names its own
    ``code_challenge`` or ``code_challenge_method`` (or drops them with None).
    """
    base = authorize_params(demo["clients"][client_key], state=params.pop("state", "st-123"))
    if "code_challenge" not in params and "code_challenge_method" not in params:
        base.update(code_challenge=pkce_pair()[1], code_challenge_method="S256")
    base.update(params)
    return "/oauth/authorize?" + urlencode({k: v for k, v in base.items() if v is not None})


def consent(client, url: str, organization: str, decision="allow"):
    """Show the consent page at ``url`` and submit it; return the response to the POST."""
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)[:1000]
    return client.post(url, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "decision": decision,
        "organization": organization,
    })


def new_code(client, demo, client_key="zapier", *, scope=None, sign_in=True):
    """Sign in, allow, and return (code, verifier) for a PKCE S256 authorization."""
    if sign_in:
        flask_sign_in(client, demo)
    verifier, challenge = pkce_pair()
    response = flask_connect(client, demo, client_key, scope=scope, challenge=challenge)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return query_of(response.headers["Location"])["code"], verifier


def exchange(client, demo, code, verifier, client_key="zapier", **extra):
    """Redeem a code at the token endpoint with the client's body credentials."""
    data = {
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": demo["clients"][client_key]["redirect_uris"][0],
        "code_verifier": verifier, **extra,
    }
    return token_request(client, demo, {k: v for k, v in data.items() if v is not None},
                         client_key)


def connect(client, demo, client_key="zapier", *, scope=None, sign_in=True) -> dict:
    """The whole connect flow in-process; returns the first token response body."""
    code, verifier = new_code(client, demo, client_key, scope=scope, sign_in=sign_in)
    response = exchange(client, demo, code, verifier, client_key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refresh(client, demo, refresh_token, client_key="zapier", **extra):
    """Present a refresh token with the client's body credentials."""
    return token_request(client, demo, {
        "grant_type": "refresh_token", "refresh_token": refresh_token, **extra,
    }, client_key)


def me(client, access_token):
    """Call /api/v1/me with a bearer."""
    return client.get("/api/v1/me", headers={"Authorization": "Bearer " + access_token})


def reason(response) -> str:
    """The §4 reason of an API error response."""
    return response.get_json()["error"]["reason"]


def oauth_error(response) -> str:
    """The RFC 6749 §5.2 ``error`` of a token-endpoint response."""
    return response.get_json()["error"]


def client_row(demo, client_key="zapier") -> Client:
    """The demo client's row (call inside an app context)."""
    public_id = demo["clients"][client_key]["client_id"]
    return db.session.scalar(select(Client).where(Client.public_id == public_id))


def org_row(demo) -> Organization:
    """The demo organization's row (call inside an app context)."""
    return db.session.scalar(
        select(Organization).where(Organization.public_id == demo["organization"]["id"])
    )


def only_connection() -> Connection:
    """The single connection in the database (call inside an app context)."""
    rows = list(db.session.scalars(select(Connection)))
    assert len(rows) == 1, rows
    return rows[0]


def ended_connection_events(reason: str) -> list[str]:
    """Audit events of the single connection, which must have ended for ``reason`` (call
    inside an app context)."""
    connection = only_connection()
    assert connection.end_reason == reason
    return list(db.session.scalars(
        select(AuditEvent.event).where(AuditEvent.subject == connection.public_id)))


def add_org(app, demo, name: str, role="member") -> str:
    """Give the demo user another organization; return its public id."""
    with app.app_context():
        org = accounts.create_org(name)
        accounts.set_membership(accounts.find_user(demo["user"]["email"]), org, role)
        db.session.commit()
        return org.public_id


def _column_bytes(database_url: str) -> bytes:
    """Every text, JSON and binary value of every table, concatenated."""
    engine = create_engine(database_url)
    chunks = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            chunks.append(bytes(value))
                        elif value is not None:
                            chunks.append(str(value).encode())
    finally:
        engine.dispose()
    return b"\n".join(chunks)


def _file_bytes(database_url: str) -> bytes:
    """The raw bytes of an SQLite database with its write-ahead log, if any."""
    path = Path(database_url.removeprefix("sqlite:///"))
    parts = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def assert_nothing_raw_stored(database_url: str, raw_values) -> None:
    """No raw credential appears in the database: as text, as bytes, or hex-encoded."""
    haystacks = [_column_bytes(database_url)]
    if database_url.startswith("sqlite"):
        haystacks.append(_file_bytes(database_url))
    for raw in raw_values:
        assert raw, "an empty value would match anything"
        needle = raw.encode()
        for haystack in haystacks:
            assert needle not in haystack, f"raw value stored: {raw[:8]}…"
            assert needle.hex().encode() not in haystack.lower(), f"hex of {raw[:8]}… stored"
