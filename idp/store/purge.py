"""The janitor (``flask purge``): delete what can no longer change an answer, in small batches.

What goes, and why it is safe (OPERATIONS.md, "The purge"; each rule sits beside its noun,
the tokens' in idp/store/purge_tokens.py):

* authorization codes: unused ones once expired, used ones once expired for the retention
  period, so a late replay still ends its connection (``idp.store.codes.purgeable``);
* access tokens expired for more than a day (until then a caller still hears ``token_expired``
  rather than ``unknown_token``; both are 401 and every client reacts the same way);
* refresh tokens past their own expiry, rotated or not: an expired refresh token is refused
  before reuse is even considered, so dropping it changes no answer;
* every token and code of a connection that ended more than ``IDP_ENDED_RETENTION_SECONDS``
  ago (the connection row itself stays, for its history);
* sealed successors older than the grace window: nobody may open them any more;
* sign-in sessions ended, idle too long or past their end (``idp.store.user_sessions``);
* used or expired password-reset links, used recovery codes (``idp.store.accounts``);
* a rolled API key's replaced secret once its overlap has ended (``idp.store.api_keys``);
* Shared Signals (``idp.store.outbox``): poll streams unused past their inactivity timeout,
  deliveries acknowledged more than ``IDP_SSF_RETENTION_SECONDS`` ago, sequenced events that
  old which no stream still waits for, and retired signing keys no unacknowledged SET needs.
  Events nobody has sequenced yet are sequenced first, so they do not wait for a stream.

Rotated refresh tokens of a live connection stay until they expire: they are what detects a
stolen token being replayed. Each batch is its own short transaction, so refreshes and sign-ins
keep running beside the purge; a batch that meets a lock or a passing fault is retried.
"""

import logging
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import codes
from idp.store import outbox
from idp.store import purge_tokens
from idp.store import user_sessions
from idp.store.database import begin_write
from idp.store.models import Connection
from idp.store.models import RefreshToken

log = logging.getLogger(__name__)

#: Most rows per transaction.
BATCH_SIZE = 5000
#: Rows in the first batch of each kind, before its cost is known.
FIRST_BATCH = 100
#: Longest a batch should hold its locks (on SQLite, the one write lock every refresh needs):
#: batches halve when slower and double, up to BATCH_SIZE, when much faster.
TARGET_SECONDS = 0.25
#: Pause between batches on SQLite. Its one write lock is handed to whoever asks first, and a
#: waiting request polls for it every 100 ms once it has waited a while; back-to-back batches
#: would starve a refresh past its busy timeout, so the purge leaves a gap longer than a poll.
SQLITE_PAUSE_SECONDS = 0.12
#: Attempts per batch before a lock timeout or passing fault is given up on.
ATTEMPTS = 5


@dataclass(frozen=True)
class Cutoffs:
    """The moments that decide what may go, all derived from one ``now``."""

    now: datetime
    ended_before: datetime
    grace_before: datetime
    idle_before: datetime
    ssf_before: datetime
    ssf_inactivity_seconds: int

    @classmethod
    def from_config(cls, now: datetime, config: dict) -> "Cutoffs":
        """Cutoffs for the configured retention and grace window."""
        return cls(
            now=now,
            ended_before=now - timedelta(seconds=config["IDP_ENDED_RETENTION_SECONDS"]),
            grace_before=now - timedelta(seconds=config["IDP_REFRESH_GRACE_SECONDS"]),
            idle_before=now - timedelta(seconds=config["IDP_SESSION_IDLE_SECONDS"]),
            ssf_before=now - timedelta(seconds=config["IDP_SSF_RETENTION_SECONDS"]),
            ssf_inactivity_seconds=config["IDP_SSF_INACTIVITY_SECONDS"],
        )


@dataclass
class Report:
    """Rows deleted (or, in a dry run, that would be) per kind."""

    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("codes", "access_tokens", "refresh_tokens", "seals_cleared", "sessions",
         "password_resets", "recovery_codes", "old_key_secrets_cleared", "ssf_streams",
         "ssf_deliveries", "ssf_events", "ssf_keys"), 0))

    def line(self) -> str:
        """One line for the operator's log."""
        return " ".join(f"{name}={count}" for name, count in self.counts.items())


def _ended(cut: Cutoffs):
    """Ids of connections that ended before the retention cutoff."""
    return select(Connection.id).where(Connection.ended_at <= cut.ended_before)


def deletions(cut: Cutoffs) -> dict:
    """For each kind of row, its model and the condition under which it may be deleted."""
    return {
        "codes": codes.purgeable(cut.now, cut.ended_before, _ended(cut)),
        "access_tokens": purge_tokens.spent_access(cut.now, _ended(cut)),
        "refresh_tokens": purge_tokens.spent_refresh(cut.now, _ended(cut)),
        "sessions": user_sessions.purgeable(cut.now, cut.idle_before),
        "password_resets": accounts.spent_resets(cut.now),
        "recovery_codes": accounts.used_recovery_codes(),
        # Streams first: their deliveries go with them, and keys wait on deliveries.
        "ssf_streams": outbox.inactive_poll_streams(cut.now, cut.ssf_inactivity_seconds),
        "ssf_deliveries": outbox.acknowledged_deliveries(cut.ssf_before),
        "ssf_events": outbox.spent_events(cut.ssf_before),
        "ssf_keys": outbox.retired_keys(),
    }


def clearings(cut: Cutoffs) -> dict:
    """For each kind of column clean-up: its model, which rows, and the values they get."""
    return {
        "seals_cleared": purge_tokens.stale_seals(cut.grace_before),
        "old_key_secrets_cleared": api_keys.ended_overlaps(cut.now),
    }


def _delete_batch(session: Session, model, condition, size: int) -> int:
    """Delete up to ``size`` matching rows in one write transaction; return how many went."""
    begin_write(session)
    ids = session.scalars(select(model.id).where(condition).order_by(model.id).limit(size)).all()
    if not ids:
        session.rollback()
        return 0
    if model is RefreshToken:
        purge_tokens.unlink_successors(session, ids)
    # The condition is repeated so a row that changed since the SELECT is left alone.
    deleted = session.execute(
        delete(model).where(model.id.in_(ids), condition)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return deleted


def _clear_batch(session: Session, model, condition, values: dict, size: int) -> int:
    """Set ``values`` on up to ``size`` matching rows in one write transaction."""
    begin_write(session)
    ids = session.scalars(
        select(model.id).where(condition).order_by(model.id).limit(size)
    ).all()
    if not ids:
        session.rollback()
        return 0
    # The condition is repeated so a row that changed since the SELECT is left alone.
    cleared = session.execute(
        update(model).where(model.id.in_(ids), condition)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return cleared


def _sequence_batch(session: Session, now: datetime, size: int) -> int:
    """Sequence up to ``size`` waiting events in one transaction (idp.store.outbox)."""
    sequenced = outbox.sequence(session, now, limit=size)
    session.commit()
    return sequenced


def _with_retries(work, session: Session) -> int:
    """Run one batch; a lock timeout or passing fault rolls back and tries again."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as error:
            session.rollback()
            if attempt == ATTEMPTS:
                raise
            log.warning("purge batch failed (%s); retrying", type(error).__name__)
            time.sleep(0.2 * attempt)
    return 0


def count(session: Session, cut: Cutoffs) -> Report:
    """What a purge at ``cut`` would remove, without removing anything."""
    report = Report()
    for name, (model, condition) in deletions(cut).items():
        report.counts[name] = session.scalar(select(db.func.count(model.id)).where(condition))
    for name, (model, condition, _values) in clearings(cut).items():
        report.counts[name] = session.scalar(select(db.func.count(model.id)).where(condition))
    session.rollback()
    return report


def _next_size(size: int, elapsed: float, ceiling: int) -> int:
    """Adapt the batch to how long the last one held its locks."""
    if elapsed > TARGET_SECONDS:
        return max(1, size // 2)
    if elapsed < TARGET_SECONDS / 4:
        return min(ceiling, size * 2)
    return size


def _drain(session: Session, batch, ceiling: int) -> int:
    """Run ``batch(size)`` until it finds nothing more; return the rows it handled."""
    size, total = min(FIRST_BATCH, ceiling), 0
    pause = SQLITE_PAUSE_SECONDS if session.get_bind().dialect.name == "sqlite" else 0
    while True:
        started = time.monotonic()
        done = _with_retries(lambda n=size: batch(n), session)
        if not done:
            return total
        total += done
        elapsed = time.monotonic() - started
        log.debug("purge batch: %d rows in %.3fs", done, elapsed)
        size = _next_size(size, elapsed, ceiling)
        time.sleep(pause)


def purge(session: Session, cut: Cutoffs, batch_size: int = BATCH_SIZE) -> Report:
    """Delete everything the rules allow, one short transaction per batch, and say how much."""
    report = Report()
    # Events no process has sequenced yet (no stream polls, no push worker runs) would
    # otherwise never become old enough to go.
    _drain(session, lambda size: _sequence_batch(session, cut.now, size), batch_size)
    # Clean-ups first: clearing seals is an UPDATE of rows the deletions may remove anyway.
    for name, (model, condition, values) in clearings(cut).items():
        report.counts[name] = _drain(
            session, lambda size, m=model, c=condition, v=values: _clear_batch(
                session, m, c, v, size), batch_size)
    for name, (model, condition) in deletions(cut).items():
        report.counts[name] = _drain(
            session, lambda size, m=model, c=condition: _delete_batch(session, m, c, size),
            batch_size)
    return report


@click.command("purge")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True,
              help="Most rows per transaction (smaller batches are used while they are slow).")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@with_appcontext
def purge_command(batch_size, dry_run):
    """Delete expired and spent credentials; clear stale seals and replaced API-key secrets."""
    cut = Cutoffs.from_config(utcnow(), current_app.config)
    if dry_run:
        click.echo("would purge: " + count(db.session, cut).line())
        return
    started = time.monotonic()
    report = purge(db.session, cut, batch_size)
    click.echo(f"purged: {report.line()} in {time.monotonic() - started:.1f}s")
