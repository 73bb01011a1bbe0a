"""The documents a stream's receiver reads: its configuration (SSF 1.0 §8.1.1) and status
(§8.1.2.1), and where a poll stream is polled (RFC 8936).

They never show the push Authorization header: it is sealed when set and only the push worker
opens it.
"""

from idp.core.ssf_events import events_supported
from idp.store.models.ssf import POLL
from idp.store.models.ssf import SsfStream


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
