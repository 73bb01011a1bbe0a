"""A real RFC 8935 push endpoint on 127.0.0.1 for the push worker's tests.

It checks what every request must carry (the SET media type, JSON accepted, the stream's
Authorization header), answers from a script, and keeps what it was sent. It can be stopped
and started again on the same port, so a test can have the receiver down for a while.
"""

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers import free_port

#: What every request must carry (RFC 8935 §2.1).
SET_MEDIA_TYPE = "application/secevent+jwt"


class _Server(ThreadingHTTPServer):
    """The receiver's server; a client that gave up before the answer is no error here."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        """Stay quiet: the worker's own view of a timeout is what the tests check."""


class Receiver:
    """A push endpoint answering from ``script``: a list of ``(status, body)`` or ``(status,
    body, seconds to wait before answering)``, one per request, then 202 for the rest."""

    def __init__(self, authorization: str | None = None, script=(), port: int | None = None,
                 path: str = "/events", delay: float = 0) -> None:
        """Listen (once started) on ``port`` (a free one by default); take ``delay`` seconds
        over every answer that is not scripted."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.path = path
        self.authorization = authorization
        self.script = deque(script)
        self.delay = delay
        #: Every request that passed the checks: (SET, the status it was answered).
        self.received: list[tuple[str, int]] = []
        #: Requests that did not carry what RFC 8935 asks for: what was wrong with each.
        self.malformed: list[str] = []
        self.lock = threading.Lock()
        self._server = None
        self._thread = None

    def answer(self, *steps) -> None:
        """Queue more scripted answers."""
        with self.lock:
            self.script.extend(steps)

    def accepted(self) -> list[str]:
        """The SETs answered 202, in the order they came."""
        with self.lock:
            return [token for token, status in self.received if status == 202]

    def start(self) -> "Receiver":
        """Serve in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, document = receiver._judge(self.path, self.headers, body)
                data = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: requests are refused until :meth:`start` is called again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def _judge(self, path: str, headers, body: bytes) -> tuple[int, dict | None]:
        """The scripted answer to one request, after checking what it carries."""
        problems = []
        if path != self.path:
            problems.append(f"path {path}")
        if headers.get("Content-Type") != SET_MEDIA_TYPE:
            problems.append(f"Content-Type {headers.get('Content-Type')}")
        if "application/json" not in (headers.get("Accept") or ""):
            problems.append(f"Accept {headers.get('Accept')}")
        if headers.get("Authorization") != self.authorization:
            problems.append("Authorization")
        with self.lock:
            if problems:
                self.malformed.append(", ".join(problems))
                return 400, {"err": "authentication_failed", "description": problems[0]}
            step = self.script.popleft() if self.script else (202, None, self.delay)
            self.received.append((body.decode("ascii"), step[0]))
        if len(step) > 2:
            time.sleep(step[2])
        return step[0], step[1]


def claims_of(token: str, jwks: dict) -> dict:
    """The claims of a SET, after checking its signature against ``jwks`` (RFC 8417 §2.3:
    ``typ`` is ``secevent+jwt``)."""
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == "secevent+jwt"
    return decoded.claims
