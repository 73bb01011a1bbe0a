"""One log format: gunicorn's access and error lines as the app's JSON, never with a query."""

import datetime
import json
import logging
import socket
import sys

import pytest
import requests
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from idp.infra.access_log import JsonAccessFormatter
from idp.infra.access_log import JsonErrorFormatter
from idp.infra.access_log import LeanLogger
from idp.infra.access_log import TextErrorFormatter
from idp.infra.access_log import without_query
from tests.helpers import LiveServer

#: What travels in a query string in these tests; it must appear in no log line.
SECRET = "c0de-" + "Q" * 40


@pytest.mark.parametrize("text, expected", [
    ("Error handling request GET /oauth/authorize?code=abc&state=1",
     "Error handling request GET /oauth/authorize"),
    ("Invalid HTTP request line: 'GET /cb?code=abc HTTP/1.1 junk'",
     "Invalid HTTP request line: 'GET /cb HTTP/1.1 junk'"),
    ("https://idp.example/oauth/authorize?x=1 failed",
     "https://idp.example/oauth/authorize failed"),
    ("Booting worker with pid: 42", "Booting worker with pid: 42"),
    ("is this a question? yes", "is this a question? yes"),
    ("bearer fe_at_abcdef", "bearer fe_at_[redacted]"),
])
def test_queries_are_cut_and_credentials_redacted(text, expected):
    assert without_query(text) == expected


def record(name: str, msg: str, args=None, exc_info=None) -> logging.LogRecord:
    """A log record as gunicorn's loggers make it."""
    return logging.LogRecord(name, logging.ERROR if exc_info else logging.INFO, __file__, 1,
                             msg, args, exc_info)


def test_error_lines_in_json_keep_the_app_keys_and_lose_the_query():
    try:
        raise ValueError("bad /cb?code=" + SECRET)
    except ValueError:
        failed = sys.exc_info()
    line = JsonErrorFormatter().format(record(
        "gunicorn.error", "Error handling request %s %s", ("GET", "/cb?code=" + SECRET), failed))
    entry = json.loads(line)
    assert entry["message"] == "Error handling request GET /cb"
    assert (entry["logger"], entry["level"], entry["request_id"]) == (
        "gunicorn.error", "ERROR", "-")
    assert "ValueError: bad /cb" in entry["exception"] and SECRET not in line


def test_error_lines_in_text_lose_the_query_too():
    formatter = TextErrorFormatter(LeanLogger.error_fmt, LeanLogger.datefmt)
    line = formatter.format(record("gunicorn.error", "Error handling request %s", ("/cb?code=x",)))
    assert line.endswith("[INFO] Error handling request /cb")


def test_the_access_line_in_json_names_each_atom():
    atoms = LeanLogger(Config()).atoms(
        type("Response", (), {"status": "201 Created", "sent": 17,
                              "headers": [("X-Request-ID", "rid-7")]})(),
        None, {"REMOTE_ADDR": "10.0.0.9", "REQUEST_METHOD": "POST", "PATH_INFO": "/oauth/token",
               "QUERY_STRING": "code=" + SECRET},
        datetime.timedelta(seconds=1, microseconds=2500))
    entry = json.loads(JsonAccessFormatter().format(
        record("gunicorn.access", "%(m)s", SafeAtoms(atoms))))
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "INFO", "logger": "gunicorn.access", "request_id": "rid-7",
        "message": "POST /oauth/token 201", "remote_addr": "10.0.0.9", "method": "POST",
        "path": "/oauth/token", "status": 201, "bytes": 17, "duration_seconds": 1.0025,
    }


def bad_request_line(port: int) -> None:
    """Send a request line gunicorn refuses, with a query in it (it logs the line it saw)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET /oauth/authorize?code={SECRET}\r\n\r\n".encode())
        conn.recv(1024)


@pytest.mark.live
def test_every_line_gunicorn_writes_is_json_and_none_holds_a_query(database_url, tmp_path):
    server = LiveServer(database_url, tmp_path, workers=2, threads=1,
                        extra_env={"IDP_LOG_FORMAT": "json", "IDP_LOG_LEVEL": "DEBUG"})
    server.start()
    try:
        authorize = requests.get(server.url + "/oauth/authorize", timeout=10,
                                 params={"code": SECRET, "state": SECRET},
                                 headers={"X-Request-ID": "probe-authorize"})
        token = requests.post(server.url + "/oauth/token", params={"code": SECRET}, timeout=10,
                              data={"grant_type": "authorization_code", "code": SECRET},
                              headers={"X-Request-ID": "probe-token"})
        bad_request_line(server.port)
    finally:
        server.stop()
    assert authorize.status_code == 400 and token.status_code == 401
    text = server.log()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert SECRET not in text and "?" not in "".join(e.get("path", "") for e in entries)
    by_id = {e["request_id"]: e for e in entries if e["logger"] == "gunicorn.access"}
    assert by_id["probe-authorize"]["path"] == "/oauth/authorize"
    assert (by_id["probe-token"]["method"], by_id["probe-token"]["status"]) == ("POST", 401)
    errors = [e["message"] for e in entries if e["logger"] == "gunicorn.error"]
    assert any(m.startswith("Booting worker") for m in errors)
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET /oauth/authorize'" \
        in errors
