"""What a run measures: the quick and full profiles, and the production-like server settings."""

import os
import secrets
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

#: The repository root (the benchmark runs everything from there).
ROOT = Path(__file__).resolve().parent.parent
#: Where a run keeps its databases, load plans, server logs and profiles.
OUT = ROOT / "bench" / "out"
VENV_BIN = ROOT / ".venv" / "bin"
GUNICORN_CONF = ROOT / "idp" / "infra" / "gunicorn_conf.py"

#: An https issuer turns on the production checks (SPEC §7); nothing resolves this name.
ISSUER = "https://idp.bench.flowestate.test"
#: Far above anything the load reaches, so limits are counted but never refuse a request.
UNLIMITED = "100000000 per minute"
#: PostgreSQL server for the scratch databases (trust auth on loopback).
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

#: Environment variables a run sets itself; inherited values of these are dropped.
OWNED_ENV = (
    "SECRET_KEY", "DATABASE_URL", "IDP_", "RATELIMIT_", "FLASK_", "AUTHLIB_",
)


@dataclass(frozen=True)
class Profile:
    """The knobs of one run."""

    name: str
    #: Stored tokens (and, separately, API keys and refresh tokens) per data set.
    sizes: tuple[int, ...]
    databases: tuple[str, ...]
    rounds: int
    #: Seconds of load per row per round.
    duration: int
    #: Seconds of unmeasured load per row before the first round.
    warmup: int
    #: Distinct live API keys and access tokens the read rows cycle through.
    sample: int
    #: Upper bound (requests/s) used to size the single-use refresh-token and code pools.
    pool_rate: int
    connections: int = 16
    threads: int = 1
    #: Threads per gunicorn worker for every server (None: the config's own default).
    server_threads: int | None = None
    #: gunicorn worker processes for every server (None: the config's own default).
    server_workers: int | None = None
    #: gunicorn worker class for every server (None: the config's own: sync with one thread).
    worker_class: str | None = None
    #: What serves every server of the run: gunicorn, or granian for comparison (bench/granian.py).
    server: str = "gunicorn"
    #: Keep the databases (SQLite files, PostgreSQL scratch databases) after the run.
    keep_data: bool = False
    #: Also install, seed and measure the peer authorization servers (bench/peers).
    peers: bool = False

    @property
    def pool_size(self) -> int:
        """Single-use credentials each pool needs for the warm-up and every round."""
        return self.pool_rate * (self.warmup + self.rounds * self.duration)


FULL = Profile(
    name="full", sizes=(10_000, 1_000_000), databases=("sqlite", "postgresql"), rounds=5,
    duration=6, warmup=2, sample=2_000, pool_rate=2_500,
)
QUICK = Profile(
    name="quick", sizes=(1_000, 10_000), databases=("sqlite",), rounds=2, duration=2,
    warmup=1, sample=200, pool_rate=2_000,
)


def choose(quick: bool, **overrides) -> Profile:
    """The quick or full profile with any command-line overrides applied."""
    base = QUICK if quick else FULL
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def base_env() -> dict:
    """This process's environment without any setting the run decides for itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OWNED_ENV)}


def idp_env(database_url: str, port: int, secret_key: str, limiter_uri: str) -> dict:
    """Production mode behind one TLS-terminating proxy, with limits out of the way."""
    env = server_env(port)
    env.update({
        "IDP_ISSUER": ISSUER,
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "IDP_ALLOW_SQLITE": "1" if database_url.startswith("sqlite") else "",
        "IDP_PROXY_HOPS": "1",
        "IDP_API_RATE_LIMIT": UNLIMITED,
        "IDP_INTROSPECTION_RATE_LIMIT": UNLIMITED,
        "IDP_TOKEN_RATE_LIMIT": UNLIMITED,
        "RATELIMIT_STORAGE_URI": limiter_uri,
    })
    return env


def server_env(port: int, database_url: str | None = None) -> dict:
    """What every gunicorn of a run shares: its bind address, and access logs written nowhere.

    The access log is still formatted (the production cost); only the output is discarded.
    """
    env = base_env()
    env.update({"IDP_BIND": f"127.0.0.1:{port}", "IDP_ACCESS_LOG": "/dev/null"})
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def new_secret_key() -> str:
    """A strong per-run SECRET_KEY, as the production checks demand."""
    return secrets.token_urlsafe(48)
