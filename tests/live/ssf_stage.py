"""The stage of the end-to-end revocation tests: a gunicorn IdP, a ``flask ssf deliver`` worker
process and resource-server kits, all on one database (docs/ssf.md).

Kits run in the test process as a service runs flowestate-kit: a :class:`Judge` asking the real
introspection endpoint, fed by a :class:`Receiver` over HTTP. Their clocks stand still, so a
cached verdict leaves a kit's cache only when an event evicts it; a plain judge without a
stream stands beside them for comparison. What each stream brought is kept, to be checked
against the IdP's published keys.
"""

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import requests
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.serving import make_server

from flowestate_kit.judge import Judge
from flowestate_kit.ssf import Receiver
from idp.core import secrets as cs
from idp.infra.extensions import db
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import Connection
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfStream
from idp.store.models import User
from tests.helpers import ROOT
from tests.helpers import TEST_SECRET_KEY
from tests.helpers import csrf_token
from tests.kit_support import FakeClock
from tests.ssf_support import decode

#: Longest a kit may take to act on a change (docs/ssf.md aims at a fraction of a second).
PATIENCE = 5.0
#: Longest the processes may take to start and the streams to be verified.
STARTUP = 60.0
#: Between two looks of a bounded wait.
LOOK = 0.02


def wait_until(condition: Callable[[], bool], what: str, patience: float = PATIENCE) -> float:
    """Look until ``condition()`` holds; the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        assert waited < patience, f"{what}: not within {patience} s"
        time.sleep(LOOK)
    return time.monotonic() - started


def digest(raw: str) -> str:
    """The key a kit caches a bearer's verdict under."""
    return hashlib.sha256(raw.encode()).hexdigest()


class RecordingSession(requests.Session):
    """A receiver's HTTP session that keeps every SET a poll answered."""

    def __init__(self, sets: list):
        """Append polled SETs to ``sets``."""
        super().__init__()
        self.sets = sets

    def request(self, method, url, *args, **kwargs):
        """Send as usual; keep the SETs of a successful poll."""
        response = super().request(method, url, *args, **kwargs)
        if method == "POST" and "/ssf/poll/" in url and response.status_code == 200:
            self.sets.extend(response.json().get("sets", {}).values())
        return response


class RecordingEndpoint:
    """A kit's push endpoint (WSGI) that keeps every SET pushed to it before it is judged."""

    def __init__(self, endpoint, sets: list):
        """Serve ``endpoint``; append pushed SETs to ``sets``."""
        self.endpoint = endpoint
        self.sets = sets

    def __call__(self, environ, start_response):
        """Read the body once, keep it, and hand an unread copy to the endpoint."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("REQUEST_METHOD") == "POST" and body:
            self.sets.append(body.decode("ascii", errors="replace").strip())
        return self.endpoint(environ, start_response)


class PushServer:
    """Where the push worker delivers: one path per push kit, on 127.0.0.1, in a thread."""

    def __init__(self):
        """Listen on a free loopback port."""
        self.routes: dict[str, object] = {}
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: shutting down waits for one.
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    def __call__(self, environ, start_response):
        """Hand the request to the kit whose path it names."""
        app = self.routes.get(environ.get("PATH_INFO"))
        if app is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


class Kit:
    """One resource-server process built with flowestate-kit, on a clock that stands still.

    ``delivery`` None is a service without a stream: its verdicts live by ``active_ttl``
    and ``inactive_ttl`` alone, as before the revocation push existed.
    """

    def __init__(self, name: str, issuer: str, rs: dict, *, delivery: str | None = None,
                 push: PushServer | None = None):
        """Build the judge (and its receiver, not started yet)."""
        self.name = name
        self.clock = FakeClock()
        self.sets: list[str] = []
        self.http = requests.Session()
        self.receiver = None
        self.stream_session = None
        if delivery is not None:
            self.stream_session = RecordingSession(self.sets)
            push_url = f"{push.url}/ssf/push/{name}" if delivery == "push" else None
            # A long heartbeat: the one verification at the start is all these tests need.
            self.receiver = Receiver(issuer, rs["client_id"], rs["client_secret"],
                                     delivery=delivery, push_url=push_url, verify_interval=600,
                                     session=self.stream_session)
            if delivery == "push":
                push.routes[f"/ssf/push/{name}"] = RecordingEndpoint(
                    self.receiver.push_endpoint(), self.sets)
        self.judge = Judge(issuer + "/oauth/introspect", rs["client_id"], rs["client_secret"],
                           clock=self.clock, session=self.http, stream=self.receiver)

    def verdict(self, raw: str):
        """What the kit says of a bearer, from its cache when it holds one."""
        return self.judge.judge("Bearer " + raw)

    def cached(self, raw: str) -> bool:
        """Whether the kit holds an active verdict on this bearer."""
        return digest(raw) in self.judge.verdicts.active

    def active(self) -> set[str]:
        """The digests of every active verdict held."""
        return set(self.judge.verdicts.active)

    def healthy(self) -> bool:
        """Whether the judge trusts its stream now."""
        return self.judge.stream_status()["healthy"]

    def received_all(self, jwks: dict) -> list:
        """Every SET this kit's stream brought, each verified against ``jwks``."""
        return [decode(token, jwks) for token in list(self.sets)]

    def received(self, txn: str, jwks: dict) -> list:
        """The SETs this kit's stream brought for one change (``txn``), verified."""
        return [token for token in self.received_all(jwks) if token.claims.get("txn") == txn]

    def close(self) -> None:
        """Delete the stream and stop the receiver's thread; close the connections."""
        if self.receiver is not None:
            assert self.receiver.close(timeout=15), f"{self.name}: the receiver did not stop"
            self.stream_session.close()
        self.http.close()


class PushWorker:
    """``flask ssf deliver`` in its own process, as operators run it."""

    def __init__(self, database_url: str, issuer: str, log_path):
        """Start it on the database, signing as ``issuer``; return once its loop runs."""
        self.log_path = log_path
        env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET_KEY,
               "IDP_ISSUER": issuer, "IDP_LOG_LEVEL": "INFO"}
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "ssf", "deliver"], cwd=ROOT,
                env=env, stdout=log, stderr=subprocess.STDOUT)
        # Until its loop runs, SIGTERM would end it the default way, not cleanly.
        try:
            wait_until(self._running, "the push worker starting", STARTUP)
        except AssertionError:
            self.process.kill()
            self.process.wait()
            raise

    def _running(self) -> bool:
        """Whether the worker's loop has started; fail at once if the process died."""
        assert self.process.poll() is None, self.log()[-3000:]
        return "ssf push: delivering" in self.log()

    def log(self) -> str:
        """What the worker printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, and it must end by itself, cleanly."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        assert code == 0, self.log()[-3000:]


@dataclass
class Step:
    """One change: how it is made, the event it must be told as, what the kits then say."""

    make: Callable[[], None]
    kind: str
    #: The public ids its subject names (``idp.core.ssf_events.subject``).
    ids: dict
    #: True: the credentials are refused afterwards; False: accepted again.
    stops: bool
    #: CAEP ``initiating_entity`` the event must carry, when the row says who started it.
    initiator: str | None = None


@dataclass
class Case:
    """A row of the event table: the credentials it stops, those it must leave alone, and its
    changes in order (a pause and its lifting, or one kill)."""

    targets: list[str]
    neighbors: list[str]
    steps: list[Step] = field(default_factory=list)


class Database:
    """Reads of the shared database through the operator's app, each on a fresh session."""

    def __init__(self, app):
        """Read through ``app``."""
        self.app = app

    def last_event_id(self) -> int:
        """The newest event's row id (0 when none)."""
        with self.app.app_context():
            return db.session.scalar(select(func.coalesce(func.max(SsfEvent.id), 0)))

    def changes_since(self, event_id: int) -> list[SsfEvent]:
        """Events of changes (not a stream's own) committed after ``event_id``, oldest first."""
        with self.app.app_context():
            rows = list(db.session.scalars(
                select(SsfEvent).where(SsfEvent.id > event_id, SsfEvent.stream_id.is_(None))
                .order_by(SsfEvent.id)))
            db.session.expunge_all()
            return rows

    def deliveries(self, event_id: int) -> dict[str, tuple[int, bool, str]]:
        """stream public id -> (stream_seq, acknowledged, delivery method) of one event."""
        with self.app.app_context():
            rows = db.session.execute(
                select(SsfStream.public_id, SsfDelivery.stream_seq, SsfDelivery.acked_at,
                       SsfStream.delivery_method)
                .join(SsfStream, SsfStream.id == SsfDelivery.stream_id)
                .where(SsfDelivery.event_id == event_id))
            return {stream: (seq, acked is not None, method)
                    for stream, seq, acked, method in rows}

    def key_active(self, public_id: str) -> bool | None:
        """Whether an API key is enabled as stored now (None once revoked)."""
        with self.app.app_context():
            return db.session.scalar(select(ApiKey.active).where(ApiKey.public_id == public_id))

    def user_id(self, email: str) -> str:
        """A person's public id."""
        with self.app.app_context():
            return db.session.scalar(select(User.public_id).where(User.email == email))

    def connection_ids(self, public_id: str) -> dict:
        """The ids a session-revoked subject names for one connection."""
        with self.app.app_context():
            row = db.session.scalar(select(Connection).where(Connection.public_id == public_id))
            return {"connection": row.public_id, "user": row.user.public_id,
                    "org": row.organization.public_id, "client": row.client.public_id}

    def connection_of(self, access_token: str) -> str:
        """The public id of the connection an access token belongs to."""
        with self.app.app_context():
            token = db.session.scalar(
                select(AccessToken).where(AccessToken.digest == cs.digest(access_token)))
            return token.connection.public_id


class Browser:
    """A person signed in to the live IdP's pages with plain HTTP."""

    def __init__(self, url: str, email: str, password: str):
        """Sign in through the sign-in form."""
        self.url = url
        self.http = requests.Session()
        page = self.http.get(url + "/login", timeout=10)
        answer = self.http.post(url + "/login", allow_redirects=False, timeout=10, data={
            "csrf_token": csrf_token(page.text), "email": email, "password": password})
        assert answer.status_code == 302, answer.text[:1000]

    def submit(self, page: str, action: str | None = None) -> None:
        """Press the button of the form on ``page`` (posting to ``action``, or the page)."""
        shown = self.http.get(self.url + page, timeout=10)
        assert shown.status_code == 200, shown.text[:1000]
        answer = self.http.post(self.url + (action or page), allow_redirects=False,
                                data={"csrf_token": csrf_token(shown.text)}, timeout=10)
        assert answer.status_code == 302, answer.text[:1000]

    def close(self) -> None:
        """Close the connection."""
        self.http.close()
