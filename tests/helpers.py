"""Helpers shared by tests: a live server process and the browserless connect flow."""

import base64
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from idp.infra.extensions import db

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"


def empty_postgres(url: str) -> None:
    """Delete every row of a migrated PostgreSQL database, children first.

    DELETE instead of TRUNCATE: on these small tables it takes a tenth of the time (TRUNCATE
    rewrites files under an exclusive lock). Row ids are not reset; no test may rely on them.
    """
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = {
            r[0] for r in conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                "AND tablename <> 'alembic_version'"))
        }
        known = [t.name for t in reversed(db.metadata.sorted_tables) if t.name in tables]
        for table in known + sorted(tables - set(known)):
            conn.execute(text(f'DELETE FROM "{table}"'))
    engine.dispose()


def fresh_database(template_db: str, directory) -> str:
    """A clean migrated database: a copy of the SQLite template, or the emptied PostgreSQL."""
    if template_db.startswith("postgresql"):
        empty_postgres(template_db)
        return template_db
    path = Path(directory) / "idp.sqlite3"
    shutil.copy(template_db, path)
    return f"sqlite:///{path}"


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pkce_pair() -> tuple[str, str]:
    """A random RFC 7636 verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def csrf_token(html: str) -> str:
    """The CSRF token embedded in a rendered form."""
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in page"
    return match.group(1)


def query_of(location: str) -> dict:
    """The query parameters of a redirect Location, single-valued."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class LiveServer:
    """A real IdP served by gunicorn in its own process group."""

    def __init__(self, database_url: str, tmp_path: Path, extra_env: dict | None = None,
                 port: int | None = None, workers: int = 2, threads: int = 4,
                 target: str = "app:app"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "IDP_ISSUER": self.url,
            "SECRET_KEY": TEST_SECRET_KEY,
            "IDP_LOGIN_PAIR_RATE_LIMIT": "1000 per minute",
            "IDP_LOGIN_ADDRESS_RATE_LIMIT": "1000 per minute",
            "IDP_AUTH_FAILURE_RATE_LIMIT": "1000 per minute",
            "IDP_TOKEN_RATE_LIMIT": "100000 per minute",
            "IDP_API_RATE_LIMIT": "100000 per minute",
            "IDP_INTROSPECTION_RATE_LIMIT": "100000 per minute",
            **(extra_env or {}),
        }
        self.workers = workers
        self.threads = threads
        #: The WSGI app gunicorn serves; tests may serve the IdP with extra routes.
        self.target = target
        self.proc = None

    def start(self, timeout: float = 30) -> None:
        """Start gunicorn and wait until /healthz answers."""
        with open(self.log_path, "ab") as log:
            self._spawn(log)
        self._wait_healthy(timeout)

    def _spawn(self, log) -> None:
        """Launch gunicorn writing to ``log`` (the child keeps its own descriptor)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "idp/infra/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads),
             "--graceful-timeout", "5", self.target],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_healthy(self, timeout: float) -> None:
        """Poll /healthz until it answers 200, or fail with the server's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the whole process group."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")


def authorize_params(client: dict, *, scope=None, state="st-123", challenge=None,
                     redirect_uri=None) -> dict:
    """Query parameters of an authorization request for a demo client."""
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri or client["redirect_uris"][0],
        "state": state,
    }
    if scope is not None:
        params["scope"] = scope
    if challenge is not None:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    return params


def http_connect(base_url: str, demo: dict, client_key: str = "zapier", *, scope=None,
                 challenge=None, state="st-123", session: requests.Session | None = None,
                 decision: str = "allow") -> dict:
    """Sign in and consent with plain HTTP form posts; return the redirect's query."""
    http = session or requests.Session()
    client = demo["clients"][client_key]
    params = authorize_params(client, scope=scope, challenge=challenge, state=state)
    url = base_url + "/oauth/authorize?" + urlencode(params)
    page = http.get(url, allow_redirects=True)
    if "Sign in" in page.text and 'name="password"' in page.text:
        page = http.post(
            base_url + "/login",
            data={"csrf_token": csrf_token(page.text), "email": demo["user"]["email"],
                  "password": demo["user"]["password"],
                  "next": re.search(r'name="next" type="hidden" value="([^"]*)"', page.text)
                  .group(1).replace("&amp;", "&")},
            allow_redirects=True,
        )
    assert "Allow" in page.text, page.text[:2000]
    response = http.post(
        url,
        data={"csrf_token": csrf_token(page.text), "decision": decision,
              "organization": demo["organization"]["id"]},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:2000]
    return query_of(response.headers["Location"])


def flask_sign_in(client, demo) -> None:
    """Sign the Flask test client in as the demo owner."""
    page = client.get("/login")
    response = client.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "email": demo["user"]["email"], "password": demo["user"]["password"],
    })
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def flask_connect(client, demo, client_key="zapier", *, scope=None, challenge=None,
                  state="st-123", decision="allow"):
    """Run authorize + consent through the Flask test client; return the redirect response."""
    params = authorize_params(demo["clients"][client_key], scope=scope, challenge=challenge,
                              state=state)
    url = "/oauth/authorize?" + urlencode(params)
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)[:1000]
    return client.post(url, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "decision": decision,
        "organization": demo["organization"]["id"],
    })


def token_request(client, demo, data: dict, client_key="zapier", basic=False, headers=None):
    """POST to /oauth/token with the demo client's credentials (body by default)."""
    creds = demo["clients"][client_key]
    headers = dict(headers or {})
    form = dict(data)
    if basic:
        raw = f"{creds['client_id']}:{creds['client_secret']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    else:
        form.update(client_id=creds["client_id"], client_secret=creds["client_secret"])
    return client.post("/oauth/token", data=form, headers=headers)
