"""SSF stream management (docs/ssf.md, "Endpoints"): metadata, configuration round trip, and
the exact status and error code of every refusal."""

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.ssf.stream_delivery import push_authorization
from idp.store.models import ResourceServer
from idp.store.models.ssf import SsfStream
from tests.factories import committing
from tests.ssf_support import POLL
from tests.ssf_support import PUSH
from tests.ssf_support import basic
from tests.ssf_support import new_stream
from tests.ssf_support import receiver

ISSUER = "http://127.0.0.1:5000"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SUPPORTED = [CAEP + "session-revoked", CAEP + "credential-change",
             ISSUER + "/ssf/event-type/access-paused", ISSUER + "/ssf/event-type/access-resumed"]


@pytest.fixture
def rs(factory) -> dict:
    """A resource server acting as receiver."""
    return receiver(factory)


def test_the_metadata_names_every_endpoint_from_the_issuer(client):
    response = client.get("/.well-known/ssf-configuration")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "spec_version": "1_0",
        "issuer": ISSUER,
        "jwks_uri": ISSUER + "/ssf/jwks",
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": ISSUER + "/ssf/streams",
        "status_endpoint": ISSUER + "/ssf/status",
        "verification_endpoint": ISSUER + "/ssf/verify",
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:7617"}],
        "default_subjects": "ALL",
    }


def test_a_stream_goes_through_create_read_update_replace_and_delete(client, rs):
    created = client.post("/ssf/streams", headers=rs["auth"], json={
        "events_requested": [CAEP + "session-revoked", "urn:example:unknown"],
        "description": "Leads API cache"})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    stream = created.get_json()
    stream_id = stream["stream_id"]
    assert stream_id.startswith("str_")
    assert stream == {
        "stream_id": stream_id, "iss": ISSUER, "aud": rs["client_id"],
        "delivery": {"method": POLL, "endpoint_url": f"{ISSUER}/ssf/poll/{stream_id}"},
        "events_supported": SUPPORTED,
        "events_requested": [CAEP + "session-revoked", "urn:example:unknown"],
        "events_delivered": [CAEP + "session-revoked"],
        "description": "Leads API cache", "inactivity_timeout": 3600,
    }

    read = client.get(f"/ssf/streams?stream_id={stream_id}", headers=rs["auth"])
    assert read.status_code == 200 and read.get_json() == stream
    assert client.get("/ssf/streams", headers=rs["auth"]).get_json() == [stream]

    patched = client.patch("/ssf/streams", headers=rs["auth"], json={
        "stream_id": stream_id, "events_requested": SUPPORTED[2:]})
    assert patched.status_code == 200
    assert patched.get_json()["events_delivered"] == SUPPORTED[2:]
    assert patched.get_json()["description"] == "Leads API cache"

    # A receiver may PUT back what it read: transmitter-supplied members are ignored.
    document = {**patched.get_json(), "events_delivered": [], "iss": "https://elsewhere"}
    del document["description"]
    replaced = client.put("/ssf/streams", headers=rs["auth"], json=document)
    assert replaced.status_code == 200
    assert replaced.get_json() == {key: value for key, value in patched.get_json().items()
                                   if key != "description"}

    deleted = client.delete(f"/ssf/streams?stream_id={stream_id}", headers=rs["auth"])
    assert deleted.status_code == 204 and deleted.data == b""
    gone = client.get(f"/ssf/streams?stream_id={stream_id}", headers=rs["auth"])
    assert gone.status_code == 404
    assert gone.get_json()["error"] == "not_found"
    assert client.get("/ssf/streams", headers=rs["auth"]).get_json() == []


def test_put_resets_what_it_leaves_out(client, rs):
    stream = new_stream(client, rs, events_requested=SUPPORTED[:1], description="first")
    replaced = client.put("/ssf/streams", headers=rs["auth"],
                          json={"stream_id": stream["stream_id"]})
    assert replaced.status_code == 200
    body = replaced.get_json()
    assert body["events_requested"] == SUPPORTED and body["events_delivered"] == SUPPORTED
    assert "description" not in body


def test_a_push_stream_keeps_its_authorization_sealed_and_never_shows_it(app, client, rs):
    secret = "Bearer receiver-secret-0123456789"
    stream = new_stream(client, rs, delivery={
        "method": PUSH, "endpoint_url": "https://api.flowestate.example/ssf/events",
        "authorization_header": secret})
    assert stream["delivery"] == {"method": PUSH,
                                  "endpoint_url": "https://api.flowestate.example/ssf/events"}
    assert "inactivity_timeout" not in stream
    assert secret not in client.get(f"/ssf/streams?stream_id={stream['stream_id']}",
                                    headers=rs["auth"]).get_data(as_text=True)
    with app.app_context():
        row = db.session.scalar(select(SsfStream).where(SsfStream.public_id ==
                                                        stream["stream_id"]))
        assert secret.encode() not in bytes(row.sealed_authorization)
        assert push_authorization(row, app.config) == secret
        # Bound to its stream: the same seal on another stream opens as nothing.
        row.public_id = "str_other"
        assert push_authorization(row, app.config) is None
        db.session.rollback()


def test_switching_to_poll_drops_the_push_authorization(app, client, rs):
    stream = new_stream(client, rs, delivery={
        "method": PUSH, "endpoint_url": "https://api.flowestate.example/ssf/events",
        "authorization_header": "Bearer x"})
    patched = client.patch("/ssf/streams", headers=rs["auth"], json={
        "stream_id": stream["stream_id"], "delivery": {"method": POLL}})
    assert patched.get_json()["delivery"]["endpoint_url"].endswith(
        "/ssf/poll/" + stream["stream_id"])
    with app.app_context():
        row = db.session.scalar(select(SsfStream).where(SsfStream.public_id ==
                                                        stream["stream_id"]))
        assert row.sealed_authorization is None and row.inactivity_timeout == 3600


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/events", "http://localhost/events",
                                 "http://[::1]:9000/events"])
def test_push_may_use_plain_http_to_loopback_only(client, rs, url):
    stream = new_stream(client, rs, delivery={"method": PUSH, "endpoint_url": url})
    assert stream["delivery"]["endpoint_url"] == url


#: Bodies of POST /ssf/streams that are refused with 400 invalid_request.
BAD_BODIES = {
    "invalid JSON": b"{not json",
    "not an object": b"[1, 2]",
    "unknown method": {"delivery": {"method": "urn:example:carrier-pigeon"}},
    "delivery not an object": {"delivery": "poll"},
    "push without URL": {"delivery": {"method": PUSH}},
    "push to plain http": {"delivery": {"method": PUSH, "endpoint_url": "http://rs.example/e"}},
    "push to ftp": {"delivery": {"method": PUSH, "endpoint_url": "ftp://rs.example/e"}},
    "push URL with a password": {"delivery": {
        "method": PUSH, "endpoint_url": "https://user:pw@rs.example/e"}},
    "push URL with a bad port": {"delivery": {
        "method": PUSH, "endpoint_url": "https://rs.example:port/e"}},
    "push URL not a string": {"delivery": {"method": PUSH, "endpoint_url": 42}},
    "authorization on two lines": {"delivery": {
        "method": PUSH, "endpoint_url": "https://rs.example/e",
        "authorization_header": "Bearer a\r\nX-Evil: 1"}},
    "only unknown events": {"events_requested": ["urn:example:unknown"]},
    "no events": {"events_requested": []},
    "events not a list": {"events_requested": CAEP + "session-revoked"},
    "events not strings": {"events_requested": [1, 2]},
    "description too long": {"description": "x" * 201},
    "description not a string": {"description": ["x"]},
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_stream_request_is_400_invalid_request(app, client, rs, case):
    body = BAD_BODIES[case]
    if isinstance(body, bytes):
        response = client.post("/ssf/streams", data=body, headers=rs["auth"],
                               content_type="application/json")
    else:
        response = client.post("/ssf/streams", json=body, headers=rs["auth"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert response.get_json()["error_description"]
    with app.app_context():
        assert db.session.scalar(select(SsfStream.id)) is None


@pytest.mark.parametrize("method", ["patch", "put"])
def test_a_bad_change_leaves_the_stream_as_it_was(client, rs, method):
    stream = new_stream(client, rs, description="kept")
    response = getattr(client, method)("/ssf/streams", headers=rs["auth"], json={
        "stream_id": stream["stream_id"], "description": "new", "events_requested": []})
    assert response.status_code == 400
    read = client.get(f"/ssf/streams?stream_id={stream['stream_id']}", headers=rs["auth"])
    assert read.get_json() == stream


@pytest.mark.parametrize("method", ["patch", "put"])
def test_a_change_without_a_stream_id_is_400(client, rs, method):
    response = getattr(client, method)("/ssf/streams", headers=rs["auth"], json={})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_a_resource_server_holds_a_bounded_number_of_streams(app, client, rs):
    app.config["IDP_SSF_MAX_STREAMS"] = 3
    for _ in range(3):
        new_stream(client, rs)
    response = client.post("/ssf/streams", headers=rs["auth"], json={})
    assert response.status_code == 409
    assert response.get_json()["error"] == "invalid_request"


#: Every authenticated endpoint: (method, path, JSON body).
AUTHENTICATED = [
    ("post", "/ssf/streams", {}),
    ("get", "/ssf/streams", None),
    ("patch", "/ssf/streams", {"stream_id": "str_x"}),
    ("put", "/ssf/streams", {"stream_id": "str_x"}),
    ("delete", "/ssf/streams?stream_id=str_x", None),
    ("get", "/ssf/status?stream_id=str_x", None),
    ("post", "/ssf/status", {"stream_id": "str_x", "status": "paused"}),
    ("post", "/ssf/verify", {"stream_id": "str_x"}),
]


def _credentials(case: str, rs: dict, demo: dict) -> dict:
    """The Authorization header of one 401 case."""
    zapier = demo["clients"]["zapier"]
    return {
        "none": {},
        "wrong secret": basic(rs["client_id"], rs["client_secret"] + "x"),
        "unknown id": basic("rs_" + "0" * 20, rs["client_secret"]),
        "connector": basic(zapier["client_id"], zapier["client_secret"]),
        "bearer": {"Authorization": "Bearer " + demo["api_key"]},
        "garbled": {"Authorization": "Basic !!!not-base64"},
    }[case]


@pytest.mark.parametrize("case", ["none", "wrong secret", "unknown id", "connector", "bearer",
                                  "garbled"])
@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED)
def test_anyone_but_a_resource_server_gets_401_invalid_client(client, rs, demo, case, method,
                                                               path, body):
    response = getattr(client, method)(path, json=body, headers=_credentials(case, rs, demo))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["Cache-Control"] == "no-store"


def test_a_disabled_resource_server_gets_401_at_once(app, client, rs):
    stream = new_stream(client, rs)
    with committing(app):
        db.session.scalar(select(ResourceServer).where(
            ResourceServer.public_id == rs["client_id"])).enabled = False
    # Not after introspection's memo runs out: a verification answered now would restore a
    # kit's trust in the stream of a server disabled a moment ago.
    assert client.get("/ssf/streams", headers=rs["auth"]).status_code == 401
    verify = client.post("/ssf/verify", headers=rs["auth"],
                         json={"stream_id": stream["stream_id"], "state": "s"})
    assert verify.status_code == 401


def test_failed_authentication_is_limited_per_address_as_introspection_is(make_app):
    app = make_app(IDP_AUTH_FAILURE_RATE_LIMIT="2 per minute")
    client = app.test_client()
    wrong = basic("rs_" + "0" * 20, "fe_rs_wrong")
    statuses = [client.get("/ssf/streams", headers=wrong).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert client.post("/ssf/poll/str_x", json={}, headers=wrong).status_code == 429


@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED[2:])
def test_someone_elses_stream_is_404_as_if_it_did_not_exist(client, factory, rs, method, path,
                                                            body):
    other = receiver(factory, "Contacts API")
    theirs = new_stream(client, other)["stream_id"]
    path = path.replace("str_x", theirs)
    body = body and {**body, "stream_id": theirs}
    for stream_id in (theirs, "str_unknown"):
        response = getattr(client, method)(path.replace(theirs, stream_id),
                                           json=body and {**body, "stream_id": stream_id},
                                           headers=rs["auth"])
        assert response.status_code == 404, (method, path)
        assert response.get_json() == {"error": "not_found",
                                       "error_description": "There is no stream with this "
                                                            "stream_id."}
    assert client.get(f"/ssf/streams?stream_id={theirs}",
                      headers=other["auth"]).status_code == 200
    assert client.get("/ssf/streams", headers=rs["auth"]).get_json() == []


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("get", "/ssf/verify", {"POST"}),
    ("delete", "/ssf/status", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("get", "/ssf/poll/str_x", {"POST"}),
    ("post", "/ssf/jwks", {"GET", "HEAD", "OPTIONS"}),
    ("post", "/.well-known/ssf-configuration", {"GET", "HEAD", "OPTIONS"}),
])
def test_a_wrong_method_is_405_with_allow(client, rs, method, path, allowed):
    response = getattr(client, method)(path, headers=rs["auth"])
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= allowed - {"OPTIONS"}
    body = response.get_json()
    if path.startswith("/ssf/poll/"):
        assert body["err"] == "invalid_request" and body["description"]
    else:
        assert body["error"] == "invalid_request"


def test_an_unknown_ssf_path_is_a_json_404(client):
    response = client.get("/ssf/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
