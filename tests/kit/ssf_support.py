"""Test doubles for the kit's SSF receiver: a transmitter as docs/ssf.md describes it, served
on 127.0.0.1 in a thread, and an introspection endpoint answering from a script.

The transmitter signs each SET when it hands it out (ES256, joserfc, header ``typ``
``secevent+jwt``; claims iss, jti, iat, aud, txn, sub_id, events, stream_seq), long-polls
briefly, and can be told to misbehave: fail polls, sign with a stranger's key, name another
audience, skip a stream_seq, leave verifications unanswered.
"""

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import OctKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests.kit_support import CannedResponse

CLIENT_ID = "rs_kitreceiver"
CLIENT_SECRET = "resource-server-secret-0123456789"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"


def new_key(kid: str | None = None) -> ECKey:
    """A P-256 signing key as the IdP makes them."""
    kid = kid or secrets.token_urlsafe(8)
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"},
                              private=True)


def opaque(value: str) -> dict:
    """An RFC 9493 opaque identifier."""
    return {"format": "opaque", "id": value}


def complex_subject(**members) -> dict:
    """A complex subject whose members are opaque ids (session, user, tenant, application)."""
    return {"format": "complex", **{name: opaque(value) for name, value in members.items()}}


@dataclass
class Delivery:
    """One SET waiting on a stream: its claims (signed when handed out) and how to spoil it."""

    jti: str
    claims: dict
    header: dict = field(default_factory=dict)
    key: object = None


@dataclass
class Stream:
    """A stream as the transmitter keeps it."""

    stream_id: str
    config: dict
    queue: list = field(default_factory=list)
    next_seq: int = 1
    acked: list = field(default_factory=list)
    errs: dict = field(default_factory=dict)
    states: list = field(default_factory=list)


class FakeTransmitter:
    """An SSF transmitter on a free loopback port; see the module docstring."""

    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 long_poll: float = 0.0):
        """Serve with one live key; polls wait up to ``long_poll`` seconds for an event."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.long_poll = long_poll
        self.key = new_key("live")
        self.published = [self.key]
        self.streams: dict[str, Stream] = {}
        self.changed = threading.Condition()
        self.calls: list[tuple[str, str]] = []
        self.polls: list[dict] = []
        #: When set, polls are answered with this status.
        self.poll_status: int | None = None
        #: When false, verification requests are taken but never answered.
        self.answer_verifications = True
        #: When true, the next poll's acknowledgements are lost (its SETs come again).
        self.lose_acks = False
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.own = self.issuer + "/ssf/event-type/"
        # A short poll interval: shutting down waits for one.
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.02})

    def __enter__(self):
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(self, *exc):
        """Stop serving."""
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()
        return False

    # -- what tests do -------------------------------------------------------------------

    @property
    def stream(self) -> Stream:
        """The only stream (tests with one receiver)."""
        (stream,) = self.streams.values()
        return stream

    def emit(self, event_type: str, sub_id: dict, payload: dict | None = None, *,
             stream: Stream | None = None, skip: int = 0, header: dict | None = None,
             key=None, **claims) -> Delivery:
        """Queue one SET on a stream: ``skip`` leaves a gap in stream_seq, ``header`` and
        ``claims`` override what the contract says, ``key`` signs with another key."""
        stream = stream or self.stream
        with self.changed:
            stream.next_seq += skip
            delivery = Delivery(jti=secrets.token_urlsafe(12), header=header or {}, key=key,
                                claims={"iss": self.issuer, "iat": int(time.time()),
                                        "aud": self.client_id,
                                        "txn": "evt_" + secrets.token_hex(6),
                                        "sub_id": sub_id, "events": {event_type: payload or {}},
                                        "stream_seq": stream.next_seq})
            delivery.claims.update(claims)
            delivery.claims["jti"] = claims.get("jti", delivery.jti)
            stream.next_seq += 1
            stream.queue.append(delivery)
            self.changed.notify_all()
        return delivery

    def sign(self, delivery: Delivery) -> str:
        """The delivery's SET, signed now as the IdP signs them (or as the test spoils it)."""
        key = delivery.key or self.key
        header = {"alg": "ES256", "kid": key.kid, "typ": "secevent+jwt", **delivery.header}
        if header["alg"] == "HS256":
            return jwt.encode(header, delivery.claims, OctKey.generate_key(256),
                              algorithms=["HS256"])
        return jwt.encode(header, delivery.claims, key, algorithms=["ES256"])

    def rotate(self) -> ECKey:
        """Sign with a new key from now on, keeping the old one published."""
        self.key = new_key()
        self.published.append(self.key)
        return self.key

    def push_all(self, client, stream: Stream | None = None) -> list:
        """Post every queued SET to a push endpoint (a werkzeug test client), in order, as
        the delivery worker does; a 202 acknowledges it. The responses."""
        stream = stream or self.stream
        path = urlsplit(stream.config["delivery"]["endpoint_url"]).path
        answers = []
        while stream.queue:
            delivery = stream.queue[0]
            answer = client.post(path, data=self.sign(delivery), headers={
                "Content-Type": "application/secevent+jwt",
                "Authorization": stream.config["delivery"]["authorization_header"]})
            answers.append(answer)
            if answer.status_code != 202:
                break
            stream.queue.pop(0)
            stream.acked.append(delivery.jti)
        return answers

    # -- the endpoints -------------------------------------------------------------------

    def wsgi(self, environ, start_response):
        """Route a request to one of the contract's endpoints."""
        request = Request(environ)
        self.calls.append((request.method, request.path))
        route = {
            ("GET", "/.well-known/ssf-configuration"): self.configuration,
            ("GET", "/ssf/jwks"): self.jwks,
            ("POST", "/ssf/streams"): self.create,
            ("GET", "/ssf/streams"): self.read,
            ("DELETE", "/ssf/streams"): self.delete,
            ("POST", "/ssf/verify"): self.verify,
        }.get((request.method, request.path))
        if route is None and request.method == "POST" and request.path.startswith("/ssf/poll/"):
            route = self.poll
        if route is None:
            response = _json({"error": "not_found"}, 404)
        elif route in (self.configuration, self.jwks):
            response = route(request)
        elif not self._authenticated(request):
            response = _json({"error": "invalid_client"}, 401)
        else:
            response = route(request)
        return response(environ, start_response)

    def _authenticated(self, request) -> bool:
        """HTTP Basic with the resource server's credentials, as for introspection."""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return request.headers.get("Authorization") == "Basic " + expected

    def configuration(self, request):
        """SSF 1.0 §7.1 metadata."""
        return _json({
            "spec_version": "1_0", "issuer": self.issuer,
            "jwks_uri": self.issuer + "/ssf/jwks",
            "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
            "configuration_endpoint": self.issuer + "/ssf/streams",
            "status_endpoint": self.issuer + "/ssf/status",
            "verification_endpoint": self.issuer + "/ssf/verify",
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:7617"}],
            "default_subjects": "ALL",
        })

    def jwks(self, request):
        """The public halves of the published keys."""
        return _json({"keys": [key.as_dict(private=False) for key in self.published]})

    def create(self, request):
        """Create a stream (SSF 1.0 §8.1.1.1)."""
        body = request.get_json()
        stream_id = "str_" + secrets.token_hex(6)
        delivery = dict(body["delivery"])
        if delivery["method"] == "urn:ietf:rfc:8936":
            delivery["endpoint_url"] = f"{self.issuer}/ssf/poll/{stream_id}"
        config = {"stream_id": stream_id, "iss": self.issuer, "aud": self.client_id,
                  "delivery": delivery, "events_requested": body.get("events_requested"),
                  "events_delivered": body.get("events_requested"),
                  "description": body.get("description")}
        self.streams[stream_id] = Stream(stream_id, config)
        shown = {**config, "delivery": {k: v for k, v in delivery.items()
                                        if k != "authorization_header"}}
        return _json(shown, 201)

    def read(self, request):
        """One stream's configuration."""
        stream = self.streams.get(request.args.get("stream_id"))
        if stream is None:
            return _json({"error": "not_found"}, 404)
        return _json(stream.config)

    def delete(self, request):
        """Delete a stream."""
        with self.changed:
            if self.streams.pop(request.args.get("stream_id"), None) is None:
                return _json({"error": "not_found"}, 404)
            self.changed.notify_all()  # a poll waiting on it answers at once
        return Response(status=204)

    def verify(self, request):
        """Queue a verification event echoing ``state`` (SSF 1.0 §8.1.4.2)."""
        body = request.get_json()
        stream = self.streams.get(body.get("stream_id"))
        if stream is None:
            return _json({"error": "not_found"}, 404)
        stream.states.append(body["state"])
        if self.answer_verifications:
            self.emit(VERIFICATION, opaque(stream.stream_id), {"state": body["state"]},
                      stream=stream)
        return Response(status=204)

    def poll(self, request):
        """RFC 8936 §2.4: take acks and errors, answer what is due (waiting briefly)."""
        if self.poll_status is not None:
            return _json({"err": "temporarily_unavailable"}, self.poll_status)
        stream = self.streams.get(request.path.rsplit("/", 1)[-1])
        if stream is None:
            return _json({"err": "not_found", "description": "no such stream"}, 404)
        body = request.get_json()
        self.polls.append(body)
        with self.changed:
            if self.lose_acks:
                self.lose_acks = False
                body = {**body, "ack": [], "setErrs": {}}
            done = set(body.get("ack", [])) | set(body.get("setErrs", {}))
            stream.acked.extend(body.get("ack", []))
            stream.errs.update(body.get("setErrs", {}))
            stream.queue = [d for d in stream.queue if d.jti not in done]
            if not stream.queue and not body.get("returnImmediately"):
                self.changed.wait_for(
                    lambda: stream.queue or stream.stream_id not in self.streams,
                    self.long_poll)
            if stream.stream_id not in self.streams:
                return _json({"err": "not_found", "description": "no such stream"}, 404)
            due = stream.queue[:body.get("maxEvents", 100)]
            return _json({"sets": {d.jti: self.sign(d) for d in due},
                          "moreAvailable": len(stream.queue) > len(due)})


def _json(body, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status=status, content_type="application/json")


class ScriptedIntrospection:
    """A requests-like session whose introspection answers come from ``claims`` by token."""

    def __init__(self):
        """No token known yet; count calls."""
        self.claims: dict[str, dict] = {}
        self.calls = 0

    def post(self, url, data=None, auth=None, headers=None, timeout=None):
        """Answer one introspection request."""
        self.calls += 1
        found = self.claims.get(data["token"])
        return CannedResponse(200, found if found is not None else {"active": False})

    def close(self):
        """Nothing to close."""


def api_key() -> str:
    """A well-formed API key."""
    return "fe_k_" + secrets.token_hex(16)


def access_token() -> str:
    """A well-formed access token."""
    return "fe_at_" + secrets.token_urlsafe(32)


def key_claims(key_id: str, org_id: str, **extra) -> dict:
    """Introspection's active answer for an API key."""
    return {"active": True, "token_type": "api_key", "scope": "leads:read", "org_id": org_id,
            "key_id": key_id, **extra}


def token_claims(connection_id: str, org_id: str, user_id: str, client_id: str,
                 **extra) -> dict:
    """Introspection's active answer for an access token."""
    return {"active": True, "token_type": "access_token", "scope": "leads:read",
            "org_id": org_id, "client_id": client_id, "sub": user_id,
            "connection_id": connection_id, **extra}


def wait_for(condition, timeout: float = 5.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (for the threaded tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()

