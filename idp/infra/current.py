"""The request being served, whether Flask dispatches it or the lean path answers it.

The lean path (idp/web/lean.py) answers ``GET /api/v1/me`` and ``POST /oauth/introspect`` inside
an app context but without Flask's request context, so code shared by both paths (the request
id of log lines, the limit a 429 is counted under, the shape of an error) asks this module,
not ``flask.request``, what it needs of the request.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import has_request_context
from flask import request

#: The WSGI environ of a request answered outside Flask's dispatch, while it is answered.
_outside: ContextVar[dict | None] = ContextVar("idp_outside_environ", default=None)


def environ() -> dict | None:
    """The WSGI environ of the request being served; None outside any request."""
    if has_request_context():
        return request.environ
    return _outside.get()


def path() -> str:
    """The path of the request being served."""
    if has_request_context():
        return request.path
    served = _outside.get()
    return served["PATH_INFO"] if served is not None else ""


@contextmanager
def serving(environ: dict) -> Iterator[None]:
    """Make ``environ`` the request being served for the block (the lean path)."""
    token = _outside.set(environ)
    try:
        yield
    finally:
        _outside.reset(token)
