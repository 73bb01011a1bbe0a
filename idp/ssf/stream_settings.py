"""The receiver-supplied properties of a stream (SSF 1.0 §8.1.1): validated, then written.

Validation happens before any row changes, and nothing here commits. Decisions the
specification leaves open (docs/ssf.md):

* ``delivery`` left out (or null) means poll (idp/ssf/stream_delivery.py checks the rest);
* ``events_requested`` left out (or null) asks for every supported type; a list must name at
  least one supported type, and ``events_delivered`` is its intersection with
  ``events_supported``. Verification and stream-updated events need no request;
* properties the transmitter supplies (``iss``, ``aud``, ``events_delivered`` …) are ignored
  in requests, so a receiver may PUT back the configuration it read; unknown ones too;
* PATCH replaces each receiver-supplied property it names, ``delivery`` as a whole; PUT
  replaces all of them, a missing one taking its default.
"""

from datetime import datetime

from idp.core.ssf_events import events_supported
from idp.ssf.stream_delivery import delivery_of
from idp.ssf.stream_delivery import seal_authorization
from idp.ssf.stream_documents import poll_url
from idp.ssf.stream_errors import SsfError
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import SsfStream

#: Longest description, status reason and verification state (the columns' width).
MAX_TEXT = 200
#: Most event types one request may name.
MAX_EVENT_TYPES = 50


def text(body: dict, name: str, *, limit: int = MAX_TEXT) -> str | None:
    """An optional string member no longer than ``limit``; None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise SsfError(f"{name} must be a string of at most {limit} characters.")
    return value


def body_object(body) -> dict:
    """The request body, which must be a JSON object."""
    if not isinstance(body, dict):
        raise SsfError("The request body must be a JSON object.")
    return body


def stream_id_of(value) -> str:
    """A ``stream_id`` as given in a body or a query: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise SsfError("stream_id is required.")
    return value


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


def settings_of(body: dict, issuer: str, *, replace: bool) -> dict:
    """The receiver-supplied properties a request sets, validated (all of them if ``replace``)."""
    settings = {}
    if replace or "delivery" in body:
        settings["delivery"] = delivery_of(body.get("delivery"))
    if replace or "events_requested" in body:
        settings["events_requested"] = _events_requested(body.get("events_requested"), issuer)
    if replace or "description" in body:
        settings["description"] = text(body, "description")
    return settings


def apply(stream: SsfStream, settings: dict, config, now: datetime) -> None:
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
