"""Helpers for the production tests: throwaway Redis and PostgreSQL servers, extra credentials,
and a connect flow that works against any base URL."""

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import redis
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from idp.infra.extensions import db
from tests import factories
from tests.helpers import ROOT
from tests.helpers import TEST_SECRET_KEY
from tests.helpers import LiveServer
from tests.helpers import authorize_params
from tests.helpers import csrf_token
from tests.helpers import free_port
from tests.helpers import http_connect
from tests.helpers import pkce_pair
from tests.helpers import query_of

REDIS_SERVER = shutil.which("redis-server")
PG_VERSION_DIR = Path("/etc/postgresql")


def add_credentials(app, demo: dict) -> dict:
    """A resource server and an all-scopes API key for the demo org (tests/factories.py)."""
    with app.app_context():
        server, secret = factories.resource_server(f"API {secrets.token_hex(3)}")
        org = factories.org_by_id(demo["organization"]["id"])
        _, key = factories.api_key(org, f"Ops {secrets.token_hex(3)}",
                                   list(factories.catalogue()))
        db.session.commit()
        return {"resource_server": (server.public_id, secret), "api_key": key}


def token_form(demo: dict, client_key: str = "zapier", **fields) -> dict:
    """A token request body with the client's credentials in it (client_secret_post)."""
    creds = demo["clients"][client_key]
    return {**fields, "client_id": creds["client_id"], "client_secret": creds["client_secret"]}


def http_tokens(base_url: str, demo: dict, client_key: str = "zapier") -> dict:
    """Connect over HTTP (sign in, allow, exchange the code); return the token response."""
    verifier, challenge = pkce_pair()
    query = http_connect(base_url, demo, client_key, challenge=challenge)
    response = requests.post(base_url + "/oauth/token", data=token_form(
        demo, client_key, grant_type="authorization_code", code=query["code"],
        redirect_uri=demo["clients"][client_key]["redirect_uris"][0], code_verifier=verifier,
    ), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def http_code(base_url: str, demo: dict, session: requests.Session, client_key="zapier"):
    """Sign in once with ``session`` and return (code, verifier) of a fresh authorization."""
    verifier, challenge = pkce_pair()
    query = http_connect(base_url, demo, client_key, challenge=challenge, session=session)
    return query["code"], verifier


def flask_tokens(client, demo: dict, client_key: str = "zapier") -> dict:
    """Connect through a Flask test client; return the token response body."""
    page = client.get("/login")
    client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                "email": demo["user"]["email"],
                                "password": demo["user"]["password"]})
    verifier, challenge = pkce_pair()
    params = authorize_params(demo["clients"][client_key], challenge=challenge)
    url = "/oauth/authorize?" + urlencode(params)
    page = client.get(url)
    response = client.post(url, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "decision": "allow",
        "organization": demo["organization"]["id"],
    })
    code = query_of(response.headers["Location"])["code"]
    response = client.post("/oauth/token", data=token_form(
        demo, client_key, grant_type="authorization_code", code=code,
        redirect_uri=params["redirect_uri"], code_verifier=verifier,
    ))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class RedisServer:
    """A private redis-server on a free port that a test may stop and start at will."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc = None

    def start(self) -> None:
        """Start it (no persistence) and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        with redis.Redis.from_url(self.url, socket_timeout=0.5) as client:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop it and wait for the process to go."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class PgCluster:
    """A throwaway PostgreSQL cluster of its own (never the shared one on 5432).

    Created with pg_createcluster, stopped and started with pg_ctlcluster, dropped at the end.
    """

    def __init__(self):
        self.version = sorted(p.name for p in PG_VERSION_DIR.iterdir())[-1]
        self.name = "idpfault" + secrets.token_hex(4)
        self.port = free_port()
        assert self.port != 5432
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/idp"

    def _ctl(self, *args: str, check: bool = True) -> None:
        """Run one of the Debian cluster tools, quietly."""
        subprocess.run(list(args), check=check, capture_output=True, timeout=120)

    def create(self) -> None:
        """Create and start the cluster, with a database the tests use."""
        self._ctl("pg_createcluster", self.version, self.name, "--port", str(self.port),
                  "--", "--auth=trust")
        self.start()
        admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE idp"))
        admin.dispose()

    def start(self) -> None:
        """Start the cluster (waits until it accepts connections)."""
        self._ctl("pg_ctlcluster", self.version, self.name, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` cuts every connection, ``immediate`` is a crash."""
        self._ctl("pg_ctlcluster", self.version, self.name, "stop", "-m", mode)

    def drop(self) -> None:
        """Stop and delete the cluster and its files."""
        self._ctl("pg_dropcluster", "--stop", self.version, self.name, check=False)


def pg_tools_available() -> bool:
    """True when the Debian PostgreSQL cluster tools are installed and we may use them."""
    return (PG_VERSION_DIR.is_dir() and shutil.which("pg_createcluster") is not None
            and os.geteuid() == 0)


def seed(database_url: str, config: dict) -> dict:
    """Make the demo data in a database from this process; demo plus operator credentials."""
    from idp import create_app

    app = create_app({**config, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        demo = factories.demo_data()
    demo.update(add_credentials(app, demo))
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return demo


class ConfiguredServer(LiveServer):
    """A live server started the way production starts it: with idp/infra/gunicorn_conf.py."""

    def _spawn(self, log) -> None:
        """gunicorn --config idp/infra/gunicorn_conf.py, bound to this server's port."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "idp/infra/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
             "--threads", str(self.threads), "app:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def migrate(database_url: str) -> None:
    """Make the schema on a database with the real migrations, as ``flask db upgrade`` does."""
    from flask_migrate import upgrade

    from idp import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": TEST_SECRET_KEY,
                      "TESTING": True})
    with app.app_context():
        upgrade()
        db.session.remove()
        db.engine.dispose()
