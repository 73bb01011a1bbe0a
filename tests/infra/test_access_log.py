"""The lean gunicorn logger: the configured access line, built from only the atoms it prints."""

import datetime
import runpy

from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from idp.infra.access_log import LeanLogger
from tests.helpers import ROOT


class Response:
    """The parts of a gunicorn response the logger reads."""

    status = "200 OK"
    sent = 17
    headers = [("Content-Type", "application/json"), ("X-Request-ID", "rid-42")]


def line(environ, response=None) -> str:
    """The access line our settings produce for one request."""
    settings = runpy.run_path(str(ROOT / "idp" / "infra" / "gunicorn_conf.py"))
    config = Config()
    config.set("logger_class", settings["logger_class"])
    assert config.logger_class is LeanLogger
    atoms = LeanLogger(config).atoms(response or Response(), None, environ,
                                     datetime.timedelta(seconds=1, microseconds=2500))
    return settings["access_log_format"] % SafeAtoms(atoms)


def test_the_line_has_address_method_path_status_bytes_duration_and_request_id():
    environ = {"REMOTE_ADDR": "10.0.0.9", "REQUEST_METHOD": "POST", "PATH_INFO": "/oauth/token",
               "QUERY_STRING": "code=c0de-secret", "HTTP_AUTHORIZATION": "Bearer fe_at_secret",
               "RAW_URI": "/oauth/token?code=c0de-secret"}
    assert line(environ) == '10.0.0.9 "POST /oauth/token" 200 17 1.002500s rid=rid-42'


def test_a_response_without_request_id_or_body_prints_dashes():
    class Bare(Response):
        """No bytes sent, no request id."""

        sent = None
        headers = []

    environ = {"REMOTE_ADDR": "10.0.0.9", "REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}
    assert line(environ, Bare()) == '10.0.0.9 "GET /healthz" 200 - 1.002500s rid=-'


def test_request_headers_and_the_query_are_not_even_available():
    environ = {"REMOTE_ADDR": "1.2.3.4", "REQUEST_METHOD": "GET", "PATH_INFO": "/",
               "QUERY_STRING": "code=x", "HTTP_AUTHORIZATION": "Bearer y"}
    atoms = SafeAtoms(LeanLogger(Config()).atoms(Response(), None, environ,
                                                 datetime.timedelta(0)))
    assert atoms["q"] == "-" and atoms["r"] == "-" and atoms["{authorization}i"] == "-"
