"""``flask ssf``: the Shared Signals transmitter's signing keys and streams (docs/ssf.md).

The group is shared: the push worker's command (``flask ssf deliver``) joins it from its own
module.
"""

import click
from flask import current_app
from flask.cli import AppGroup

from idp.cli.support import emit
from idp.cli.support import find
from idp.cli.support import json_option
from idp.cli.support import refused_as_usage
from idp.cli.support import stamp
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.ssf import keys
from idp.ssf import streams
from idp.ssf.stream_errors import SsfError
from idp.store import outbox
from idp.store import ssf_keys
from idp.store import ssf_streams
from idp.store.database import begin_write
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import STREAM_STATUSES
from idp.store.models.ssf import SsfStream


@click.group("ssf", cls=AppGroup)
def ssf_group():
    """Shared Signals: SET signing keys, resource servers' streams, push delivery."""


@ssf_group.command("rotate-key")
def ssf_rotate_key():
    """Sign from now on with a new key; the old one stays in the JWKS until its SETs are
    acknowledged, then the purge removes it."""
    begin_write(db.session)
    key = keys.rotate(db.session, current_app.config, utcnow())
    db.session.commit()
    click.echo(f"{key.kid} signs from now on")


@ssf_group.command("keys")
@json_option
def ssf_keys_list(as_json):
    """List the signing keys, newest first, with the SETs each still waits on."""
    waiting = ssf_keys.unacknowledged_by_kid(db.session)
    rows = [{"kid": key.kid, "created_at": stamp(key.created_at),
             "retired_at": stamp(key.retired_at), "status": "retired" if key.retired_at
             else "signing", "unacknowledged": waiting.get(key.kid, 0)}
            for key in ssf_keys.published(db.session)]
    emit(rows, ("kid", "status", "created_at", "retired_at", "unacknowledged"), as_json)


def _age(seconds: float | None) -> str | None:
    """A lag as people read it: ``45s``, ``12m``, ``3h``, ``2d``."""
    if seconds is None:
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@ssf_group.command("streams")
@json_option
def ssf_streams_list(as_json):
    """List every stream with its lag: unacknowledged SETs and the age of the oldest."""
    now = utcnow()
    rows = []
    for stream in ssf_streams.overview(db.session):
        waiting, oldest = outbox.lag(db.session, stream.id)
        rows.append({
            "stream_id": stream.public_id, "resource_server": stream.resource_server.public_id,
            "method": "push" if stream.delivery_method == PUSH else "poll",
            "status": stream.status, "unacknowledged": waiting,
            "oldest_seconds": int((now - oldest).total_seconds()) if oldest else None,
            "last_polled_at": stamp(stream.last_polled_at),
            "last_delivery_at": stamp(stream.last_delivery_at),
            "last_error": stream.last_error, "last_error_at": stamp(stream.last_error_at),
            "failures": stream.failures,
        })
    if not as_json:
        for row in rows:
            row["oldest"] = _age(row["oldest_seconds"])
    emit(rows, ("stream_id", "resource_server", "method", "status", "unacknowledged", "oldest",
                "last_delivery_at", "last_error", "failures"), as_json)


def _stream(stream_id: str) -> SsfStream:
    """The stream with this id, whatever resource server holds it, or a usage error."""
    return find(SsfStream, stream_id, "stream", "STREAM_ID")


@ssf_group.command("set-stream-status")
@click.argument("stream_id")
@click.argument("status", type=click.Choice(STREAM_STATUSES))
@click.option("--reason", default=None, help="Told to the receiver in the stream-updated event.")
def ssf_set_stream_status(stream_id, status, reason):
    """Enable, pause (events are held) or disable (events are dropped) a stream, as its
    resource server could: for a receiver that is gone and whose queue keeps growing."""
    begin_write(db.session)
    stream = _stream(stream_id)
    with refused_as_usage(SsfError):
        streams.set_status(db.session, current_app.config, stream.resource_server.public_id,
                           {"stream_id": stream.public_id, "status": status,
                            "reason": reason}, utcnow())
    db.session.commit()
    click.echo(f"{stream_id} {status}")


@ssf_group.command("delete-stream")
@click.argument("stream_id")
def ssf_delete_stream(stream_id):
    """Delete a stream and every SET waiting on it (its receiver may create a new one)."""
    begin_write(db.session)
    ssf_streams.remove(db.session, _stream(stream_id))
    db.session.commit()
    click.echo(f"{stream_id} deleted")


#: Command groups this module adds to ``flask``.
COMMANDS = (ssf_group,)
