"""SSF 1.0 §8.1 stream management for resource servers: configuration, status, verification.

Every function takes the authenticated resource server's client_id and finds streams only
among its own: another server's stream is "not found" (404), never "forbidden", so an answer
never tells that it exists. Validation happens before any row changes; nothing here commits.

Decisions the specification leaves open (docs/ssf.md):

* ``delivery`` left out (or null) means poll; a push ``endpoint_url`` must be https, or http
  to a loopback address (a receiver on the same host, in development and tests);
* ``events_requested`` left out (or null) asks for every supported type; a list must name at
  least one supported type, and ``events_delivered`` is its intersection with
  ``events_supported``. Verification and stream-updated events need no request;
* ``authorization_header`` is stored sealed and never shown again, like every secret;
* properties the transmitter supplies (``iss``, ``aud``, ``events_delivered`` …) are ignored
  in requests, so a receiver may PUT back the configuration it read; unknown ones too;
* PATCH replaces each receiver-supplied property it names, ``delivery`` as a whole; PUT
  replaces all of them, a missing one taking its default;
* a resource server may hold ``IDP_SSF_MAX_STREAMS`` streams (409 beyond, SSF 1.0 §8.1.1.1),
  since every stream multiplies the rows each event adds. The kit makes one per process, so the
  bound is set above a fleet's process count; streams of processes killed without closing them
  are removed after ``IDP_SSF_INACTIVITY_SECONDS`` (an hour) by the purge.
"""

import ipaddress
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.ssf_events import events_supported
from idp.ssf import keys
from idp.store import outbox
from idp.store import ssf_streams
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import STREAM_STATUSES
from idp.store.models.ssf import SsfStream

#: Longest description, status reason and verification state (the columns' width).
MAX_TEXT = 200
#: Longest push endpoint URL, and longest Authorization header value kept for it.
MAX_URL = 2000
MAX_AUTHORIZATION = 2000
#: Most event types one request may name.
MAX_EVENT_TYPES = 50
#: What a push Authorization header's seal is bound to besides SECRET_KEY and its stream.
AUTHORIZATION_CONTEXT = "flowestate-idp ssf push authorization "
#: Hosts a push stream may reach over plain http.
LOOPBACK_NAMES = ("localhost",)


class SsfError(Exception):
    """A request the transmitter refuses: ``status`` and ``error`` say how, the message why."""

    #: HTTP status of the answer.
    status = 400
    #: The ``error`` code of the JSON body.
    error = "invalid_request"

    @property
    def description(self) -> str:
        """The sentence a receiver's developer reads."""
        return str(self)


class NotFound(SsfError):
    """No stream of this resource server has this id (SSF 1.0 §8.1.1.2: 404)."""

    status = 404
    error = "not_found"


class TooManyStreams(SsfError):
    """The resource server already holds IDP_SSF_MAX_STREAMS streams (SSF 1.0 §8.1.1.1: 409)."""

    status = 409


def _text(body: dict, name: str, *, limit: int = MAX_TEXT) -> str | None:
    """An optional string member no longer than ``limit``; None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise SsfError(f"{name} must be a string of at most {limit} characters.")
    return value


def _object(body) -> dict:
    """The request body, which must be a JSON object."""
    if not isinstance(body, dict):
        raise SsfError("The request body must be a JSON object.")
    return body


def stream_id_of(value) -> str:
    """A ``stream_id`` as given in a body or a query: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise SsfError("stream_id is required.")
    return value


def find(session: Session, server: str, stream_id) -> SsfStream:
    """The stream ``stream_id`` of the resource server ``server``, or NotFound."""
    stream = ssf_streams.find(session, server, stream_id_of(stream_id))
    if stream is None:
        raise NotFound("There is no stream with this stream_id.")
    return stream


# --- receiver-supplied properties -------------------------------------------------------------

def _push_url(value) -> str:
    """A push ``endpoint_url``: https, or http to a loopback host; no userinfo, no fragment."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise SsfError("delivery.endpoint_url is required for push and must be a URL of at "
                       f"most {MAX_URL} characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise SsfError("delivery.endpoint_url is not a valid URL.") from None
    if not parts.hostname or parts.username is not None or parts.fragment:
        raise SsfError("delivery.endpoint_url must name a host, with no user name, password "
                       "or fragment.")
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname)):
        return value
    raise SsfError("delivery.endpoint_url must be https (http only to a loopback address).")


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _authorization(value) -> str | None:
    """An optional Authorization header value for push: printable ASCII, one line."""
    if value is None:
        return None
    if (not isinstance(value, str) or not value or len(value) > MAX_AUTHORIZATION
            or not value.isascii() or not value.isprintable()):
        raise SsfError("delivery.authorization_header must be one line of printable ASCII, "
                       f"at most {MAX_AUTHORIZATION} characters.")
    return value


def _delivery(value) -> tuple[str, str | None, str | None]:
    """(method, push endpoint_url, push Authorization header) of a ``delivery`` member."""
    if value is None:
        return POLL, None, None
    if not isinstance(value, dict):
        raise SsfError("delivery must be a JSON object.")
    method = value.get("method")
    if method == POLL:
        # The poll URL is ours; whatever the receiver names is ignored (SSF 1.0 §8.1.1).
        return POLL, None, None
    if method != PUSH:
        raise SsfError(f"delivery.method must be {PUSH} (push) or {POLL} (poll).")
    return PUSH, _push_url(value.get("endpoint_url")), _authorization(
        value.get("authorization_header"))


def _events_requested(value, issuer: str) -> list[str]:
    """The requested event types, in the order given, without repeats."""
    supported = events_supported(issuer)
    if value is None:
        return supported
    if (not isinstance(value, list) or len(value) > MAX_EVENT_TYPES
            or not all(isinstance(item, str) and len(item) <= 300 for item in value)):
        raise SsfError(f"events_requested must be a list of at most {MAX_EVENT_TYPES} event "
                       "type URIs.")
    requested = list(dict.fromkeys(value))
    if not set(requested) & set(supported):
        raise SsfError("None of events_requested is supported; events_supported lists the "
                       "event types this transmitter sends.")
    return requested


def _settings(body: dict, issuer: str, *, replace: bool) -> dict:
    """The receiver-supplied properties a request sets, validated (all of them if ``replace``)."""
    settings = {}
    if replace or "delivery" in body:
        settings["delivery"] = _delivery(body.get("delivery"))
    if replace or "events_requested" in body:
        settings["events_requested"] = _events_requested(body.get("events_requested"), issuer)
    if replace or "description" in body:
        settings["description"] = _text(body, "description")
    return settings


def _apply(stream: SsfStream, settings: dict, config, now: datetime) -> None:
    """Write validated settings onto a stream."""
    issuer = config["IDP_ISSUER"]
    if "delivery" in settings:
        method, url, authorization = settings["delivery"]
        stream.delivery_method = method
        stream.endpoint_url = url if method == PUSH else poll_url(issuer, stream.public_id)
        stream.sealed_authorization = (seal_authorization(config, stream.public_id, authorization)
                                       if authorization else None)
        # Only a poll stream shows whether its receiver is still there (docs/ssf.md).
        stream.inactivity_timeout = (config["IDP_SSF_INACTIVITY_SECONDS"] if method == POLL
                                     else None)
    if "events_requested" in settings:
        requested = settings["events_requested"]
        stream.events_requested = requested
        stream.events_delivered = [kind for kind in events_supported(issuer) if kind in requested]
    if "description" in settings:
        stream.description = settings["description"]
    stream.updated_at = now


# --- sealing the push Authorization header --------------------------------------------------

def seal_authorization(config, stream_public_id: str, value: str) -> bytes:
    """Seal a push Authorization header under SECRET_KEY, bound to its stream."""
    return cs.seal(config["SECRET_KEY"], AUTHORIZATION_CONTEXT + stream_public_id,
                   {"authorization": value})


def push_authorization(stream: SsfStream, config) -> str | None:
    """The push stream's Authorization header, opened (SECRET_KEY_FALLBACKS too); None when
    it has none or its seal no longer opens."""
    if not stream.sealed_authorization:
        return None
    opened = cs.unseal(keys.sealing_keys(config), AUTHORIZATION_CONTEXT + stream.public_id,
                       bytes(stream.sealed_authorization))
    return None if opened is None else opened.get("authorization")


# --- the configuration a receiver reads -------------------------------------------------------

def poll_url(issuer: str, stream_public_id: str) -> str:
    """Where a poll stream's receiver polls (RFC 8936)."""
    return f"{issuer}/ssf/poll/{stream_public_id}"


def configuration(stream: SsfStream, issuer: str) -> dict:
    """SSF 1.0 §8.1.1 stream configuration (never the push Authorization header)."""
    url = (poll_url(issuer, stream.public_id) if stream.delivery_method == POLL
           else stream.endpoint_url)
    document = {
        "stream_id": stream.public_id,
        "iss": issuer,
        "aud": stream.aud,
        "delivery": {"method": stream.delivery_method, "endpoint_url": url},
        "events_supported": events_supported(issuer),
        "events_requested": list(stream.events_requested or ()),
        "events_delivered": list(stream.events_delivered or ()),
    }
    if stream.description is not None:
        document["description"] = stream.description
    if stream.inactivity_timeout is not None:
        document["inactivity_timeout"] = stream.inactivity_timeout
    return document


def status_of(stream: SsfStream) -> dict:
    """SSF 1.0 §8.1.2.1 stream status."""
    document = {"stream_id": stream.public_id, "status": stream.status}
    if stream.status_reason:
        document["reason"] = stream.status_reason
    return document


# --- the operations ----------------------------------------------------------------------------

def create(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.1.1: a new enabled stream for the resource server ``server``."""
    settings = _settings(_object(body), config["IDP_ISSUER"], replace=True)
    owner = ssf_streams.server(session, server)
    if owner is None:
        raise NotFound("The resource server is not registered.")
    most = config["IDP_SSF_MAX_STREAMS"]
    if ssf_streams.count_of_server(session, owner.id) >= most:
        raise TooManyStreams(f"A resource server may hold at most {most} streams; "
                             "delete one first.")
    stream = SsfStream(
        public_id=cs.new_public_id("str_"), resource_server_id=owner.id, aud=owner.public_id,
        status="enabled", created_at=now, last_stream_seq=0, failures=0,
    )
    _apply(stream, settings, config, now)
    session.add(stream)
    session.flush()
    # A receiver fetches the JWKS once it has a stream: have a key there from the start.
    keys.current_key(session, config, now)
    return stream


def listing(session: Session, server: str) -> list[SsfStream]:
    """SSF 1.0 §8.1.1.2 without ``stream_id``: every stream of the resource server."""
    return ssf_streams.of_server(session, server)


def update(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.1.3 (PATCH): change the receiver-supplied properties the body names."""
    body = _object(body)
    stream = find(session, server, body.get("stream_id"))
    _apply(stream, _settings(body, config["IDP_ISSUER"], replace=False), config, now)
    return stream


def replace(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.1.4 (PUT): set every receiver-supplied property, defaults for the missing."""
    body = _object(body)
    stream = find(session, server, body.get("stream_id"))
    _apply(stream, _settings(body, config["IDP_ISSUER"], replace=True), config, now)
    return stream


def delete(session: Session, server: str, stream_id) -> None:
    """SSF 1.0 §8.1.1.5: remove the stream and everything waiting on it."""
    ssf_streams.remove(session, find(session, server, stream_id))


def set_status(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.2.2: enable, pause or disable a stream; a change is told on the stream
    itself as a stream-updated event (§8.1.5), which a disabled stream drops."""
    body = _object(body)
    status = body.get("status")
    if status not in STREAM_STATUSES:
        raise SsfError("status must be one of " + ", ".join(STREAM_STATUSES) + ".")
    reason = _text(body, "reason")
    stream = find(session, server, body.get("stream_id"))
    changed = stream.status != status
    stream.status, stream.status_reason, stream.updated_at = status, reason, now
    if changed:
        outbox.emit(session, "stream_updated", now, issuer=config["IDP_ISSUER"], stream=stream,
                    status=status, status_reason=reason)
    return stream


def verify(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.4.2: queue a verification event echoing ``state`` on the stream.

    A disabled stream sends nothing and holds nothing (§8.1.2), so verifying it is refused
    rather than quietly dropped; a paused one holds the event until it is enabled.
    """
    body = _object(body)
    state = _text(body, "state")
    stream = find(session, server, body.get("stream_id"))
    if stream.status == "disabled":
        raise SsfError("The stream is disabled: enable it before asking for verification.")
    outbox.emit(session, "verification", now, issuer=config["IDP_ISSUER"], stream=stream,
                state=state)
    return stream
