"""Serving with idp/infra/gunicorn_conf.py: settings from the environment, a clean refusal to start,
and an access log that never holds a query string or an Authorization header."""

import os
import re
import runpy
import secrets
import subprocess
import sys
from types import SimpleNamespace

import pytest
import requests
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from tests.helpers import ROOT
from tests.prod_support import ConfiguredServer

CONF = ROOT / "idp" / "infra" / "gunicorn_conf.py"


def test_worker_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("IDP_WORKERS", "5")
    monkeypatch.setenv("IDP_THREADS", "8")
    monkeypatch.setenv("IDP_GRACEFUL_TIMEOUT", "42")
    monkeypatch.setenv("IDP_BIND", "0.0.0.0:8000")
    settings = runpy.run_path(str(CONF))
    assert (settings["workers"], settings["threads"], settings["graceful_timeout"],
            settings["bind"]) == (5, 8, 42, "0.0.0.0:8000")
    assert settings["worker_class"] == "gthread", "threads need the threaded worker"
    assert "%(U)s" in settings["access_log_format"]
    assert not re.search(r"%\((q|r|\{[^}]*\}i)\)s", settings["access_log_format"])


def test_one_thread_per_process_by_default_uses_the_sync_worker(monkeypatch):
    monkeypatch.delenv("IDP_THREADS", raising=False)
    settings = runpy.run_path(str(CONF))
    assert (settings["threads"], settings["worker_class"]) == (1, "sync")


@pytest.mark.live
def test_access_log_keeps_no_query_string_and_no_authorization(database_url, tmp_path):
    access_log = tmp_path / "access.log"
    server = ConfiguredServer(database_url, tmp_path, workers=1, threads=2,
                              extra_env={"IDP_ACCESS_LOG": str(access_log)})
    secret_code = "c0de-" + "S" * 40
    bearer = "fe_at_" + "T" * 43
    server.start()
    try:
        first = requests.get(server.url + "/healthz", params={"code": secret_code}, timeout=10,
                             headers={"Authorization": f"Bearer {bearer}",
                                      "X-Request-ID": "probe-1"})
        second = requests.post(server.url + "/oauth/token", params={"code": secret_code},
                               data={"grant_type": "authorization_code", "code": secret_code},
                               auth=("cli_unknown", "fe_cs_" + "P" * 43), timeout=10)
    finally:
        server.stop()
    assert first.status_code == 200 and second.status_code == 401
    lines = access_log.read_text().splitlines()[-2:]  # after the start-up health checks
    assert '"GET /healthz" 200' in lines[0] and lines[0].endswith("rid=probe-1")
    assert '"POST /oauth/token" 401' in lines[1]
    everything = access_log.read_text() + server.log()
    for secret in (secret_code, bearer, "P" * 43, "Authorization", "Basic", "Bearer", "?"):
        assert secret not in everything


@pytest.mark.parametrize("env, message", [
    ({"IDP_ISSUER": "http://idp.flowestate.example"}, "Error: IDP_ISSUER must be an https URL"),
    ({"IDP_ISSUER": "https://idp.flowestate.example", "SECRET_KEY": "changeme"},
     "Error: SECRET_KEY must be a random value"),
    ({"IDP_ISSUER": "https://idp.flowestate.example", "SECRET_KEY": secrets.token_urlsafe(48),
      "DATABASE_URL": "sqlite:////nonexistent/idp.sqlite3", "IDP_ALLOW_SQLITE": "1",
      "IDP_WORKER_TIMEOUT": "12"},
     "Error: IDP_WORKER_TIMEOUT (12) must be at least IDP_SSF_LONG_POLL_SECONDS (10) + 5"),
])
def test_gunicorn_refuses_unsafe_settings_with_one_message(tmp_path, env, message):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("IDP_", "SECRET_KEY", "DATABASE_URL", "RATELIMIT_"))}
    finished = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", str(CONF), "--bind", "127.0.0.1:0",
         "app:app"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 1
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout
    assert "Booting worker" not in finished.stderr


@pytest.mark.parametrize("worker_class, timeout, long_poll, refused", [
    (SyncWorker, 30, 20, False),
    (SyncWorker, 25, 20, False),
    (SyncWorker, 24, 20, True),
    (SyncWorker, 12, 10, True),
    (SyncWorker, 0, 20, False),  # no timeout at all
    (ThreadWorker, 5, 20, False),  # gthread's timeout is a heartbeat, not a request's bound
])
def test_a_sync_worker_must_outlive_a_long_poll(worker_class, timeout, long_poll, refused):
    from idp.infra.config import ConfigError

    check = runpy.run_path(str(CONF))["_refuse_timeout_under_long_poll"]
    cfg = SimpleNamespace(worker_class=worker_class, timeout=timeout)
    if refused:
        with pytest.raises(ConfigError, match="IDP_WORKER_TIMEOUT"):
            check(cfg, long_poll)
    else:
        check(cfg, long_poll)
