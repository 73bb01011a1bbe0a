"""granian as the benchmark's server, for comparing it with gunicorn (``--server granian``).

granian is a Rust HTTP server with a WSGI interface. It is not a dependency of the IdP: it is
installed, pinned, into its own virtualenv under bench/out (which git ignores), next to exactly
the locked dependencies of the IdP and the kit, so the app under test is the same code on the
same libraries as under gunicorn. Each server gets the settings idp/infra/gunicorn_conf.py would
give it from the same environment: the bind address (``IDP_BIND``), worker processes
(``IDP_WORKERS``, default 2), threads running Python per worker (``IDP_THREADS``, default 1:
one request in the app at a time, as gunicorn's sync worker) and the access log
(``IDP_ACCESS_LOG``, formatted per request and written there).

What gunicorn_conf.py does besides and how it carries over: the configuration check of its
``on_starting`` hook also runs in ``create_app`` in every worker; the metrics hooks
(``when_ready``, ``child_exit``) serve ``IDP_METRICS_BIND`` from gunicorn's master, which has
no counterpart here, so a run under granian refuses that setting (the benchmark never sets it).
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

from bench.servers import Gunicorn
from bench.servers import Process
from bench.settings import OUT
from bench.settings import ROOT

#: The exact release measured (docs/PERFORMANCE.md, "Server: gunicorn or granian").
VERSION = "2.8.7"
VENV = OUT / "granian-venv"
BIN = VENV / "bin"
#: The production access line's atoms that granian offers (it has no response headers, so
#: no request id); still formatted per request like gunicorn's, then written to the log path.
ACCESS_FORMAT = '%(addr)s "%(method)s %(path)s" %(status)d %(dt_ms).3fms'


def _stamp() -> Path:
    """A marker naming what the virtualenv holds: the lock, the kit and granian's version."""
    digest = hashlib.sha256()
    for path in (ROOT / "requirements.lock", ROOT / "kit" / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(VERSION.encode())
    return VENV / f".installed-{digest.hexdigest()[:16]}"


def ensure_installed() -> None:
    """Make the virtualenv once: the IdP's locked dependencies, the kit, granian pinned."""
    stamp = _stamp()
    if stamp.exists():
        return
    if not (BIN / "python").exists():
        subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # granian's only dependency (click) is in the lock, so nothing unlocked comes in.
    for args in (["--require-hashes", "--no-deps", "-r", str(ROOT / "requirements.lock")],
                 ["--no-deps", f"granian=={VERSION}"],
                 ["--no-deps", "-e", str(ROOT / "kit")]):
        subprocess.run(pip + args, cwd=ROOT, check=True)
    subprocess.run([str(BIN / "python"), "-m", "pip", "check"], check=True)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def version() -> str:
    """The installed granian's own version line."""
    done = subprocess.run([str(BIN / "granian"), "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def _logging(access_log: str) -> Path:
    """A logging configuration: granian's lines to the server log, access lines to the path."""
    if access_log == "-":
        access = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    else:
        access = {"class": "logging.FileHandler", "filename": access_log}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"generic": {"format": "[%(levelname)s] %(message)s"},
                       "access": {"format": "%(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                 "formatter": "generic"},
                     "access": {**access, "formatter": "access"}},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
                    "granian.access": {"handlers": ["access"], "level": "INFO",
                                       "propagate": False}},
    }
    tag = hashlib.sha256(access_log.encode()).hexdigest()[:8]
    path = OUT / f"granian-logging-{tag}.json"
    path.write_text(json.dumps(config, indent=1))
    return path


class Granian(Gunicorn):
    """A WSGI app served by granian with the settings gunicorn_conf.py takes from ``env``."""

    def __init__(self, name: str, target: str, env: dict, port: int, ready_path: str,
                 worker_class: str | None = None):
        if worker_class:
            raise ValueError("--worker-class is a gunicorn setting; granian has none")
        if env.get("IDP_METRICS_BIND"):
            raise ValueError("IDP_METRICS_BIND is served by gunicorn's master only")
        ensure_installed()
        host, _, bind_port = env.get("IDP_BIND", "127.0.0.1:5000").rpartition(":")
        access_log = env.get("IDP_ACCESS_LOG", "-")
        argv = [str(BIN / "granian"), "--interface", "wsgi", "--host", host, "--port", bind_port,
                "--workers", env.get("IDP_WORKERS", "2"),
                "--blocking-threads", env.get("IDP_THREADS", "1"), "--runtime-threads", "1",
                "--no-ws", "--log-level", env.get("IDP_LOG_LEVEL", "info").lower(),
                "--log-config", str(_logging(access_log)),
                "--access-log", "--access-log-fmt", ACCESS_FORMAT, target]
        env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        # Gunicorn's start, readiness wait and worker memory apply as they are; only the
        # command differs.
        Process.__init__(self, name, argv, env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path


def settings_line(profile) -> str:
    """The servers' settings, as the generated results section states them."""
    workers = profile.server_workers or 2
    threads = profile.server_threads or 1
    keep_alive = os.environ.get("GRANIAN_HTTP1_KEEP_ALIVE", "true").lower() in ("1", "true")
    return (f"granian {VERSION} WSGI, {workers} processes x {threads} blocking thread(s), "
            f"1 runtime thread, HTTP/1 keep-alive {'on' if keep_alive else 'off'}")
