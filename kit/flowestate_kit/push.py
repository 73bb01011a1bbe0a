"""The receiving end of a push stream (RFC 8935) as a WSGI application.

It checks what only the endpoint can (the ``Authorization`` value the stream was registered
with, in constant time; the method; ``Content-Type: application/secevent+jwt``; a bounded
body) and hands the SET to its :class:`~flowestate_kit.ssf.Receiver`, which verifies and
applies it exactly as it does a polled one.
"""

import json

from flowestate_kit.sets import KeysUnavailable
from flowestate_kit.sets import SetRejected

#: RFC 8935 §2: the media type of a pushed SET.
SET_MEDIA_TYPE = "application/secevent+jwt"
#: Far more than any SET of ours; a larger push body is refused unread.
MAX_SET_BYTES = 65536
#: What a push endpoint answers when it cannot check a SET now (its keys are out of reach).
RETRY_PUSH_AFTER = 5
#: Reason phrases of the statuses answered with a body.
REASONS = {400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}


class PushEndpoint:
    """RFC 8935 push delivery as a WSGI application; other paths go to ``app`` if given.

    202 when the SET was applied; 400 ``{"err", "description"}`` (§2.3) when it is refused;
    401 ``authentication_failed`` when the Authorization header is not the one registered;
    503 while the transmitter's keys cannot be fetched (the transmitter retries).
    """

    def __init__(self, receiver, app=None):
        """Serve ``receiver``'s push path."""
        if receiver.push_path is None:
            raise ValueError("the receiver is not a push stream")
        self.receiver = receiver
        self.app = app
        self.path = receiver.push_path

    def __call__(self, environ, start_response):
        """Take one pushed SET."""
        if self.app is not None and (environ.get("PATH_INFO") or "/") != self.path:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, "invalid_request", "Push a SET with POST.",
                           {"Allow": "POST"})
        if not self.receiver.push_authorized(environ.get("HTTP_AUTHORIZATION")):
            return _answer(start_response, 401, "authentication_failed",
                           "The Authorization header is not the one this stream registered.",
                           {"WWW-Authenticate": "Bearer"})
        media_type = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if media_type != SET_MEDIA_TYPE:
            return _answer(start_response, 400, "invalid_request",
                           f"The Content-Type must be {SET_MEDIA_TYPE}.")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_SET_BYTES:
            return _answer(start_response, 400, "invalid_request",
                           "The body must be one SET of a stated length.")
        try:
            token = environ["wsgi.input"].read(length).decode("ascii").strip()
        except UnicodeDecodeError:
            return _answer(start_response, 400, "invalid_request", "The body is not a SET.")
        try:
            self.receiver.receive(token)
        except SetRejected as refusal:
            return _answer(start_response, 400, refusal.err, refusal.description)
        except KeysUnavailable:
            start_response("503 Service Unavailable", [
                ("Retry-After", str(RETRY_PUSH_AFTER)), ("Content-Length", "0")])
            return [b""]
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]



def _answer(start_response, status: int, err: str, description: str,
            headers: dict | None = None) -> list[bytes]:
    """An RFC 8935 §2.3 error answer."""
    data = json.dumps({"err": err, "description": description}).encode()
    start_response(f"{status} {REASONS[status]}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
        *(headers or {}).items()])
    return [data]
