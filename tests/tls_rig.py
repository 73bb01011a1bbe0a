"""The IdP as deployed: nginx from Debian terminating TLS with the shipped deploy/nginx.conf,
in front of gunicorn started with the shipped idp/infra/gunicorn_conf.py, in production mode:
the sync pool for everything, and the events pool for RFC 8936 long polls."""

import datetime
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

from tests.helpers import ROOT
from tests.helpers import LiveServer
from tests.helpers import free_port

NGINX = "/usr/sbin/nginx"
#: The proxy config the project ships; the rig fills in only its placeholders.
SHIPPED_CONF = ROOT / "deploy" / "nginx.conf"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
#: The name clients use; the certificate also covers 127.0.0.1.
HOST = "localhost"


def _name(common_name: str) -> x509.Name:
    """A subject or issuer name with just a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 signed by it.

    Returns (ca.pem, server chain, server key). A CA rather than one self-signed leaf, so
    clients verify the way they do in production: a chain up to an anchor they trust.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(_name("FlowEstate test CA"))
        .issuer_name(_name("FlowEstate test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, chain_path, key_path = (directory / n for n in ("ca.pem", "server.pem", "server.key"))
    ca_path.write_bytes(ca.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, chain_path, key_path


def render_shipped_conf(values: dict) -> str:
    """deploy/nginx.conf with its placeholders filled in; every placeholder must be known."""
    text = SHIPPED_CONF.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    left = set(PLACEHOLDER.findall(code))
    assert not left, f"deploy/nginx.conf has placeholders the rig does not fill: {left}"
    return text


#: The rig's own nginx.conf: only process plumbing (pid, temp and log paths under the
#: test's directory) around the shipped file, which Debian would include from conf.d/.
MAIN_CONF = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log notice;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {site};
}}
"""


#: What docs/OPERATIONS.md starts the events pool with, on top of the IdP pool's settings.
EVENTS_POOL = {"IDP_WORKERS": "1", "IDP_THREADS": "32"}


class ShippedGunicorn(LiveServer):
    """gunicorn with idp/infra/gunicorn_conf.py and nothing else: its workers, its worker class."""

    def launch(self) -> None:
        """Start it without waiting, so that both pools boot side by side."""
        with open(self.log_path, "ab") as log:
            self._spawn(log)

    def _spawn(self, log) -> None:
        """Start it the way OPERATIONS.md does; only IDP_BIND says where."""
        self.env["IDP_BIND"] = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "idp/infra/gunicorn_conf.py", "app:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class TlsRig:
    """nginx on a free port terminating TLS for a production-mode IdP behind it: ``app``, the
    sync pool, and ``events``, the gthread pool nginx sends long polls to (same database,
    same settings)."""

    def __init__(self, database_url: str, tmp_path: Path, extra_env: dict | None = None):
        self.dir = tmp_path / "rig"
        self.prefix = self.dir / "nginx"
        for sub in ("logs", "temp", "certs"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        self.ca, self.chain, self.key = make_certificates(self.prefix / "certs")
        env = {
            "IDP_ISSUER": self.url,
            # Production mode: a strong random key (idp.infra.config_checks refuses weak ones).
            "SECRET_KEY": secrets.token_urlsafe(48),
            "IDP_PROXY_HOPS": "1",
            "IDP_ALLOW_SQLITE": "1",
            "IDP_LOG_LEVEL": "INFO",
            # Counters of this rig only, even in a Redis other tests share.
            "RATELIMIT_KEY_PREFIX": "rig" + secrets.token_hex(4),
        }
        redis_url = os.environ.get("IDP_TEST_REDIS_URL")
        if redis_url:
            env["RATELIMIT_STORAGE_URI"] = redis_url
        env.update(extra_env or {})
        self.app = ShippedGunicorn(database_url, self.dir, extra_env=env)
        self.events = ShippedGunicorn(database_url, self.dir, extra_env={**env, **EVENTS_POOL})
        self.pools = (self.app, self.events)
        self.nginx = None

    def _write_conf(self) -> Path:
        """Render the shipped file and the plumbing around it; return the main config."""
        site = self.prefix / "flowestate-idp.conf"
        site.write_text(render_shipped_conf({
            "SERVER_NAME": HOST, "LISTEN": f"127.0.0.1:{self.port}",
            "CERTIFICATE": self.chain, "CERTIFICATE_KEY": self.key,
            "UPSTREAM": f"127.0.0.1:{self.app.port}",
            "EVENTS_UPSTREAM": f"127.0.0.1:{self.events.port}", "LOG_DIR": self.prefix / "logs",
        }))
        main = self.prefix / "nginx.conf"
        # As root, workers would switch to "nobody", who cannot enter pytest's private
        # tmp directories to write temp files; as anyone else the directive is ignored.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(MAIN_CONF.format(user=user, prefix=self.prefix, site=site))
        return main

    def start(self, timeout: float = 30) -> None:
        """Start both gunicorn pools, then nginx, and wait until /healthz answers over https."""
        try:
            for pool in self.pools:
                pool.launch()
            for pool in self.pools:
                pool._wait_healthy(timeout)
            main = self._write_conf()
            with open(self.prefix / "logs" / "stderr.log", "ab") as out:
                self.nginx = subprocess.Popen(
                    [NGINX, "-c", str(main), "-p", f"{self.prefix}/",
                     "-e", str(self.prefix / "logs" / "error.log"), "-g", "daemon off;"],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            self._wait_https(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_https(self, timeout: float) -> None:
        """Poll https://localhost:PORT/healthz with real certificate verification."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", verify=self.ca, timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"the rig did not answer over https: {self.log()[-3000:]}")

    def stop(self) -> None:
        """Stop nginx (fast shutdown), then both pools."""
        if self.nginx and self.nginx.poll() is None:
            os.killpg(self.nginx.pid, signal.SIGTERM)
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait()
        for pool in self.pools:
            pool.stop()

    def flask(self, *args: str, **popen) -> subprocess.Popen:
        """Start ``flask --app app ARGS`` as an operator would on an IdP host: the IdP pool's
        settings and database, trusting the rig's CA for the https it reaches. ``popen``
        (stdout, stderr, text) goes to subprocess.Popen."""
        env = {**self.app.env, "REQUESTS_CA_BUNDLE": str(self.ca)}
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *args],
                                cwd=ROOT, env=env, start_new_session=True, **popen)

    def log(self) -> str:
        """Everything gunicorn and nginx wrote: both pools' logs, access logs, error logs."""
        parts = [pool.log() for pool in self.pools if pool.log_path.exists()]
        parts += [p.read_text(errors="replace") for p in sorted((self.prefix / "logs").iterdir())]
        return "\n".join(parts)
