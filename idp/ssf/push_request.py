"""One RFC 8935 push request: send one SET, and say what the receiver's answer means.

* 202 Accepted (§2.2): the receiver has the SET;
* 400 with an §2.3 ``{"err", "description"}`` about the SET itself: the receiver has judged
  it and will not take it later (a *refusal*; the queue moves on);
* anything else is a *problem* that stops the stream's queue until a later try: no answer, a
  timeout, 5xx or any other status, a redirect (the SET and its header go to the configured
  URL or nowhere), a 400 that names no error, and a 400 whose error is about the stream
  rather than the SET (``STREAM_ERRORS``), since every later SET would be refused alike.

Nothing here touches the database, and nothing is logged: the caller logs the stream, the
``stream_seq``, the status and the attempt, never the Authorization header or the SET.
"""

import json
from dataclasses import dataclass

import requests
import urllib3

#: §2.1: each request carries one SET, as this media type (RFC 8417 §2.3).
SET_MEDIA_TYPE = "application/secevent+jwt"
#: §2.2: the one answer that means the receiver has the SET.
ACCEPTED = 202
#: §2.4 errors about the stream, not the SET: the receiver cannot authenticate us, will not
#: take SETs from us, cannot verify our signature yet (it has not fetched a rotated key) or
#: expects another issuer or audience. Skipping the SET would lose it and the ones after it,
#: so these stop the queue until someone fixes the cause, and nothing is lost.
STREAM_ERRORS = frozenset({"authentication_failed", "access_denied", "invalid_key",
                           "invalid_issuer", "invalid_audience"})
#: Bytes of an error answer read at most: only its ``err`` and ``description`` matter.
MAX_ERROR_BODY = 4096
#: Longest text taken from a receiver: it is shown in status answers and listings.
MAX_TEXT = 300


@dataclass(frozen=True)
class Answer:
    """What came of one request: accepted, refused, or a problem."""

    #: The HTTP status, or None when there was no answer.
    status: int | None
    #: ``err: description`` of a 400 that refused the SET; the queue moves on.
    refusal: str | None = None
    #: What went wrong otherwise, for the stream's ``last_error``; the queue stops.
    problem: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the receiver has the SET."""
        return self.status == ACCEPTED


def post(http, url: str, authorization: str | None, token: str, timeout: float) -> Answer:
    """Send one SET to ``url`` (§2.1) and judge the answer; never raises for the network.

    ``http`` is a ``requests.Session``; ``timeout`` applies to connecting and again to the
    answer. Only the first MAX_ERROR_BODY bytes of an answer's body are read.
    """
    headers = {"Content-Type": SET_MEDIA_TYPE, "Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    try:
        response = http.post(url, data=token.encode("ascii"), headers=headers, timeout=timeout,
                             allow_redirects=False, stream=True)
    except requests.Timeout:
        return Answer(None, problem=f"no answer within {timeout:g} s")
    except requests.RequestException as error:
        return Answer(None, problem=f"request failed: {network_reason(error)}")
    with response:
        status = response.status_code
        # Read (a bounded part of) every answer: a connection whose answer was read to its
        # end goes back to the pool, so the next SET skips a new TCP and TLS handshake.
        body = _start_of(response)
    if status == ACCEPTED:
        return Answer(status)
    if status != 400:
        return Answer(status, problem=f"HTTP {status}")
    err, description = _error_of(body)
    if err is None:
        return Answer(status, problem="HTTP 400 without an RFC 8935 error")
    text = f"{err}: {description}" if description else err
    if err in STREAM_ERRORS:
        return Answer(status, problem=f"HTTP 400 {text}")
    return Answer(status, refusal=text)


def network_reason(error: BaseException) -> str:
    """The operating system's words for a failed request (``Connection refused``), found in
    the chain requests and urllib3 wrap it in; never the URL, which may hold a secret."""
    queue, seen = [error], set()
    while queue:
        found = queue.pop(0)
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, OSError) and isinstance(found.strerror, str) and found.strerror:
            return found.strerror
        queue += [getattr(found, "reason", None), found.__cause__, found.__context__,
                  *(arg for arg in getattr(found, "args", ()) if isinstance(arg, BaseException))]
    return type(error).__name__


def _start_of(response) -> bytes:
    """The answer's body up to MAX_ERROR_BODY bytes; what cannot be read counts as empty."""
    body = b""
    try:
        for chunk in response.iter_content(1024):
            body += chunk
            if len(body) >= MAX_ERROR_BODY:
                break
    except (OSError, requests.RequestException, urllib3.exceptions.HTTPError):
        return b""
    return body[:MAX_ERROR_BODY]


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    """``err`` and ``description`` of an §2.3 error answer, or Nones when it is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict) or not isinstance(document.get("err"), str):
        return None, None
    description = document.get("description")
    return (_printable(document["err"]),
            _printable(description) if isinstance(description, str) else None)


def _printable(text: str) -> str:
    """The receiver's text as one short plain line."""
    return "".join(c if c.isprintable() else " " for c in text)[:MAX_TEXT]
