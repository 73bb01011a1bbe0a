"""A resource server protected by flowestate-kit, for the revocation propagation benchmark.

``KIT_DELIVERY`` says what this process is: ``poll`` or ``push``, a Flask app whose endpoint is
protected by :class:`~flowestate_kit.flask.ResourceProtector` with a revocation stream of that
kind (a push stream's endpoint mounted in this same app), or ``none``, the same app and view
with no protection at all, the reference of the cached-path ratio. The benchmark serves it with
gunicorn and one worker, so there is one cache and one receiver.

The IdP runs in production mode behind a TLS-terminating proxy, under an https issuer that
nothing resolves (bench/settings.py), as two gunicorn pools of the same app the way
docs/OPERATIONS.md deploys it: the IdP pool, and the events pool that takes only RFC 8936 long
polls. The kit is given that issuer and discovers every other URL from it, as in production;
:class:`LoopbackProxy` plays the proxy's part for the kit's requests: one for the issuer's
origin goes in plain http, with the headers the proxy adds, to the events pool's loopback port
(``KIT_EVENTS_UPSTREAM``) when its path is under ``/ssf/poll/``, else to the IdP pool's
(``KIT_UPSTREAM``).

``GET /bench/state`` tells the harness, for the bearer it sends, how many times this process
has introspected that token, and whether the stream is healthy: that is how a kill knows the
victim's verdict was served from the cache and that its refusal came from a fresh look after
an eviction (bench/kills.py). It answers on the loopback interface of a throwaway run only.
"""

import hashlib
import os
import threading
from collections import Counter
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import requests
from flask import Flask
from flask import g
from flask import jsonify
from flask import request
from requests.adapters import HTTPAdapter

from bench.load import PROXY_HEADERS

#: Where the protected view lives; what every row of the benchmark asks for.
PROTECTED = "/api/v1/whoami"
#: The scope the view needs: every connector token and the data set's connections hold it.
SCOPE = "leads:read"
INTROSPECT_PATH = "/oauth/introspect"
#: What the proxy sends to the events pool (nginx's ``location /ssf/poll/``).
POLL_PREFIX = "/ssf/poll/"


def digest(token: str) -> str:
    """How the counts name a token: never the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoopbackProxy(HTTPAdapter):
    """A request for ``origin`` (the issuer) is sent to ``upstream`` (the IdP pool's loopback
    address), or to ``events`` for a long poll when given, in plain http with the proxy's
    headers; introspected tokens are counted in ``seen`` by digest, when given."""

    def __init__(self, origin: str, upstream: str, seen: Counter | None = None,
                 events: str | None = None):
        """Route ``origin`` to ``upstream`` (its polls to ``events``)."""
        super().__init__()
        self.origin = origin.rstrip("/")
        self.upstream = upstream.rstrip("/")
        self.events = events.rstrip("/") if events else self.upstream
        self.seen = seen
        self.lock = threading.Lock()

    def send(self, prepared, **kwargs):
        """Rewrite the URL, add the headers, note an introspection, send."""
        if prepared.url == self.origin or prepared.url.startswith(self.origin + "/"):
            rest = prepared.url[len(self.origin):]
            pool = self.events if rest.startswith(POLL_PREFIX) else self.upstream
            prepared.url = pool + rest
        prepared.headers.update(PROXY_HEADERS)
        if self.seen is not None and urlsplit(prepared.url).path == INTROSPECT_PATH:
            body = prepared.body or ""
            if isinstance(body, bytes):
                body = body.decode("ascii", "replace")
            for token in parse_qs(body).get("token", []):
                with self.lock:
                    self.seen[digest(token)] += 1
        return super().send(prepared, **kwargs)


def routed_session(origin: str, upstream: str, seen: Counter | None = None,
                   events: str | None = None) -> requests.Session:
    """A session whose requests for ``origin`` go through :class:`LoopbackProxy`."""
    session = requests.Session()
    session.mount(origin.rstrip("/") + "/", LoopbackProxy(origin, upstream, seen, events))
    return session


def bearer_token() -> str:
    """The token of the request's ``Authorization: Bearer`` header, or an empty string."""
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def protector_for(delivery: str, issuer: str, upstream: str, events: str | None,
                  client_id: str, secret: str, push_url: str | None, seen: Counter):
    """The kit as a service configures it: introspection at the issuer, and a stream."""
    from flowestate_kit.flask import ResourceProtector
    from flowestate_kit.ssf import Receiver

    # One session per thread that uses it: the judge's (the worker's request thread) and the
    # receiver's (its own thread).
    stream = Receiver(issuer, client_id, secret, delivery=delivery,
                      push_url=push_url if delivery == "push" else None,
                      session=routed_session(issuer, upstream, events=events))
    return ResourceProtector(issuer + INTROSPECT_PATH, client_id, secret, stream=stream,
                             session=routed_session(issuer, upstream, seen))


def create_app(environ=os.environ) -> Flask:
    """The app ``KIT_DELIVERY`` asks for (see the module docstring)."""
    app = Flask(__name__)
    delivery = environ.get("KIT_DELIVERY", "none")
    seen: Counter = Counter()
    protector = None
    if delivery != "none":
        # The push endpoint is this very app, at the address gunicorn binds it to.
        push_url = f"http://{environ.get('IDP_BIND', '127.0.0.1:0')}/ssf/push"
        protector = protector_for(delivery, environ["KIT_ISSUER"], environ["KIT_UPSTREAM"],
                                  environ.get("KIT_EVENTS_UPSTREAM"), environ["KIT_CLIENT_ID"],
                                  environ["KIT_CLIENT_SECRET"], push_url, seen)
        protector.init_app(app)

    def whoami():
        """The same small JSON answer with or without the kit; with it, naming the bearer."""
        credential = g.get("credential")
        return jsonify(ok=True, connection=credential.connection_id if credential else None)

    view = protector.require_scopes(SCOPE)(whoami) if protector else whoami
    app.add_url_rule(PROTECTED, "whoami", view, methods=["GET"])

    @app.get("/healthz")
    def healthz():
        """Readiness probe for the harness."""
        return jsonify(status="ok")

    if protector is not None:

        @app.get("/bench/state")
        def state():
            """Introspections of the bearer's token by this process, and the stream's health."""
            status = protector.stream_status()
            return jsonify(introspections=seen[digest(bearer_token())],
                           healthy=status["healthy"], reason=status["reason"],
                           applied=status["stream"]["applied"])

    return app


app = create_app()
