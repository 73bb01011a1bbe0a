"""Two hosts whose clocks are 4 s apart judge every time by one clock, the database's (issue 18).

Two gunicorn servers share one PostgreSQL database; libfaketime sets the fast one's clock (its
wall clock and its monotonic clock alike) 4 s ahead. A refresh retried on the other host near
the end of the grace window is still a retry, a retry after the window is still theft, an
access token expires at the same instant on both, a refresh storm split over both gets no 4xx,
and /readyz takes the fast host out. Every check here failed while each host used its own clock.
"""

import glob
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from tests.helpers import TEST_SECRET_KEY
from tests.helpers import LiveServer
from tests.helpers import fresh_database
from tests.prod_support import http_code
from tests.prod_support import seed
from tests.prod_support import token_form

#: libfaketime's multithreaded build (Debian's libfaketime package, installed by .ci/test).
FAKETIME_LIBRARY = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)

pytestmark = [
    pytest.mark.live,
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("IDP_TEST_DATABASE_URL"),
                       reason="hosts with different clocks need a shared database server: "
                              "runs in the PostgreSQL pass (IDP_TEST_DATABASE_URL set)"),
    pytest.mark.skipif(FAKETIME_LIBRARY is None,
                       reason="needs libfaketime (apt-get install faketime; .ci/test does it)"),
]

#: How far the fast host's clock runs ahead of the slow one's (and of the database's).
SKEW = 4
#: The grace window: a retry 7.5 s after a rotation is inside it, one after 12 s is not.
GRACE = 10
#: A short access-token life, waited out in the test.
ACCESS_TTL = 6
RACERS = 16
TIMEOUT = 30


@pytest.fixture(scope="module")
def hosts(template_db, tmp_path_factory):
    """The slow host (real clock) and the fast one (SKEW ahead), on one seeded database."""
    directory = tmp_path_factory.mktemp("skew")
    url = fresh_database(template_db, directory)
    demo = seed(url, {"SECRET_KEY": TEST_SECRET_KEY, "TESTING": True})
    settings = {"IDP_REFRESH_GRACE_SECONDS": str(GRACE), "IDP_ACCESS_TOKEN_TTL": str(ACCESS_TTL)}
    slow = LiveServer(url, directory, extra_env=settings)
    fast = LiveServer(url, directory, extra_env={
        **settings, "LD_PRELOAD": FAKETIME_LIBRARY, "FAKETIME": f"+{SKEW}s"})
    try:
        slow.start()
        fast.start()
        # One signed-in browser for every connect: sign-in attempts are rate-limited.
        with requests.Session() as browser:
            yield {"slow": slow, "fast": fast}, demo, browser, url
    finally:
        slow.stop()
        fast.stop()


def _connect(server: LiveServer, demo: dict, browser) -> dict:
    """Connect the demo's Zapier client on ``server``; the first token response."""
    code, verifier = http_code(server.url, demo, browser)
    return _exchange(server, demo, code, verifier)


def _exchange(server: LiveServer, demo: dict, code: str, verifier: str) -> dict:
    """Redeem an authorization code on ``server``."""
    response = requests.post(server.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="authorization_code", code=code, code_verifier=verifier,
        redirect_uri=demo["clients"]["zapier"]["redirect_uris"][0]))
    assert response.status_code == 200, response.text
    return response.json()


def _refresh(server: LiveServer, demo: dict, raw: str) -> requests.Response:
    """Present a refresh token to ``server``."""
    return requests.post(server.url + "/oauth/token", timeout=TIMEOUT, data=token_form(
        demo, grant_type="refresh_token", refresh_token=raw))


def _me(server: LiveServer, access: str) -> requests.Response:
    """Call /api/v1/me on ``server`` with an access token."""
    return requests.get(server.url + "/api/v1/me", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {access}"})


def _introspect(server: LiveServer, demo: dict, access: str) -> dict:
    """Introspect an access token on ``server`` as the demo's resource server."""
    response = requests.post(server.url + "/oauth/introspect", data={"token": access},
                             auth=demo["resource_server"], timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def _ended_connections(url: str) -> int:
    """How many connections have ended, read from the database itself."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM connections WHERE ended_at IS NOT NULL")).scalar()
    finally:
        engine.dispose()


def _sleep_until(moment: float) -> None:
    """Wait until ``time.monotonic()`` reaches ``moment``."""
    time.sleep(max(0.0, moment - time.monotonic()))


def _race(calls) -> list:
    """Run the calls at the same instant, each from its own thread."""
    barrier = threading.Barrier(len(calls))

    def fire(call):
        barrier.wait(timeout=TIMEOUT)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(fire, calls))


def _all_benign(responses) -> set:
    """Every answer is 200 (or 503 + Retry-After, a passing fault); the new refresh tokens."""
    for response in responses:
        if response.status_code == 503:
            assert response.headers.get("Retry-After")
            continue
        assert response.status_code == 200, (response.status_code, response.text)
    return {r.json()["refresh_token"] for r in responses if r.status_code == 200}


@pytest.mark.parametrize(("rotated_on", "retried_on"), [("slow", "fast"), ("fast", "slow")])
def test_the_grace_window_is_the_same_on_both_hosts(hosts, rotated_on, retried_on):
    servers, demo, browser, url = hosts
    ended = _ended_connections(url)
    first = _connect(servers["slow"], demo, browser)
    rotated = _refresh(servers[rotated_on], demo, first["refresh_token"])
    rotated_at = time.monotonic()
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()

    # The answer was lost; the connector retries near the end of the window, on the other host.
    _sleep_until(rotated_at + GRACE - 2.5)
    retry = _refresh(servers[retried_on], demo, first["refresh_token"])
    assert retry.status_code == 200, retry.text
    assert retry.json()["refresh_token"] == successor["refresh_token"]
    assert _ended_connections(url) == ended, "the connection lives on"

    # After the window (by less than the skew) the same token is theft on either host.
    _sleep_until(rotated_at + GRACE + 2)
    late = _refresh(servers[retried_on], demo, first["refresh_token"])
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant"), late.text
    assert _ended_connections(url) == ended + 1
    for server in servers.values():
        assert _refresh(server, demo, successor["refresh_token"]).status_code == 400


def test_an_access_token_expires_at_the_same_instant_on_both_hosts(hosts):
    servers, demo, browser, _ = hosts
    codes = {name: http_code(server.url, demo, browser) for name, server in servers.items()}
    issued_from = time.monotonic()
    tokens = {name: _exchange(servers[name], demo, *codes[name]) for name in servers}
    issued_by = time.monotonic()
    for body in tokens.values():
        assert body["expires_in"] == ACCESS_TTL

    claims = [_introspect(server, demo, body["access_token"])
              for server in servers.values() for body in tokens.values()]
    for claim in claims:
        assert claim["active"] is True, claim
        assert claim["exp"] - claim["iat"] == ACCESS_TTL
    # Each token's exp reads the same on both hosts.
    assert claims[0]["exp"] == claims[2]["exp"] and claims[1]["exp"] == claims[3]["exp"]

    # Halfway through its life (and past the skew) each token works on both hosts...
    _sleep_until(issued_by + ACCESS_TTL / 2)
    for server in servers.values():
        for body in tokens.values():
            assert _me(server, body["access_token"]).status_code == 200
    # ...and once its life is over (by less than the skew) it is expired on both.
    _sleep_until(issued_from + ACCESS_TTL + 2)
    for server in servers.values():
        for body in tokens.values():
            response = _me(server, body["access_token"])
            assert response.status_code == 401
            assert response.json()["error"]["reason"] == "token_expired"


def test_a_refresh_storm_split_over_both_hosts_gets_no_4xx(hosts):
    servers, demo, browser, _ = hosts
    hosts_in_turn = [servers["slow"], servers["fast"]] * (RACERS // 2)
    live = _connect(servers["fast"], demo, browser)["refresh_token"]

    # Zaps racing on one live token, half of them on each host: one successor for all.
    (successor,) = _all_benign(_race(
        [lambda s=server: _refresh(s, demo, live) for server in hosts_in_turn]))

    # The successor is rotated on the slow host and the answer lost; 7.5 s later every zap
    # retries it at once, over both hosts.
    rotated = _refresh(servers["slow"], demo, successor)
    rotated_at = time.monotonic()
    assert rotated.status_code == 200, rotated.text
    _sleep_until(rotated_at + GRACE - 2.5)
    newest = _all_benign(_race(
        [lambda s=server: _refresh(s, demo, successor) for server in hosts_in_turn]))
    assert newest == {rotated.json()["refresh_token"]}
    assert _refresh(servers["fast"], demo, newest.pop()).status_code == 200


def test_readyz_takes_the_host_whose_clock_is_off_out(hosts):
    servers, _, _, _ = hosts
    slow = requests.get(servers["slow"].url + "/readyz", timeout=TIMEOUT)
    assert slow.status_code == 200, slow.text
    assert slow.json()["clock"] == "database"
    assert abs(slow.json()["clock_offset_seconds"]) < 0.5

    fast = requests.get(servers["fast"].url + "/readyz", timeout=TIMEOUT)
    assert fast.status_code == 503, fast.text
    body = fast.json()
    assert body["status"] == "clock_offset"
    assert SKEW - 0.5 < body["clock_offset_seconds"] < SKEW + 0.5
    assert body["clock_offset_limit_seconds"] == 2
    assert "off the database's" in servers["fast"].log()
    assert "off the database's" not in servers["slow"].log()
