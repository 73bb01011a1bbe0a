"""Prometheus metrics: what each hook counts in-process, the setting, and the live listener."""

import dataclasses
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from idp.cli.demo import seed_demo
from idp.core import clock as core_clock
from idp.infra import metrics
from idp.infra.config import ConfigError
from idp.infra.config import build_config
from idp.infra.config import metrics_address
from idp.infra.config_checks import check_config
from idp.infra.extensions import limiter
from idp.store import dbclock
from tests.helpers import ROOT
from tests.helpers import LiveServer
from tests.helpers import free_port
from tests.oauth_helpers import connect
from tests.oauth_helpers import me
from tests.oauth_helpers import refresh

#: Any address: in-process apps record metrics but only gunicorn's master serves them.
BIND = "127.0.0.1:9"


@pytest.fixture
def measured(make_app):
    """An app recording metrics, its test client and the demo seed."""
    app = make_app(IDP_METRICS_BIND=BIND)
    with app.app_context():
        limiter.reset()
        demo = seed_demo()
    return app, app.test_client(), demo


def value(name: str, **labels) -> float:
    """A sample of this process's metrics (0 when it has none yet)."""
    return metrics.registry().get_sample_value(name, labels) or 0.0


class Delta:
    """How much the named samples moved since it was made (the process's metrics are shared)."""

    def __init__(self, *samples):
        self.samples = samples
        self.before = [value(name, **labels) for name, labels in samples]

    def __call__(self) -> list[float]:
        return [value(name, **labels) - before
                for (name, labels), before in zip(self.samples, self.before, strict=True)]


def test_answers_count_by_endpoint_and_status_and_the_hot_paths_are_timed(measured):
    _, client, demo = measured
    tokens = connect(client, demo)
    moved = Delta(
        ("idp_http_requests_total", {"endpoint": "api.me", "status": "200"}),
        ("idp_http_requests_total", {"endpoint": "api.me", "status": "401"}),
        ("idp_http_requests_total", {"endpoint": "unmatched", "status": "404"}),
        ("idp_http_request_duration_seconds_count", {"endpoint": "api.me"}),
    )
    for _ in range(3):
        assert me(client, tokens["access_token"]).status_code == 200
    assert me(client, "fe_at_" + "x" * 43).status_code == 401
    assert client.get("/nowhere/fe_at_secret").status_code == 404
    assert moved() == [3, 1, 1, 4]


def test_refresh_outcomes_grants_and_the_ended_connection(measured, clock):
    _, client, demo = measured
    moved = Delta(
        ("idp_oauth_refresh_outcomes_total", {"outcome": "rotated"}),
        ("idp_oauth_refresh_outcomes_total", {"outcome": "grace_replay"}),
        ("idp_oauth_refresh_outcomes_total", {"outcome": "reuse_ended"}),
        ("idp_oauth_token_requests_total", {"grant_type": "authorization_code",
                                            "result": "issued"}),
        ("idp_oauth_token_requests_total", {"grant_type": "refresh_token", "result": "issued"}),
        ("idp_oauth_token_requests_total", {"grant_type": "refresh_token",
                                            "result": "invalid_grant"}),
        ("idp_oauth_token_requests_total", {"grant_type": "other",
                                            "result": "unsupported_grant_type"}),
        ("idp_connections_ended_total", {"reason": "refresh_reuse"}),
        ("idp_db_lock_wait_seconds_count", {"lock": "sqlite_write"}),
        ("idp_db_lock_wait_seconds_count", {"lock": "row"}),
    )
    first = connect(client, demo)
    assert refresh(client, demo, first["refresh_token"]).status_code == 200
    assert refresh(client, demo, first["refresh_token"]).status_code == 200  # a retry
    clock.shift(61)
    assert refresh(client, demo, first["refresh_token"]).status_code == 400  # reuse
    assert client.post("/oauth/token", data={"grant_type": "password"}).status_code == 400
    counts = moved()
    assert counts[:8] == [1, 1, 1, 1, 2, 1, 1, 1]
    sqlite = client.application.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    assert (counts[8] > 0) == sqlite
    assert counts[9] >= 2  # the claims of both rotations


def test_token_bodies_refused_unread_are_counted_without_reading_them(measured):
    _, client, _ = measured
    moved = Delta(("idp_oauth_token_requests_total", {"grant_type": "other",
                                                      "result": "invalid_request"}))
    large = client.post("/oauth/token", data={"grant_type": "refresh_token", "x": "a" * 70000})
    unreadable = client.post("/oauth/token", json={"grant_type": "refresh_token"})
    assert (large.status_code, unreadable.status_code) == (413, 415)
    assert moved() == [2]


def test_a_429_is_counted_under_the_limit_that_refused(make_app):
    app = make_app(IDP_METRICS_BIND=BIND, IDP_AUTH_FAILURE_RATE_LIMIT="1 per minute")
    with app.app_context():
        limiter.reset()
    moved = Delta(("idp_rate_limit_refusals_total", {"limit": "auth-failure"}))
    form = {"grant_type": "refresh_token", "refresh_token": "fe_rt_x", "client_id": "cli_nobody",
            "client_secret": "wrong"}
    statuses = [app.test_client().post("/oauth/token", data=form).status_code for _ in range(3)]
    assert statuses == [401, 429, 429]
    assert moved() == [2]


def test_database_faults_are_counted_by_kind(measured):
    app, client, _ = measured

    @app.get("/_fault")
    def fault():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    moved = Delta(("idp_database_faults_total", {"kind": "unavailable"}))
    assert client.get("/_fault").status_code == 503
    assert moved() == [1]


class LockNotAvailable(Exception):
    """psycopg's error for PostgreSQL's lock_timeout, as far as the sqlstate goes."""

    sqlstate = "55P03"


@pytest.mark.parametrize("error, kind", [
    (PoolTimeout("QueuePool limit reached"), "pool_timeout"),
    (OperationalError("UPDATE", {}, LockNotAvailable("canceling statement")), "lock_timeout"),
    (OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked")), "lock_timeout"),
    (OperationalError("SELECT 1", {}, Exception("server closed the connection")), "unavailable"),
    (InterfaceError("SELECT 1", {}, Exception("connection already closed")), "unavailable"),
    (Exception("anything else"), "other"),
])
def test_fault_kinds(error, kind):
    assert metrics.fault_kind(error) == kind


def test_a_failure_to_record_never_fails_the_answer(measured, monkeypatch, caplog):
    _, client, demo = measured

    def full_disk(*_labels):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics._metrics, "_answers", {})
    monkeypatch.setattr(metrics._metrics.requests, "labels", full_disk)
    monkeypatch.setattr(metrics._metrics.connections_ended, "labels", full_disk)
    tokens = connect(client, demo)
    assert me(client, tokens["access_token"]).status_code == 200
    revoked = client.post("/oauth/revoke", data={
        "token": tokens["refresh_token"], "client_id": demo["clients"]["zapier"]["client_id"],
        "client_secret": demo["clients"]["zapier"]["client_secret"]})
    assert revoked.status_code == 200
    assert me(client, tokens["access_token"]).status_code == 401, "the connection has ended"
    assert "recording a metric failed" in caplog.text


def test_pool_gauge_returns_to_where_it_was(measured):
    _, client, demo = measured
    before = value("idp_db_pool_in_use")
    tokens = connect(client, demo)
    me(client, tokens["access_token"])
    assert value("idp_db_pool_in_use") == before


def test_without_the_setting_nothing_is_hooked_in(make_app):
    app = make_app()
    assert metrics._observe not in app.after_request_funcs.get(None, [])


@pytest.mark.parametrize("bind, address", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9100", ("::1", 9100)),
    ("metrics.internal:65535", ("metrics.internal", 65535)),
])
def test_metrics_bind_is_host_and_port(bind, address):
    assert metrics_address(bind) == address


@pytest.mark.parametrize("bind", ["9100", ":9100", "127.0.0.1", "127.0.0.1:0",
                                  "127.0.0.1:65536", "127.0.0.1:http", "[::1]:-1"])
def test_a_bad_metrics_bind_is_refused_with_its_name(tmp_path, bind):
    config = build_config(str(tmp_path), {"IDP_METRICS_BIND": bind})
    with pytest.raises(ConfigError, match="IDP_METRICS_BIND must be host:port"):
        check_config(config)


def scrape(url: str) -> dict[tuple[str, str], float]:
    """The samples of a Prometheus text page, keyed by (name, label text)."""
    samples = {}
    for line in requests.get(url, timeout=10).text.splitlines():
        match = re.fullmatch(r"([a-z_:]+)(\{.*\})? (\S+)", line)
        if match:
            samples[(match[1], match[2] or "")] = float(match[3])
    return samples


def healthz_answers(samples) -> float:
    """How many 200s of /healthz the scrape counts, whichever worker answered."""
    return samples.get(("idp_http_requests_total",
                        '{endpoint="health.healthz",status="200"}'), 0.0)


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == master:
                pids.append(int(entry))
    return pids


@pytest.mark.live
def test_metrics_are_summed_across_workers_on_their_own_listener(database_url, tmp_path):
    port = free_port()
    server = LiveServer(database_url, tmp_path, workers=2, threads=1,
                        extra_env={"IDP_METRICS_BIND": f"127.0.0.1:{port}"})
    server.start()
    try:
        listener = f"http://127.0.0.1:{port}/metrics"
        before = healthz_answers(scrape(listener))
        calls = 200
        # Parallel callers on fresh connections, so both sync workers take turns answering.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(
                lambda _: requests.get(server.url + "/healthz", timeout=10,
                                       headers={"Connection": "close"}).status_code,
                range(calls)))
        assert statuses == [200] * calls
        samples = scrape(listener)
        assert healthz_answers(samples) - before == calls
        # A worker that dies takes its live gauges along, never its counts.
        workers = worker_pids(server.proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sorted(worker_pids(server.proc.pid)) in (
                [], sorted(workers), sorted(workers[1:])):
            time.sleep(0.2)
        assert healthz_answers(scrape(listener)) - before >= calls
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
        assert ("idp_db_pool_in_use", "") in samples
        text = requests.get(listener, timeout=10).text
        assert "# TYPE idp_http_request_duration_seconds histogram" in text
    finally:
        server.stop()


@pytest.mark.parametrize("case, message", [
    ("public port", "Error: IDP_METRICS_BIND must not use the public port {port}."),
    ("port taken", "Error: IDP_METRICS_BIND 127.0.0.1:{port} cannot be served: "
                   "[Errno 98] Address already in use"),
])
def test_gunicorn_refuses_a_metrics_listener_it_cannot_keep_apart(tmp_path, case, message):
    port = free_port()
    public = port if case == "public port" else free_port()
    with socket.socket() as other_program:
        if case == "port taken":
            other_program.bind(("127.0.0.1", port))
            other_program.listen()
        finished = subprocess.run(
            [sys.executable, "-m", "gunicorn", "--config", "idp/infra/gunicorn_conf.py", "app:app"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "TMPDIR": str(tmp_path), "IDP_BIND": f"127.0.0.1:{public}",
                 "IDP_METRICS_BIND": f"127.0.0.1:{port}"})
    assert finished.returncode == 1
    assert message.format(port=port) in finished.stderr
    assert "Booting worker" not in finished.stderr
    assert not list(tmp_path.glob("idp-metrics-*")), "the metrics directory outlived its master"


def test_each_reading_of_the_database_clock_sets_the_offset_gauge(measured, monkeypatch):
    monkeypatch.setattr(core_clock, "_anchor", None)
    monkeypatch.setattr(dbclock, "_next_due", math.inf)
    reading = core_clock.Anchor(database=core_clock.host_now(), monotonic=core_clock.monotonic(),
                                host_offset=3.25)
    dbclock.settle(reading)
    assert value("idp_clock_offset_seconds") == 3.25
    dbclock.settle(dataclasses.replace(reading, host_offset=-0.5))
    assert value("idp_clock_offset_seconds") == -0.5
