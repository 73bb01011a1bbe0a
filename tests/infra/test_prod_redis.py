"""Rate-limit counters in Redis, and what each limit does while Redis is down (SPEC §10).

The test runs its own redis-server on a free port and stops it; the shared Redis is never
touched. Decision under test (idp/infra/throttle.py): token endpoint, introspection and the API
fail open; sign-in keeps counting in the process.
"""

import base64
import secrets
import time

import pytest

from idp.cli.demo import seed_demo
from idp.infra.config import counter_store_options
from idp.infra.extensions import limiter
from tests import prod_support
from tests.prod_support import RedisServer
from tests.prod_support import add_credentials
from tests.prod_support import flask_tokens
from tests.prod_support import token_form

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(prod_support.REDIS_SERVER is None,
                       reason="redis-server is not installed (the test runs its own instance)"),
]

LIMIT = 4


@pytest.fixture
def redis_server(tmp_path):
    """A private Redis, started; always stopped at the end."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_app(make_app, redis_server):
    """An IdP whose counters live in the private Redis, with small limits."""
    app = make_app(
        RATELIMIT_STORAGE_URI=redis_server.url,
        RATELIMIT_STORAGE_OPTIONS=counter_store_options(redis_server.url),
        RATELIMIT_KEY_PREFIX="t" + secrets.token_hex(6),
        IDP_LOGIN_PAIR_RATE_LIMIT=f"{LIMIT} per minute",
        IDP_TOKEN_RATE_LIMIT=f"{LIMIT} per minute",
        IDP_INTROSPECTION_RATE_LIMIT=f"{LIMIT} per minute",
        IDP_API_RATE_LIMIT=f"{LIMIT} per minute",
    )
    yield app
    # The limiter object is process-wide; never hand a "store is down" state to later tests.
    limiter._storage_dead = False


class Calls:
    """The four rate-limited doors of the IdP, driven through one test client."""

    def __init__(self, app):
        self.client = app.test_client()
        with app.app_context():
            self.demo = seed_demo()
        extra = add_credentials(app, self.demo)
        self.api_key = extra["api_key"]
        rs_id, rs_secret = extra["resource_server"]
        self.rs_auth = "Basic " + base64.b64encode(f"{rs_id}:{rs_secret}".encode()).decode()
        self.refresh_token = flask_tokens(self.client, self.demo)["refresh_token"]

    def refresh(self):
        """One refresh of the connection's current token; keeps the successor."""
        response = self.client.post("/oauth/token", data=token_form(
            self.demo, grant_type="refresh_token", refresh_token=self.refresh_token))
        if response.status_code == 200:
            self.refresh_token = response.get_json()["refresh_token"]
        return response

    def introspect(self):
        """Introspect the API key as the resource server."""
        return self.client.post("/oauth/introspect", data={"token": self.api_key},
                                headers={"Authorization": self.rs_auth})

    def api(self):
        """Call /api/v1/me with the API key."""
        return self.client.get("/api/v1/me", headers={"Authorization": f"Bearer {self.api_key}"})

    def bad_sign_in(self):
        """One failed sign-in attempt for the demo user."""
        return self.client.post("/login", data={"email": self.demo["user"]["email"],
                                                "password": "wrong-password"})


def statuses(call, times: int) -> list[int]:
    """Status codes of ``times`` calls."""
    return [call().status_code for _ in range(times)]


def test_limits_hold_with_redis_and_the_decision_holds_without_it(redis_app, redis_server):
    calls = Calls(redis_app)  # its code exchange counted once, against its connection
    redis_app.config["WTF_CSRF_ENABLED"] = False  # sign-in posts without a form round trip

    # Redis up: every limit is enforced from the shared counters.
    assert statuses(calls.refresh, LIMIT) == [200] * (LIMIT - 1) + [429]
    assert statuses(calls.introspect, LIMIT + 1) == [200] * LIMIT + [429]
    assert statuses(calls.api, LIMIT + 1) == [200] * LIMIT + [429]
    assert statuses(calls.bad_sign_in, LIMIT + 1) == [401] * LIMIT + [429]
    limited = calls.refresh()
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0

    redis_server.stop()
    try:
        # Fail open: the shared counts are over the limit, yet nothing is refused, and a Redis
        # failure never surfaces as an error.
        assert statuses(calls.refresh, 3 * LIMIT) == [200] * (3 * LIMIT)
        assert statuses(calls.introspect, 3 * LIMIT) == [200] * (3 * LIMIT)
        assert statuses(calls.api, 3 * LIMIT) == [200] * (3 * LIMIT)
        # Counted in this process: brute force meets the limit again after LIMIT attempts.
        assert statuses(calls.bad_sign_in, LIMIT + 2) == [401] * LIMIT + [429, 429]
    finally:
        redis_server.start()

    # Back: the limiter notices on its own (with backoff) and counts in Redis again.
    deadline = time.monotonic() + 45
    while calls.refresh().status_code != 429:
        assert time.monotonic() < deadline, "token endpoint never limited again after recovery"
        time.sleep(0.5)
    assert calls.introspect().status_code == 200
