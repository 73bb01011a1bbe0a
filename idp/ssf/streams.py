"""SSF 1.0 §8.1 stream management for resource servers: the operations on streams.

Every function takes the authenticated resource server's client_id and finds streams only
among its own: another server's stream is "not found" (404), never "forbidden", so an answer
never tells that it exists. Validation happens before any row changes; nothing here commits.
What a request may set is judged in idp/ssf/stream_settings.py (``delivery`` in
idp/ssf/stream_delivery.py), what a receiver reads back is shaped in
idp/ssf/stream_documents.py, and every refusal is an idp/ssf/stream_errors.py error.

A resource server may hold ``IDP_SSF_MAX_STREAMS`` streams (409 beyond, SSF 1.0 §8.1.1.1),
since every stream multiplies the rows each event adds. The kit makes one per process, so the
bound is set above a fleet's process count; streams of processes killed without closing them
are removed after ``IDP_SSF_INACTIVITY_SECONDS`` (an hour) by the purge.
"""

from datetime import datetime

from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.ssf import keys
from idp.ssf.stream_errors import NotFound
from idp.ssf.stream_errors import SsfError
from idp.ssf.stream_errors import TooManyStreams
from idp.ssf.stream_settings import apply
from idp.ssf.stream_settings import body_object
from idp.ssf.stream_settings import settings_of
from idp.ssf.stream_settings import stream_id_of
from idp.ssf.stream_settings import text
from idp.store import outbox
from idp.store import ssf_streams
from idp.store.models.ssf import STREAM_STATUSES
from idp.store.models.ssf import SsfStream


def find(session: Session, server: str, stream_id) -> SsfStream:
    """The stream ``stream_id`` of the resource server ``server``, or NotFound."""
    stream = ssf_streams.find(session, server, stream_id_of(stream_id))
    if stream is None:
        raise NotFound("There is no stream with this stream_id.")
    return stream


def create(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.1.1: a new enabled stream for the resource server ``server``."""
    settings = settings_of(body_object(body), config["IDP_ISSUER"], replace=True)
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
    apply(stream, settings, config, now)
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
    body = body_object(body)
    stream = find(session, server, body.get("stream_id"))
    apply(stream, settings_of(body, config["IDP_ISSUER"], replace=False), config, now)
    return stream


def replace(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.1.4 (PUT): set every receiver-supplied property, defaults for the missing."""
    body = body_object(body)
    stream = find(session, server, body.get("stream_id"))
    apply(stream, settings_of(body, config["IDP_ISSUER"], replace=True), config, now)
    return stream


def delete(session: Session, server: str, stream_id) -> None:
    """SSF 1.0 §8.1.1.5: remove the stream and everything waiting on it."""
    ssf_streams.remove(session, find(session, server, stream_id))


def set_status(session: Session, config, server: str, body, now: datetime) -> SsfStream:
    """SSF 1.0 §8.1.2.2: enable, pause or disable a stream; a change is told on the stream
    itself as a stream-updated event (§8.1.5), which a disabled stream drops."""
    body = body_object(body)
    status = body.get("status")
    if status not in STREAM_STATUSES:
        raise SsfError("status must be one of " + ", ".join(STREAM_STATUSES) + ".")
    reason = text(body, "reason")
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
    body = body_object(body)
    state = text(body, "state")
    stream = find(session, server, body.get("stream_id"))
    if stream.status == "disabled":
        raise SsfError("The stream is disabled: enable it before asking for verification.")
    outbox.emit(session, "verification", now, issuer=config["IDP_ISSUER"], stream=stream,
                state=state)
    return stream
