"""Revocation push as deployed (tests/tls_rig.py): nginx with the shipped deploy/nginx.conf
sends RFC 8936 long polls to the events pool, so kit processes waiting for events leave the
sync pool free for introspection and /api/v1/me; a ``flask ssf deliver`` process pushes
(RFC 8935) to a receiver over https."""

import json
import signal
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from idp.core.ssf_events import access_paused
from idp.infra.extensions import db
from idp.store.models.ssf import SsfStream
from tests.helpers import free_port
from tests.ssf_support import PUSH
from tests.ssf_support import decode
from tests.ssf_support import served_world
from tests.tls_rig import HOST

pytestmark = [pytest.mark.live, pytest.mark.tls]

#: Kit processes long-polling at once, one stream each: more than the sync pool's workers
#: (IDP_WORKERS=2), so polls served there would leave introspection no worker at all.
POLLERS = 3
#: Seconds an introspection or /api/v1/me call may take while the polls wait: far under the
#: 10 s long poll it would queue behind if a poll held its worker.
PROMPT = 2.0
#: The URL members of SSF 1.0 §7.1 metadata the IdP publishes.
METADATA_URLS = {"jwks_uri", "configuration_endpoint", "status_endpoint",
                 "verification_endpoint"}


def _public(url: str, rig) -> bool:
    """Whether ``url`` is https on the rig's public name and port."""
    parts = urlsplit(url)
    return (parts.scheme, parts.netloc) == ("https", f"{HOST}:{rig.port}")


def _metadata(rig) -> dict:
    """The transmitter's metadata, its issuer and every URL in it checked."""
    meta = requests.get(rig.url + "/.well-known/ssf-configuration", timeout=10).json()
    assert meta["issuer"] == rig.url
    assert METADATA_URLS <= set(meta)
    for name, value in meta.items():
        if name.endswith(("_uri", "_endpoint")):
            assert _public(value, rig), (name, value)
    return meta


def _waiting(operator, stream_ids) -> bool:
    """Whether every stream's poll has made its first look (and so now waits)."""
    with operator.app_context():
        polled = db.session.scalars(select(SsfStream.public_id).where(
            SsfStream.public_id.in_(stream_ids), SsfStream.last_polled_at.is_not(None))).all()
        db.session.remove()
    return len(polled) == len(stream_ids)


def _timed(call):
    """The answer of ``call()`` and the seconds it took."""
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def _access_line(rig, path_part: str) -> str:
    """nginx's access-log line of the request whose path holds ``path_part`` (written just
    after the answer went out: waited for briefly)."""
    log_file = rig.prefix / "logs" / "flowestate-idp.access.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in log_file.read_text().splitlines() if path_part in line]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {path_part}")


def test_long_polls_wait_in_the_events_pool_while_the_idp_pool_answers(tls_rig, make_app):
    operator, client_id, auth, key_id, raw_key = served_world(make_app, tls_rig.url)
    meta = _metadata(tls_rig)

    poll_urls = {}
    for _ in range(POLLERS):
        created = requests.post(meta["configuration_endpoint"], json={}, auth=auth, timeout=10)
        assert created.status_code == 201, created.text
        config = created.json()
        poll_urls[config["stream_id"]] = config["delivery"]["endpoint_url"]
        assert _public(config["delivery"]["endpoint_url"], tls_rig)

    with ThreadPoolExecutor(POLLERS) as pool:
        polls = {stream_id: pool.submit(requests.post, url, json={}, auth=auth, timeout=30)
                 for stream_id, url in poll_urls.items()}
        deadline = time.monotonic() + 5
        while not _waiting(operator, list(polls)) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Polls sent to the sync pool would queue behind its two workers: not all would wait.
        assert _waiting(operator, list(polls)), "not every poll reached the IdP"

        for _ in range(3):
            introspected, seconds = _timed(lambda: requests.post(
                tls_rig.url + "/oauth/introspect", data={"token": raw_key}, auth=auth,
                timeout=30))
            assert introspected.json()["active"] is True and seconds < PROMPT, seconds
            me, seconds = _timed(lambda: requests.get(
                tls_rig.url + "/api/v1/me", headers={"Authorization": f"Bearer {raw_key}"},
                timeout=30))
            assert me.status_code == 200 and seconds < PROMPT, seconds
        assert not any(poll.done() for poll in polls.values()), "a poll ended without event"

        disabled_at = time.monotonic()
        result = operator.test_cli_runner().invoke(args=["api-key", "disable", key_id])
        assert result.exit_code == 0, result.output
        answers = {stream_id: poll.result(timeout=30) for stream_id, poll in polls.items()}
    # Each poll ended when the change committed, not at the end of its 10 s wait.
    assert time.monotonic() - disabled_at < 5

    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    for stream_id, answer in answers.items():
        assert answer.status_code == 200, answer.text
        [(jti, token)] = answer.json()["sets"].items()
        claims = decode(token, jwks).claims
        assert (claims["iss"], claims["aud"], claims["jti"], claims["stream_seq"]) == (
            tls_rig.url, client_id, jti, 1)
        assert claims["sub_id"] == {"format": "opaque", "id": key_id}
        assert claims["events"][access_paused(tls_rig.url)]["reason"] == "api_key_disabled"
        # The events pool got nginx's headers too: its answer carries nginx's request id.
        line = _access_line(tls_rig, f"/ssf/poll/{stream_id}")
        assert '"POST /ssf/poll/' in line and f"rid={answer.headers['X-Request-ID']}" in line
    introspected = requests.post(tls_rig.url + "/oauth/introspect", data={"token": raw_key},
                                 auth=auth, timeout=10)
    assert introspected.json()["active"] is False
    assert "/ssf/poll/" in tls_rig.events.log() and "/ssf/poll/" not in tls_rig.app.log()
    assert "/oauth/introspect" not in tls_rig.events.log()


class HttpsReceiver:
    """An RFC 8935 push endpoint on https://localhost, with the rig's certificate: keeps each
    SET and its Authorization header, answers 202."""

    def __init__(self, rig) -> None:
        """Listen on a free port with the certificate nginx serves (it names localhost)."""
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}/events"
        self.received: list[tuple[str, str | None]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((body.decode("ascii"),
                                          self.headers.get("Authorization")))
                receiver.arrived.set()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(rig.chain, rig.key)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HttpsReceiver":
        """Serve in a background thread."""
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_a_deliver_process_pushes_to_a_receiver_over_https(tls_rig, make_app, tmp_path):
    operator, client_id, auth, key_id, _ = served_world(make_app, tls_rig.url)
    meta = _metadata(tls_rig)
    authorization = "Bearer rcv-" + "0123456789abcdef" * 2
    output = tmp_path / "deliver.log"

    with HttpsReceiver(tls_rig) as receiver:
        created = requests.post(meta["configuration_endpoint"], auth=auth, timeout=10, json={
            "delivery": {"method": PUSH, "endpoint_url": receiver.url,
                         "authorization_header": authorization}})
        assert created.status_code == 201, created.text
        with open(output, "ab") as out:
            worker = tls_rig.flask("ssf", "deliver", stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "ssf push: delivering" not in output.read_text(errors="replace"):
                assert worker.poll() is None, output.read_text(errors="replace")
                assert time.monotonic() < deadline, output.read_text(errors="replace")
                time.sleep(0.05)
            result = operator.test_cli_runner().invoke(args=["api-key", "disable", key_id])
            assert result.exit_code == 0, result.output
            assert receiver.arrived.wait(10), output.read_text(errors="replace")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                status = worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                raise
    assert status == 0, output.read_text(errors="replace")

    [(token, sent_authorization)] = receiver.received
    assert sent_authorization == authorization
    claims = decode(token, requests.get(meta["jwks_uri"], timeout=10).json()).claims
    assert (claims["iss"], claims["aud"], claims["stream_seq"]) == (
        tls_rig.url, client_id, 1)
    assert claims["sub_id"] == {"format": "opaque", "id": key_id}
    listed = tls_rig.flask("ssf", "streams", "--json", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    out, err = listed.communicate(timeout=60)
    assert listed.returncode == 0, err
    [stream] = json.loads(out)
    assert (stream["method"], stream["unacknowledged"], stream["failures"]) == ("push", 0, 0)
