"""Seed and serve the peers: DOT under gunicorn with the IdP's worker settings, oidc-provider
as one node process that mints its own tokens before listening."""

import json
import os
import runpy
import secrets
import subprocess
import time
from pathlib import Path

from bench.peers.install import DOT_GUNICORN
from bench.peers.install import DOT_PYTHON
from bench.peers.install import DOT_SOURCE
from bench.peers.install import OIDC_SERVER
from bench.servers import Gunicorn
from bench.servers import Process
from bench.settings import GUNICORN_CONF
from bench.settings import base_env

#: Seconds oidc-provider may take to mint its tokens before it listens (a full run's pool is
#: about 200,000 refresh tokens, each with its grant).
MINT_TIMEOUT = 900


def gunicorn_settings(profile) -> dict:
    """What idp/infra/gunicorn_conf.py gives a server of this run, with the run's overrides.

    The conf file itself cannot be loaded by the peers' gunicorn (its hooks and logger import
    the IdP), so its values are read here and passed as command-line flags.
    """
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("IDP_")]:
            del os.environ[name]
        if profile.server_threads:
            os.environ["IDP_THREADS"] = str(profile.server_threads)
        if profile.server_workers:
            os.environ["IDP_WORKERS"] = str(profile.server_workers)
        conf = runpy.run_path(str(GUNICORN_CONF))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    worker_class = profile.worker_class or conf["worker_class"]
    if worker_class == "sync" and conf["threads"] > 1:
        worker_class = "gthread"
    return {"workers": conf["workers"], "threads": conf["threads"], "worker-class": worker_class,
            "timeout": conf["timeout"], "graceful-timeout": conf["graceful_timeout"],
            "keep-alive": conf["keepalive"]}


def dot_env(database: Path) -> dict:
    """The Django project's settings: a fresh secret key and the SQLite file."""
    env = base_env()
    env.update({"DOT_SECRET_KEY": secrets.token_urlsafe(48), "DOT_DATABASE": str(database),
                "DJANGO_SETTINGS_MODULE": "benchsite.settings", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def seed_dot(database: Path, size: int, sample: int, pool: int, values: Path) -> dict:
    """Migrate and seed a fresh SQLite file through DOT's models; the raw values it wrote."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    argv = [str(DOT_PYTHON), "seed.py", str(size), str(sample), str(pool), str(values)]
    done = subprocess.run(argv, cwd=DOT_SOURCE, env=dot_env(database), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"seeding django-oauth-toolkit failed:\n{done.stderr[-3000:]}")
    return json.loads(values.read_text())


class DotServer(Gunicorn):
    """The Django project under the peers' gunicorn, with the IdP's worker settings as flags.

    The access log is written to /dev/null, as the IdP's (formatted, then discarded).
    """

    def __init__(self, name: str, port: int, database: Path, settings: dict):
        flags = [f"--{k}={v}" for k, v in settings.items()]
        argv = [str(DOT_GUNICORN), *flags, "--no-control-socket", "--access-logfile",
                "/dev/null", "--bind", f"127.0.0.1:{port}", "--chdir", str(DOT_SOURCE),
                "benchsite.wsgi:application"]
        Process.__init__(self, name, argv, dot_env(database))
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = "/ready"


class OidcServer(Process):
    """One node process serving oidc-provider; it writes its minted tokens to ``values``."""

    def __init__(self, name: str, port: int, size: int, sample: int, pool: int, values: Path):
        self.client_secret = secrets.token_urlsafe(32)
        self.rs_secret = secrets.token_urlsafe(32)
        env = base_env()
        env.update({
            "NODE_ENV": "production", "OIDC_PORT": str(port), "OIDC_SIZE": str(size),
            "OIDC_SAMPLE": str(sample), "OIDC_POOL": str(pool), "OIDC_VALUES": str(values),
            "OIDC_CLIENT_SECRET": self.client_secret, "OIDC_RS_SECRET": self.rs_secret,
            "OIDC_COOKIE_KEY": secrets.token_urlsafe(32),
        })
        values.unlink(missing_ok=True)
        super().__init__(name, ["node", str(OIDC_SERVER)], env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = "/.well-known/openid-configuration"
        self.values_path = values

    def wait_until(self, probe, what: str) -> None:
        """Let the process mint its pool (it writes the values file last), then probe as usual."""
        deadline = time.monotonic() + MINT_TIMEOUT
        while not self.values_path.exists() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            time.sleep(0.2)
        super().wait_until(probe, what)

    def values(self) -> dict:
        """The tokens the process minted before it started listening."""
        return json.loads(self.values_path.read_text())

    def worker_memory(self) -> list[dict]:
        """Resident set (now and peak) of the one node process, in MiB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return [{"pid": self.proc.pid, "rss_mib": fields["VmRSS"],
                 "peak_mib": fields["VmHWM"]}]
