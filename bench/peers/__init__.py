"""Peer authorization servers measured in the same run as the IdP (``bench/run --peers``).

django-oauth-toolkit on Django (SQLite, gunicorn with the IdP's worker settings) and node's
oidc-provider (one process, in-memory storage) answer the same two questions as the IdP's
rows, introspection and a refresh with rotation, in the same interleaved rounds, so their
figures sit beside the ceiling of the same run. See docs/PERFORMANCE.md, "Peers".
"""

import time
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlencode

from bench.load import Plan
from bench.peers import install
from bench.peers.servers import DotServer
from bench.peers.servers import OidcServer
from bench.peers.servers import gunicorn_settings
from bench.peers.servers import seed_dot
from bench.scenarios import FORM
from bench.scenarios import Row
from bench.scenarios import basic
from bench.servers import Process
from bench.servers import free_port
from bench.settings import OUT

#: Upper bounds (requests/s) that size each peer's single-use refresh pool; far above what
#: each reached on this machine, so a pool never runs out mid-round.
DOT_POOL_RATE = 1_500
OIDC_POOL_RATE = 6_000
ACTIVE = '"active":%s*true'
#: A refresh answer carries a new pair (the plan never presents a refresh token twice).
NEW_PAIR = ('"access_token":%s*"', '"refresh_token":%s*"')


@dataclass
class PeerSet:
    """One peer: its server, its rows and what its seed made (plays a data set's part)."""

    name: str
    database: str
    size: int
    server: Process
    rows: list[Row] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seed_seconds: float = 0.0


def dot_rows(values: dict, pool_rate: int) -> list[Row]:
    """Introspection as the resource-server client (Basic), refresh with the secret in the body
    (as Zapier sends it to the IdP)."""
    rs = {"Authorization": basic(values["rs_id"], values["rs_secret"]), "Content-Type": FORM}
    client = urlencode({"client_id": values["client_id"],
                        "client_secret": values["client_secret"]})
    return [
        Row("dot_introspect", "peer",
            Plan("POST", "/o/introspect/", rs, "token={value}",
                 (ACTIVE, '"scope":%s*"read"'), cycle=True), tuple(values["access_tokens"])),
        Row("dot_refresh", "peer",
            Plan("POST", "/o/token/", {"Content-Type": FORM},
                 "grant_type=refresh_token&refresh_token={value}&" + client, NEW_PAIR,
                 cycle=False), tuple(values["refresh_pool"]), pool_rate),
    ]


def oidc_rows(server: OidcServer, values: dict, pool_rate: int) -> list[Row]:
    """Introspection as the resource-server client, refresh as the client: both Basic."""
    rs = {"Authorization": basic("flowestate-api", server.rs_secret), "Content-Type": FORM}
    client = {"Authorization": basic("zapier", server.client_secret), "Content-Type": FORM}
    return [
        Row("oidc_introspect", "peer",
            Plan("POST", "/token/introspection", rs, "token={value}",
                 (ACTIVE, '"client_id":%s*"zapier"'), cycle=True),
            tuple(values["access_tokens"])),
        Row("oidc_refresh", "peer",
            Plan("POST", "/token", client, "grant_type=refresh_token&refresh_token={value}",
                 NEW_PAIR, cycle=False), tuple(values["refresh_pool"]), pool_rate),
    ]


def prepare(run) -> list[PeerSet]:
    """Install both peers, seed DOT, and define both servers (the run starts them).

    Each holds as many stored tokens as the run's smallest data set, and hands the read row
    the same number of distinct tokens as the IdP's read rows.
    """
    profile = run.profile
    size, sample = min(profile.sizes), profile.sample
    seconds = profile.warmup + profile.rounds * profile.duration
    from bench.harness import log

    log("peers: installing (pinned) under bench/out/peers")
    install.install()
    peers_out = install.PEERS_OUT
    dot_pool = DOT_POOL_RATE * seconds
    log(f"peers: seeding django-oauth-toolkit ({size:,} tokens, pool {dot_pool:,})")
    started = time.monotonic()
    database = peers_out / "dot.sqlite3"
    values = seed_dot(database, size, sample, dot_pool, OUT / "values-peer-dot.json")
    dot = PeerSet(f"dot-{install.DOT_PACKAGES['django-oauth-toolkit']}", "dot", size,
                  DotServer("peer-dot", free_port(), database, gunicorn_settings(profile)),
                  dot_rows(values, DOT_POOL_RATE), values["counts"],
                  time.monotonic() - started)
    oidc_pool = OIDC_POOL_RATE * seconds
    oidc = PeerSet(f"oidc-provider-{install.OIDC_PROVIDER}", "oidc", size,
                   OidcServer("peer-oidc", free_port(), size, sample, oidc_pool,
                              OUT / "values-peer-oidc.json"))
    run.servers += [dot.server, oidc.server]
    return [dot, oidc]


def finish(peer_sets: list[PeerSet]) -> None:
    """Once the servers answer: read the tokens oidc-provider minted, and make its rows."""
    from bench.harness import log

    for peer in peer_sets:
        if isinstance(peer.server, OidcServer):
            values = peer.server.values()
            peer.rows = oidc_rows(peer.server, values, OIDC_POOL_RATE)
            peer.counts = values["counts"]
            peer.seed_seconds = values["seconds"]
            log(f"peers: oidc-provider minted {len(peer.rows[1].values):,} refresh tokens "
                f"and {peer.size:,} access tokens in {peer.seed_seconds:.0f} s")


def describe() -> str:
    """The peers' releases and how each is served, for the conditions table."""
    dot = ", ".join(f"{name} {version}" for name, version in install.DOT_PACKAGES.items())
    return (f"{dot} on SQLite, gunicorn flags as the IdP's config; oidc-provider "
            f"{install.OIDC_PROVIDER} on node {install.node_version()}, one process, "
            "in-memory adapter")
