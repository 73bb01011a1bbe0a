"""An IdP with the shipped limits behind one proxy hop, on memory or on the shared Redis."""

import os
import secrets

import pytest

from idp.infra.config import ENV_DEFAULTS
from idp.infra.config import counter_store_options

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "")
#: Every counter store the limit tests run on: this process's, and Redis when CI has one.
STORES = ["memory", pytest.param("redis", marks=[
    pytest.mark.redis,
    pytest.mark.skipif(not REDIS_URL, reason="IDP_TEST_REDIS_URL is not set (CI sets it)"),
])]


def shipped_limits() -> dict:
    """Every rate-limit setting at its shipped default (whatever this version names them)."""
    return {name: value for name, value in ENV_DEFAULTS.items() if name.endswith("RATE_LIMIT")}


def production_app(make_app, store: str, **overrides):
    """The IdP with shipped limits, trusting one proxy hop's X-Forwarded-For, counting in
    ``store`` under a key prefix of its own."""
    uri = REDIS_URL if store == "redis" else "memory://"
    return make_app(**{
        **shipped_limits(), "IDP_PROXY_HOPS": 1, "RATELIMIT_STORAGE_URI": uri,
        "RATELIMIT_STORAGE_OPTIONS": counter_store_options(uri),
        "RATELIMIT_KEY_PREFIX": "t" + secrets.token_hex(6), **overrides,
    })


def from_address(address: str) -> dict:
    """Request options that make a request come from ``address`` through the proxy."""
    return {"headers": {"X-Forwarded-For": address}}
