"""gunicorn's logger with a lean access line: only the fields our format prints.

gunicorn's stock logger builds, for every request, a dict of every request header, response
header and WSGI environ entry plus a formatted timestamp, whatever the format uses; that was
4-8 % of a request's CPU (docs/PERFORMANCE.md). This one computes only the atoms of
``access_log_format`` in idp/infra/gunicorn_conf.py. Request headers and the query string are not
even available to a format, so a careless format change cannot log a credential.

With ``IDP_LOG_FORMAT=json`` the access and error lines are JSON objects with the keys of the
app's own lines (idp/infra/logs.py), so one stream holds one format. gunicorn's error lines quote
the request URI when a request fails; their query strings are cut in either format.
"""

import json
import logging
import os
import re
from datetime import UTC
from datetime import datetime

from gunicorn.glogging import Logger

from idp.infra.logs import JsonFormatter
from idp.infra.logs import redact

#: The one response header the access line carries: it ties the line to the app's own logs.
REQUEST_ID = "x-request-id"
#: A query string: from a "?" to the next space or quote (an authorization code travels there).
QUERY = re.compile(r"\?[^\s'\"]+")


def without_query(text: str) -> str:
    """``text`` with every query string cut, credentials redacted."""
    return redact(QUERY.sub("", text))


def _stamp(record: logging.LogRecord) -> str:
    """The record's time as the app's JSON lines write it."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextErrorFormatter(logging.Formatter):
    """gunicorn's error line, without query strings."""

    def format(self, record: logging.LogRecord) -> str:
        """Format as gunicorn does, then cut queries and redact (traceback included)."""
        return without_query(super().format(record))


class JsonErrorFormatter(JsonFormatter):
    """gunicorn's error line as the app's JSON line, without query strings."""

    def format(self, record: logging.LogRecord) -> str:
        """The app's JSON entry of a copy whose message has its queries cut."""
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg, copy.args = without_query(record.getMessage()), None
        return super().format(copy)

    def formatException(self, ei) -> str:
        """The traceback, its queries cut."""
        return without_query(super().formatException(ei))


class JsonAccessFormatter(logging.Formatter):
    """The access line as one JSON object, from the atoms LeanLogger made (path only)."""

    def format(self, record: logging.LogRecord) -> str:
        """Name each atom; the line's text form becomes the message."""
        if not isinstance(record.args, dict):  # not gunicorn's access call: a plain entry
            return JsonFormatter().format(record)
        # gunicorn logs the atoms as the one mapping argument (SafeAtoms); dict() reads them
        # without its "-" for a missing atom, which every atom below has.
        atoms = dict(record.args)
        method, path, status = atoms["m"], redact(atoms["U"] or ""), atoms["s"]
        sent = atoms["b"]
        return json.dumps({
            "time": _stamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": atoms["{" + REQUEST_ID + "}o"],
            "message": f"{method} {path} {status}",
            "remote_addr": atoms["h"],
            "method": method,
            "path": path,
            "status": int(status) if str(status).isdigit() else status,
            "bytes": int(sent) if sent.isdigit() else None,
            "duration_seconds": float(atoms["L"]),
        }, ensure_ascii=False)


class LeanLogger(Logger):
    """Access atoms: address, method, path, status, bytes, duration and the request id."""

    def setup(self, cfg):
        """gunicorn's handlers with our formatters: JSON when ``IDP_LOG_FORMAT=json``."""
        super().setup(cfg)
        as_json = os.environ.get("IDP_LOG_FORMAT", "text").strip().lower() == "json"
        errors = JsonErrorFormatter() if as_json else TextErrorFormatter(self.error_fmt,
                                                                         self.datefmt)
        for handler in self.error_log.handlers:
            handler.setFormatter(errors)
        if as_json:
            for handler in self.access_log.handlers:
                handler.setFormatter(JsonAccessFormatter())

    def atoms(self, resp, req, environ, request_time):
        """The atoms of our access format and nothing else (others print as ``-``)."""
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        headers = resp.headers
        if hasattr(headers, "items"):
            headers = headers.items()
        request_id = "-"
        for name, value in headers:
            if name.lower() == REQUEST_ID:
                request_id = value
                break
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "b": str(sent) if sent is not None else "-",
            "L": f"{request_time.seconds}.{request_time.microseconds:06d}",
            "{" + REQUEST_ID + "}o": request_id,
        }
