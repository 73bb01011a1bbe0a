"""Log lines with a request id, as text or JSON, and never with a secret in them.

Every request gets an id: a sane incoming ``X-Request-ID`` (a load balancer's) is kept, anything
else is replaced by a fresh one; it is echoed in the response header and stamped on every log
record written while the request runs. The one handler this module installs on the root logger
redacts whatever looks like a credential from the finished line (message and traceback alike),
as a second line of defence behind code that does not log secrets in the first place.
"""

import json
import logging
import re
import sys
import uuid
from datetime import UTC
from datetime import datetime

from idp.infra import current

#: Header carrying the request id in and out.
REQUEST_ID_HEADER = "X-Request-ID"
#: What an incoming request id may look like: short, printable, nothing to inject into a log.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: WSGI environ key under which the request's id is kept once chosen.
ENVIRON_KEY = "idp.request_id"
#: Replacement for anything redacted.
REDACTED = "[redacted]"
#: Names whose values are secrets wherever they appear as ``name=value`` or ``"name": "value"``.
SECRET_NAMES = (
    "access_token", "refresh_token", "client_secret", "code_verifier", "password", "code",
    "token", "secret", "api_key", "csrf_token",
)
#: Patterns of secrets, each with its replacement (applied in order).
REDACTIONS = (
    # Our own credential formats, wherever they appear (SPEC §2).
    (re.compile(r"\bfe_(k|at|rt|cs|rs)_[A-Za-z0-9_-]+"), r"fe_\1_" + REDACTED),
    # Authorization headers: Basic carries the client secret, Bearer a token.
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer)\s+[^\s\"',;]+"),
     r"\1\2 " + REDACTED),
    # Form and query strings: code=...&client_secret=...
    (re.compile(r"(?i)\b(" + "|".join(SECRET_NAMES) + r")=[^&\s\"',;]+"), r"\1=" + REDACTED),
    # JSON or repr of a dict: "refresh_token": "..." / 'code': '...'
    (re.compile(r"(?i)([\"'](?:" + "|".join(SECRET_NAMES) + r")[\"']\s*:\s*)[\"'][^\"']*[\"']"),
     r'\1"' + REDACTED + '"'),
)
#: Attribute marking the handler this module installed, so a second app does not add another.
HANDLER_MARK = "_idp_handler"


def redact(text: str) -> str:
    """Replace everything that looks like a credential in ``text``."""
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def request_id_of(environ: dict) -> str:
    """The id of the request of ``environ``: the caller's if it is sane, else a new one (made
    once per request, kept in the environ, so Flask's path and the lean path agree)."""
    chosen = environ.get(ENVIRON_KEY)
    if chosen is None:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        chosen = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex
        environ[ENVIRON_KEY] = chosen
    return chosen


def request_id() -> str:
    """The id of the request being served."""
    return request_id_of(current.environ())


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id``; never drops a record."""
        environ = current.environ()
        record.request_id = request_id_of(environ) if environ is not None else "-"
        return True


class TextFormatter(logging.Formatter):
    """One readable line per record, redacted."""

    def __init__(self):
        """Time, level, logger, request id, message."""
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format, then redact the whole line including any traceback."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log collectors; redacted like the text form."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record's essentials."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        # Structured fields passed as ``extra={"fields": {...}}`` (the audit trail's), redacted
        # like the message in case a caller ever slips a secret in.
        extra = getattr(record, "fields", None)
        if extra:
            entry.update(json.loads(redact(json.dumps(extra, ensure_ascii=False))))
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Write to whatever ``sys.stderr`` is now (test runners swap it between tests)."""

    def __init__(self):
        """No stream is bound at creation."""
        logging.Handler.__init__(self)

    @property
    def stream(self):
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        """Ignore attempts to bind a stream."""


def make_handler(fmt: str, stream=None) -> logging.Handler:
    """A handler with the request-id filter and the chosen redacting formatter."""
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure_logging(fmt: str, level: str) -> None:
    """Install (once per process) the root handler; the ``idp`` loggers log at ``level``."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, HANDLER_MARK, False)), None)
    if handler is None:
        handler = make_handler(fmt)
        setattr(handler, HANDLER_MARK, True)
        root.addHandler(handler)
    else:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.getLogger("idp").setLevel(level)


def _assign_request_id() -> None:
    """Settle the id before the view runs (returns None, so the request goes on)."""
    request_id()


def _echo_request_id(response):
    """Return the request id to the caller, so support can find the request's log lines."""
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def init_app(app) -> None:
    """Configure logging from the app's settings and give every request an id."""
    configure_logging(app.config["IDP_LOG_FORMAT"], app.config["IDP_LOG_LEVEL"])
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
