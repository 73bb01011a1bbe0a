"""gunicorn's logger with a lean access line: only the fields our format prints.

gunicorn's stock logger builds, for every request, a dict of every request header, response
header and WSGI environ entry plus a formatted timestamp, whatever the format uses; that was
4-8 % of a request's CPU (docs/PERFORMANCE.md). This one computes only the atoms of
``access_log_format`` in idp/gunicorn_conf.py. Request headers and the query string are not
even available to a format, so a careless format change cannot log a credential.
"""

from gunicorn.glogging import Logger

#: The one response header the access line carries: it ties the line to the app's own logs.
REQUEST_ID = "x-request-id"


class LeanLogger(Logger):
    """Access atoms: address, method, path, status, bytes, duration and the request id."""

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
