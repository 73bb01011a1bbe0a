"""Test doubles for the kit: a fake clock and a transport served by an in-process IdP."""

import base64
from urllib.parse import urlsplit

import requests


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        """Start at ``start`` seconds."""
        self.now = start

    def __call__(self) -> float:
        """The current reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward."""
        self.now += seconds


class CannedResponse:
    """Just enough of ``requests.Response`` for the kit."""

    def __init__(self, status_code: int, body):
        """Hold a status and a decoded body (or an exception to raise from ``json``)."""
        self.status_code = status_code
        self._body = body

    def json(self):
        """The body, or the ValueError a non-JSON answer gives."""
        if isinstance(self._body, Exception):
            raise self._body
        return self._body

    def __enter__(self):
        """Context manager, as requests responses are."""
        return self

    def __exit__(self, *exc):
        """Nothing to close."""
        return False


class FlaskTransport:
    """A requests-like session whose ``post`` is answered by the IdP's Flask test client.

    ``failure`` makes the next calls fail: an exception instance is raised, an int is
    answered as that status, a CannedResponse is returned as it is.
    """

    def __init__(self, client):
        """Serve through ``client``; count calls."""
        self.client = client
        self.calls = 0
        self.failure = None

    def post(self, url, data=None, auth=None, headers=None, timeout=None):
        """Forward an introspection request to the in-process IdP."""
        self.calls += 1
        assert timeout, "the kit always sets a timeout"
        if isinstance(self.failure, Exception):
            raise self.failure
        if isinstance(self.failure, int):
            return CannedResponse(self.failure, {"error": "server_error"})
        if isinstance(self.failure, CannedResponse):
            return self.failure
        raw = f"{auth[0]}:{auth[1]}".encode()
        sent = {**(headers or {}), "Authorization": "Basic " + base64.b64encode(raw).decode()}
        response = self.client.post(urlsplit(url).path, data=data, headers=sent)
        return CannedResponse(response.status_code, response.get_json())

    def close(self):
        """Nothing to close."""


#: A transport error of the kind an unreachable IdP gives.
UNREACHABLE = requests.ConnectionError("connection refused")
