"""What the shipped deploy/nginx.conf does in front of the IdP, checked through the TLS rig."""

import socket
import ssl
import time

import pytest
import requests
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import AuditEvent
from tests.helpers import csrf_token
from tests.tls_rig import SHIPPED_CONF
from tests.tls_rig import render_shipped_conf

pytestmark = [pytest.mark.live, pytest.mark.tls]


def test_the_rig_serves_production_https(tls_rig):
    health = requests.get(tls_rig.url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.headers["Strict-Transport-Security"] == "max-age=31536000"
    metadata = requests.get(tls_rig.url + "/.well-known/oauth-authorization-server",
                            timeout=10).json()
    assert metadata["issuer"] == tls_rig.url
    assert metadata["token_endpoint"] == tls_rig.url + "/oauth/token"
    page = requests.get(tls_rig.url + "/login", timeout=10)
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert page.headers["Referrer-Policy"] == "same-origin"


def test_an_untrusted_client_cannot_connect(tls_rig, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_rig.url + "/healthz", timeout=10)


def test_the_client_address_is_the_peer_not_what_it_claims(tls_rig, demo, app):
    with requests.Session() as http:
        page = http.get(tls_rig.url + "/login", timeout=10)
        failed = http.post(tls_rig.url + "/login", timeout=10, data={
            "csrf_token": csrf_token(page.text), "email": demo["user"]["email"],
            "password": "not-the-password",
        }, headers={"X-Forwarded-For": "198.51.100.66", "Referer": tls_rig.url + "/login"})
    assert failed.status_code == 401, failed.text[:500]
    with app.app_context():
        ips = db.session.scalars(
            select(AuditEvent.ip).where(AuditEvent.event == "sign_in_failed")).all()
    assert ips == ["127.0.0.1"]


def test_one_request_id_in_nginx_and_the_idp(tls_rig):
    response = requests.get(tls_rig.url + "/healthz", params={"code": "c0de-secret"},
                            headers={"X-Request-ID": "forged-by-client"}, timeout=10)
    rid = response.headers["X-Request-ID"]
    assert rid != "forged-by-client" and len(rid) == 32
    log_file = tls_rig.prefix / "logs" / "flowestate-idp.access.log"
    # nginx writes its access line after the response has gone out: wait for it briefly.
    deadline = time.monotonic() + 5
    while f"rid={rid}" not in (access := log_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"GET /healthz" 200' in access and f"rid={rid}" in access
    assert "c0de-secret" not in tls_rig.log() and "?" not in access


def test_a_body_over_the_proxy_limit_never_reaches_a_worker(tls_rig):
    response = requests.post(tls_rig.url + "/oauth/token", data={"x": "y" * (1024 * 1024)},
                             timeout=10)
    assert response.status_code == 413
    assert "/oauth/token" not in tls_rig.app.log()


def test_other_host_names_are_refused(tls_rig):
    context = ssl.create_default_context(cafile=str(tls_rig.ca))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", tls_rig.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="attacker.example")
    with socket.create_connection(("127.0.0.1", tls_rig.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: attacker.example\r\n"
                        b"Connection: close\r\n\r\n")
            assert tls.recv(4096) == b""  # 444: closed without an answer


def test_every_placeholder_of_the_shipped_file_is_documented():
    from tests.helpers import ROOT

    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert "deploy/nginx.conf" in operations
    values = {name: "x" for name in ("SERVER_NAME", "LISTEN", "CERTIFICATE", "CERTIFICATE_KEY",
                                     "UPSTREAM", "EVENTS_UPSTREAM", "LOG_DIR")}
    render_shipped_conf(values)  # fails on a placeholder the rig does not know
    for name in values:
        assert f"@{name}@" in operations, name
    assert "IDP_PROXY_HOPS=1" in SHIPPED_CONF.read_text()
