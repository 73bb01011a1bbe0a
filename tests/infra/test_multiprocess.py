"""Two IdP servers (two gunicorn process groups) on one database race on the same tokens (SPEC §7).

Runs on whichever database the suite runs on: a shared SQLite file, or PostgreSQL in CI.
"""

import os
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import select

from idp.core import secrets as cs
from idp.store.models import Connection
from idp.store.models import RefreshToken
from tests.helpers import TEST_SECRET_KEY
from tests.helpers import fresh_database
from tests.prod_support import ConfiguredServer
from tests.prod_support import http_code
from tests.prod_support import http_tokens
from tests.prod_support import seed
from tests.prod_support import token_form

pytestmark = pytest.mark.live

RACERS = 50
TIMEOUT = 60
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "")


@pytest.fixture(scope="module")
def shared_db(template_db, tmp_path_factory):
    """One database for the whole module, seeded once."""
    url = fresh_database(template_db, tmp_path_factory.mktemp("multiprocess"))
    demo = seed(url, {"SECRET_KEY": TEST_SECRET_KEY, "TESTING": True})
    return url, demo


@pytest.fixture(scope="module")
def pair(shared_db, tmp_path_factory):
    """Two servers, each with its own workers and pool, on the same database."""
    url, _ = shared_db
    logs = tmp_path_factory.mktemp("servers")
    servers = [ConfiguredServer(url, logs, workers=2, threads=4) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def race(calls) -> list:
    """Run every call at the same moment (a barrier), each in its own thread."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def report(name: str, responses) -> Counter:
    """Count statuses (and OAuth error codes) and print them for the record."""
    tally = Counter(
        f"{r.status_code} {r.json().get('error', '')}".strip() for r in responses
    )
    print(f"\n{name}: {len(responses)} requests -> {dict(tally)}")
    return tally


def live_refresh_tokens(url: str, connection_public_id: str) -> list[str]:
    """Digests of the connection's refresh tokens that have not been rotated."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(RefreshToken.digest)
            .join(Connection, Connection.id == RefreshToken.connection_id)
            .where(Connection.public_id == connection_public_id, RefreshToken.rotated_at.is_(None))
        ).scalars().all()
    engine.dispose()
    return rows


def connection_of(url: str, access_token: str) -> tuple[str, str | None]:
    """(public id, end reason) of the connection an access token belongs to."""
    from idp.store.models import AccessToken

    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            select(Connection.public_id, Connection.end_reason)
            .join(AccessToken, AccessToken.connection_id == Connection.id)
            .where(AccessToken.digest == cs.digest(access_token))
        ).one()
    engine.dispose()
    return row[0], row[1]


def me(server, token: str) -> requests.Response:
    """GET /api/v1/me on one server."""
    return requests.get(server.url + "/api/v1/me", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {token}"})


def test_concurrent_refreshes_across_processes_share_one_successor(pair, shared_db):
    url, demo = shared_db
    a, b = pair
    tokens = http_tokens(a.url, demo)
    form = token_form(demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    calls = [
        (lambda s=server: requests.post(s.url + "/oauth/token", data=form, timeout=TIMEOUT))
        for server in [a, b] * (RACERS // 2)
    ]
    responses = race(calls)
    tally = report("refresh race", responses)
    assert tally == {"200": RACERS}
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    successor = successors.pop()
    connection_id, _ = connection_of(url, tokens["access_token"])
    assert live_refresh_tokens(url, connection_id) == [cs.digest(successor)]
    # The one successor works on either server, and every access token handed out works.
    for server in (a, b):
        assert me(server, responses[0].json()["access_token"]).status_code == 200
    follow = requests.post(b.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="refresh_token", refresh_token=successor))
    assert follow.status_code == 200


def test_concurrent_code_redemptions_one_wins_and_the_replay_ends_it(pair, shared_db):
    url, demo = shared_db
    a, b = pair
    with requests.Session() as browser:
        code, verifier = http_code(a.url, demo, browser)
    form = token_form(demo, grant_type="authorization_code", code=code, code_verifier=verifier,
                      redirect_uri=demo["clients"]["zapier"]["redirect_uris"][0])
    calls = [
        (lambda s=server: requests.post(s.url + "/oauth/token", data=form, timeout=TIMEOUT))
        for server in [a, b] * (RACERS // 2)
    ]
    responses = race(calls)
    tally = report("code race", responses)
    assert tally == {"200": 1, "400 invalid_grant": RACERS - 1}
    winner = next(r.json() for r in responses if r.status_code == 200)
    # RFC 6749 §10.5: the replays ended the connection, so the winner's tokens are dead too.
    assert connection_of(url, winner["access_token"])[1] == "code_replay"
    for server in (a, b):
        refused = me(server, winner["access_token"])
        assert refused.status_code == 401
        assert refused.json()["error"]["reason"] == "token_revoked"
    refresh = requests.post(b.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="refresh_token", refresh_token=winner["refresh_token"]))
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")


def test_disconnect_on_one_server_is_refused_at_once_on_the_other(pair, shared_db):
    _, demo = shared_db
    a, b = pair
    tokens = http_tokens(a.url, demo)
    assert me(b, tokens["access_token"]).status_code == 200
    zapier = demo["clients"]["zapier"]
    revoked = requests.post(a.url + "/oauth/revoke", timeout=TIMEOUT,
                            data={"token": tokens["refresh_token"]},
                            auth=(zapier["client_id"], zapier["client_secret"]))
    assert revoked.status_code == 200
    refused = me(b, tokens["access_token"])
    assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "token_revoked")
    refresh = requests.post(b.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]))
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="IDP_TEST_REDIS_URL is not set (no shared Redis)")
def test_rate_limit_counters_are_shared_through_redis(shared_db, tmp_path):
    url, demo = shared_db
    env = {"RATELIMIT_STORAGE_URI": REDIS_URL, "IDP_AUTH_FAILURE_RATE_LIMIT": "6 per minute",
           "RATELIMIT_KEY_PREFIX": "t" + secrets.token_hex(6)}
    servers = [ConfiguredServer(url, tmp_path, extra_env=env, workers=1, threads=2)
               for _ in range(2)]
    try:
        for server in servers:
            server.start()
        form = {**token_form(demo, grant_type="refresh_token", refresh_token="fe_rt_" + "x" * 43),
                "client_secret": "wrong"}
        statuses = [requests.post(servers[i % 2].url + "/oauth/token", data=form,
                                  timeout=TIMEOUT).status_code for i in range(8)]
    finally:
        for server in servers:
            server.stop()
    # Six failures counted across both processes, whichever served them; then both refuse.
    assert statuses == [401] * 6 + [429, 429]
