"""What the push worker's tests share: a clock they move, push streams, events, one pass."""

from datetime import timedelta

from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.ssf import keys
from idp.ssf import push
from idp.ssf import streams
from idp.store import outbox
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfStream
from tests.factories import committing
from tests.factories import resource_server

#: The Authorization header the test receivers expect.
RECEIVER_AUTHORIZATION = "Bearer rcv-0123456789abcdef0123456789abcdef"


class Clock:
    """A clock that stands still until a test moves it, so backoff needs no sleeping."""

    def __init__(self) -> None:
        """Start at the real time."""
        self.moment = utcnow()

    def __call__(self):
        """The time now, for ``now_fn``."""
        return self.moment

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.moment += timedelta(seconds=seconds)

    def past(self, moment) -> None:
        """Move the clock just past ``moment``."""
        self.moment = moment + timedelta(milliseconds=1)


def push_stream(app, clock, url: str, authorization: str | None = RECEIVER_AUTHORIZATION,
                name: str = "Leads API") -> str:
    """A resource server with one push stream to ``url``, made as a receiver would make it
    (SSF 1.0 §8.1.1.1); the stream's public id."""
    with committing(app):
        server, _secret = resource_server(name)
        delivery = {"method": PUSH, "endpoint_url": url}
        if authorization:
            delivery["authorization_header"] = authorization
        stream = streams.create(db.session, app.config, server.public_id,
                                {"delivery": delivery}, clock())
        return stream.public_id


def emit(app, clock, count: int, first: int = 0) -> list[str]:
    """``count`` revoked-key events, committed; the key ids they name, in order."""
    names = [f"key_{n:04d}" for n in range(first, first + count)]
    with committing(app):
        for name in names:
            outbox.emit(db.session, "api_key_revoked", clock(), issuer=app.config["IDP_ISSUER"],
                        api_key=name)
    return names


def deliver(app, clock, http) -> int:
    """One pass of the worker, as ``flask ssf deliver --once`` runs it."""
    with app.app_context():
        return push.deliver_once(db.session, app.config, clock, http)


def set_status(app, clock, public_id: str, status: str) -> None:
    """Change a stream's status as its receiver would (SSF 1.0 §8.1.2.2)."""
    with committing(app):
        stream = db.session.scalar(select(SsfStream).where(SsfStream.public_id == public_id))
        streams.set_status(db.session, app.config, stream.resource_server.public_id,
                           {"stream_id": public_id, "status": status}, clock())


def stream_state(app, public_id: str) -> SsfStream:
    """The stream's row as it is now (detached, for reading)."""
    with app.app_context():
        stream = db.session.scalar(select(SsfStream).where(SsfStream.public_id == public_id))
        db.session.expunge(stream)
        return stream


def deliveries(app, public_id: str) -> list[SsfDelivery]:
    """The stream's deliveries in ``stream_seq`` order (detached, for reading)."""
    with app.app_context():
        rows = list(db.session.scalars(
            select(SsfDelivery).join(SsfStream, SsfStream.id == SsfDelivery.stream_id)
            .where(SsfStream.public_id == public_id).order_by(SsfDelivery.stream_seq)))
        db.session.expunge_all()
        return rows


def jwks(app) -> dict:
    """The key set receivers verify SETs with."""
    with app.app_context():
        return keys.jwks(db.session)
