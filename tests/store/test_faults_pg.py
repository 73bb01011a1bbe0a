"""A real PostgreSQL stops and starts under the IdP (SPEC §5.3, §7).

The cluster is a throwaway one made for this module (pg_createcluster on a free port) and
dropped at the end; the shared cluster on 5432 is never touched. These tests run once, in the
PostgreSQL pass of CI (they bring their own database, so a second run would prove nothing new).
"""

import base64
import os
import threading
import time
from collections import Counter

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import select

from idp.core import secrets as cs
from idp.store.models import Connection
from idp.store.models import RefreshToken
from tests.helpers import TEST_SECRET_KEY
from tests.prod_support import ConfiguredServer
from tests.prod_support import PgCluster
from tests.prod_support import http_tokens
from tests.prod_support import migrate
from tests.prod_support import pg_tools_available
from tests.prod_support import seed
from tests.prod_support import token_form

pytestmark = [
    pytest.mark.live,
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("IDP_TEST_DATABASE_URL"),
                       reason="database-fault tests run once, in the PostgreSQL pass "
                              "(IDP_TEST_DATABASE_URL set); they bring their own cluster"),
    pytest.mark.skipif(not pg_tools_available(),
                       reason="needs Debian's pg_createcluster/pg_ctlcluster, run as root"),
]

TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster():
    """A private, migrated PostgreSQL cluster; always dropped at the end."""
    pg = PgCluster()
    try:
        pg.create()
        migrate(pg.url)
        yield pg
    finally:
        pg.drop()


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    """Two IdP servers on the private cluster, and the seeded demo."""
    demo = seed(cluster.url, {"SECRET_KEY": TEST_SECRET_KEY, "TESTING": True})
    logs = tmp_path_factory.mktemp("fault-servers")
    servers = [ConfiguredServer(cluster.url, logs, workers=2, threads=4) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers, demo
    finally:
        for server in servers:
            server.stop()


class Outage:
    """Stop the cluster for the ``with`` block; it is started again whatever happens."""

    def __init__(self, cluster, mode: str = "fast"):
        self.cluster, self.mode = cluster, mode

    def __enter__(self):
        """Stop the database."""
        self.cluster.stop(self.mode)
        return self

    def __exit__(self, *exc):
        """Start it again."""
        self.cluster.start()
        return False


def basic(client_id: str, secret: str) -> str:
    """An HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def doors(server, demo, tokens) -> dict:
    """One request to each JSON door the database failure must not turn into a 4xx."""
    rs_id, rs_secret = demo["resource_server"]
    return {
        "token": lambda: requests.post(
            server.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
                demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"])),
        "introspect": lambda: requests.post(
            server.url + "/oauth/introspect", data={"token": tokens["access_token"]},
            headers={"Authorization": basic(rs_id, rs_secret)}, timeout=TIMEOUT),
        "me (oauth)": lambda: requests.get(
            server.url + "/api/v1/me", timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {tokens['access_token']}"}),
        "me (api key)": lambda: requests.get(
            server.url + "/api/v1/me", timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {demo['api_key']}"}),
        "revoke": lambda: requests.post(
            server.url + "/oauth/revoke", data={"token": "fe_rt_" + "u" * 43}, timeout=TIMEOUT,
            auth=(demo["clients"]["zapier"]["client_id"],
                  demo["clients"]["zapier"]["client_secret"])),
        "readyz": lambda: requests.get(server.url + "/readyz", timeout=TIMEOUT),
    }


def test_database_down_is_503_everywhere_and_recovers_without_a_restart(cluster, world):
    servers, demo = world
    tokens = http_tokens(servers[0].url, demo)
    with Outage(cluster):
        for server in servers:
            for name, call in doors(server, demo, tokens).items():
                for _ in range(3):  # reach several workers, threads and pooled connections
                    response = call()
                    assert response.status_code == 503, (name, response.text)
                    assert response.headers["Retry-After"] == "5"
                    assert response.headers["Content-Type"] == "application/json"
                    assert "Traceback" not in response.text
            assert requests.get(server.url + "/healthz", timeout=TIMEOUT).status_code == 200
        down = requests.get(servers[1].url + "/api/v1/me", timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {demo['api_key']}"}).json()
        assert down["error"]["reason"] == "temporarily_unavailable"
    # Back without restarting either server: the very next request of each kind succeeds, and
    # the refresh token that met 503s was left untouched.
    for server in servers:
        for name, call in doors(server, demo, tokens).items():
            response = call()
            assert response.status_code == 200, (name, response.text)
            if name == "token":
                tokens["refresh_token"] = response.json()["refresh_token"]


def test_a_refresh_whose_response_was_lost_can_be_retried_across_an_outage(cluster, world):
    servers, demo = world
    tokens = http_tokens(servers[0].url, demo)
    form = token_form(demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    lost = requests.post(servers[0].url + "/oauth/token", data=form, timeout=TIMEOUT).json()
    with Outage(cluster):
        retry = requests.post(servers[1].url + "/oauth/token", data=form, timeout=TIMEOUT)
        assert retry.status_code == 503
    retry = requests.post(servers[1].url + "/oauth/token", data=form, timeout=TIMEOUT)
    assert retry.status_code == 200
    assert retry.json()["refresh_token"] == lost["refresh_token"]
    follow = requests.post(servers[0].url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="refresh_token", refresh_token=lost["refresh_token"]))
    assert follow.status_code == 200


class Connector:
    """One connection refreshing over and over like a connector: keep the newest refresh
    token, retry the same one after a 5xx or a dropped connection, give up on any 4xx."""

    def __init__(self, servers, demo):
        self.servers, self.demo = servers, demo
        self.tokens = http_tokens(servers[0].url, demo)
        self.tally = Counter()
        self.broken = False
        self.last = None

    def run(self, stop: threading.Event) -> None:
        """Refresh and call the API, alternating servers, until told to stop."""
        turn = 0
        while not stop.is_set() and not self.broken:
            server = self.servers[turn % 2]
            turn += 1
            try:
                response = requests.post(server.url + "/oauth/token", timeout=TIMEOUT,
                                         data=token_form(self.demo, grant_type="refresh_token",
                                                         refresh_token=self.tokens["refresh_token"]))
            except requests.RequestException:
                self.tally["no response"] += 1
                continue
            self.tally[response.status_code] += 1
            self.last = (response.status_code, response.text[:300])
            if response.status_code == 200:
                self.tokens = response.json()
                api = requests.get(server.url + "/api/v1/me", timeout=TIMEOUT, headers={
                    "Authorization": f"Bearer {self.tokens['access_token']}"})
                self.tally[f"api {api.status_code}"] += 1
                self.broken = api.status_code not in (200, 503)
                if self.broken:
                    self.last = (f"api {api.status_code}", api.text[:300])
            elif 400 <= response.status_code < 500:
                self.broken = True
            else:
                time.sleep(0.05)


def live_refresh_digests(url: str, access_token: str) -> list[str]:
    """Digests of the refresh tokens not yet rotated, for the access token's connection."""
    from idp.store.models import AccessToken

    engine = create_engine(url)
    with engine.connect() as conn:
        connection_id = conn.execute(
            select(Connection.id).join(AccessToken, AccessToken.connection_id == Connection.id)
            .where(AccessToken.digest == cs.digest(access_token))).scalar_one()
        rows = conn.execute(select(RefreshToken.digest).where(
            RefreshToken.connection_id == connection_id, RefreshToken.rotated_at.is_(None))
        ).scalars().all()
    engine.dispose()
    return rows


def test_connectors_refreshing_through_outages_never_break(cluster, world):
    servers, demo = world
    connectors = [Connector(servers, demo) for _ in range(6)]
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in connectors]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        with Outage(cluster, "fast"):
            time.sleep(1.5)
        time.sleep(1.5)
        # A crash: commits in flight may be applied without the IdP hearing back.
        with Outage(cluster, "immediate"):
            time.sleep(1.5)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    total = sum((c.tally for c in connectors), Counter())
    broken = sum(c.broken for c in connectors)
    print(f"\nconnectors through two outages: {dict(total)}; broken connections: {broken}")
    for connector in connectors:
        if connector.broken:
            print("broken by", connector.last)
    tracebacks = [log[log.index("Traceback"):][:3000] for log in (s.log() for s in servers)
                  if "Traceback" in log]
    for trace in tracebacks:
        print(trace)
    assert tracebacks == []
    assert broken == 0
    assert set(total) <= {200, 503, "api 200", "api 503"}
    assert total[503] > 0 and total[200] > 0
    for connector in connectors:
        # Exactly one live refresh token per connection: the one the connector holds, and it works.
        assert live_refresh_digests(cluster.url, connector.tokens["access_token"]) == [
            cs.digest(connector.tokens["refresh_token"])]
        final = requests.post(servers[0].url + "/oauth/token", timeout=TIMEOUT, data=token_form(
            demo, grant_type="refresh_token", refresh_token=connector.tokens["refresh_token"]))
        assert final.status_code == 200


def test_a_connection_lost_after_the_answer_does_not_spoil_it(cluster):
    from sqlalchemy import text

    from idp import create_app
    from idp.infra.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": cluster.url, "SECRET_KEY": TEST_SECRET_KEY,
                      "TESTING": True})
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")

    @app.get("/_lose_connection")
    def lose_connection():
        """Answer, having had the database drop this request's connection meanwhile."""
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return "answered"

    try:
        client = app.test_client()
        response = client.get("/_lose_connection")
        assert (response.status_code, response.get_data(as_text=True)) == (200, "answered")
        assert client.get("/readyz").status_code == 200
    finally:
        admin.dispose()
        with app.app_context():
            db.engine.dispose()
