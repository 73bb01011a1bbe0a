"""The peers (--peers): their seeded credentials are accepted by one real request of each
plan, a refresh rotates, and the refresh plans never present a token twice.

The servers are real (the pinned installs under bench/out/peers); without them those tests
are skipped, saying how to install them. The slicing test needs nothing installed.
"""

import re
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from bench import harness
from bench import peers
from bench.harness import Measurement
from bench.harness import Run
from bench.load import PROXY_HEADERS
from bench.peers import install
from bench.peers.servers import DotServer
from bench.peers.servers import OidcServer
from bench.peers.servers import gunicorn_settings
from bench.peers.servers import seed_dot
from bench.servers import answers
from bench.servers import free_port
from bench.settings import QUICK

INSTALL_HINT = "run `bash bench/run --quick --peers` once to install it under bench/out/peers"
needs_dot = pytest.mark.skipif(
    not install.dot_installed(), reason=f"django-oauth-toolkit is not installed; {INSTALL_HINT}")
needs_oidc = pytest.mark.skipif(
    shutil.which("node") is None or not install.oidc_installed(),
    reason=f"node or oidc-provider is not installed; {INSTALL_HINT}")


def fill(template: str | None, value: str) -> str | None:
    """What walk.lua sends: the template with ``{value}`` replaced."""
    return None if template is None else template.replace("{value}", value)


def send(url: str, plan, value: str) -> tuple[int, str]:
    """One request of ``plan`` with ``value``, exactly as the load plan would send it."""
    headers = {**PROXY_HEADERS, **{k: fill(v, value) for k, v in plan.headers.items()}}
    body = fill(plan.body, value)
    request = urllib.request.Request(url + plan.path, data=body.encode() if body else None,
                                     headers=headers, method=plan.method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def right(plan, status: int, body: str) -> bool:
    """walk.lua's judgement: the plan's status and every pattern (``%s`` is Lua's ``\\s``)."""
    return status == plan.status and all(
        re.search(re.escape(p).replace("%s", r"\s").replace(r"\*", "*"), body)
        for p in plan.expect)


def refresh_token_of(body: str) -> str:
    """The refresh token of a token response, with or without spaces after the colon."""
    return re.search(r'"refresh_token":\s*"([^"]+)"', body).group(1)


def check_rows(url: str, rows) -> None:
    """Every read credential of the sample is accepted; a refresh rotates, a replay fails."""
    read, refresh = rows
    assert read.plan.cycle and not refresh.plan.cycle and refresh.single_use
    for value in read.values:
        status, body = send(url, read.plan, value)
        assert right(read.plan, status, body), (status, body)
    first = refresh.values[0]
    status, body = send(url, refresh.plan, first)
    assert right(refresh.plan, status, body), (status, body)
    successor = refresh_token_of(body)
    assert successor != first
    # Replayed, the same token is refused: a plan that replayed would count wrong answers.
    status, body = send(url, refresh.plan, first)
    assert status == 400 and "invalid_grant" in body
    assert not right(refresh.plan, status, body)
    # Every pool token is its own family: the replay above did not end the next one.
    status, body = send(url, refresh.plan, refresh.values[1])
    assert right(refresh.plan, status, body), (status, body)


@pytest.fixture
def started():
    """Servers started by a test, always stopped."""
    servers = []
    yield servers
    for server in servers:
        server.stop()


def start(server, started) -> None:
    """Spawn a peer and wait until its readiness path answers."""
    started.append(server)
    server.spawn()
    server.wait_until(lambda: answers(server.url + server.ready_path), "ready")


@needs_dot
def test_dot_seeded_credentials_are_accepted(tmp_path, started):
    """DOT's seeded introspection sample and refresh pool work through the row plans."""
    database = tmp_path / "dot.sqlite3"
    values = seed_dot(database, 40, 8, 3, tmp_path / "values.json")
    assert len(values["access_tokens"]) == 8 and len(values["refresh_pool"]) == 3
    assert len(set(values["access_tokens"])) == 8
    server = DotServer(f"test-peer-dot-{secrets.token_hex(4)}", free_port(), database,
                       gunicorn_settings(QUICK))
    start(server, started)
    check_rows(server.url, peers.dot_rows(values, peers.DOT_POOL_RATE))


@needs_oidc
def test_oidc_minted_credentials_are_accepted(tmp_path, started):
    """oidc-provider's minted introspection sample and refresh pool work through the plans."""
    install.install_oidc()  # the current server script beside node_modules
    server = OidcServer(f"test-peer-oidc-{secrets.token_hex(4)}", free_port(), 40, 8, 3,
                        tmp_path / "values.json")
    start(server, started)
    values = server.values()
    assert len(set(values["access_tokens"])) == 8 and len(values["refresh_pool"]) == 3
    check_rows(server.url, peers.oidc_rows(server, values, peers.OIDC_POOL_RATE))


@pytest.mark.parametrize("key", ["dot_refresh", "oidc_refresh"])
def test_refresh_plans_never_present_a_token_twice(tmp_path, monkeypatch, key):
    """Warm-up and rounds take disjoint slices, and the pool prepare() makes covers them."""
    monkeypatch.setattr(harness, "OUT", tmp_path)
    profile = replace(QUICK, peers=True)
    seconds = profile.warmup + profile.rounds * profile.duration
    rate = peers.DOT_POOL_RATE if key == "dot_refresh" else peers.OIDC_POOL_RATE
    pool = [f"rt{i}" for i in range(rate * seconds)]
    values = {"rs_id": "rs", "rs_secret": "s", "client_id": "c", "client_secret": "s",
              "access_tokens": ["at"], "refresh_pool": pool}
    if key == "dot_refresh":
        row = peers.dot_rows(values, rate)[1]
    else:
        fake = type("Fake", (), {"rs_secret": "s", "client_secret": "s"})()
        row = peers.oidc_rows(fake, values, rate)[1]
    assert row.key == key and row.single_use and not row.plan.cycle
    m = Measurement(peers.PeerSet("peer", "peer", 1, None), row, None)
    run = Run(profile)
    used = (run.values_for(m, profile.warmup, "warmup").read_text().split()
            + [v for r in range(profile.rounds)
               for v in run.values_for(m, profile.duration, f"r{r}").read_text().split()])
    assert len(used) == len(set(used)) == len(pool)
