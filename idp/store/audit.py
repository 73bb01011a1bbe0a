"""Audit events: one row per security-relevant change (SPEC §1), and one log line once committed.

Each event is also written to the ``idp.audit`` logger at INFO, as fields only (ids, the actor's
email, the address, the event's details; never a secret), so a log pipeline gets the trail
without reading the database. The line is written when the transaction that holds the event
commits, so an event rolled back never shows up in the logs.
"""

import json
import logging
from datetime import datetime
from datetime import timedelta

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.store.models import AuditEvent

log = logging.getLogger("idp.audit")

#: ``session.info`` key of the events waiting for their transaction to commit.
PENDING = "idp_audit_pending"
#: Failed sign-ins of one account from one address within this window share one row.
FAILURE_WINDOW = timedelta(hours=1)
SIGN_IN_FAILED = "sign_in_failed"

#: Every event kind in plain words, for the Activity page and ``flask audit list``.
KINDS = {
    "api_key_created": "API key created",
    "api_key_disabled": "API key disabled",
    "api_key_enabled": "API key enabled",
    "api_key_revoked": "API key revoked",
    "api_key_rolled": "API key rolled",
    "api_key_updated": "API key renamed or re-scoped",
    "connection_created": "App connected",
    "connection_ended": "Connection ended",
    "refresh_token_reuse": "Refresh token reused: connection ended",
    "client_created": "Connector client registered",
    "client_updated": "Connector client changed",
    "client_disabled": "Connector client disabled",
    "client_enabled": "Connector client enabled",
    "client_secret_rotated": "Connector client secret rotated",
    "resource_server_created": "Resource server registered",
    "resource_server_disabled": "Resource server disabled",
    "resource_server_enabled": "Resource server enabled",
    "resource_server_secret_rotated": "Resource server secret rotated",
    "sign_in_failed": "Failed sign-in",
    "session_ended": "Session signed out",
    "other_sessions_ended": "Other sessions signed out",
    "password_set": "Password set by an operator",
    "password_changed": "Password changed",
    "password_reset_requested": "Password reset link sent",
    "password_reset": "Password reset by email",
    "two_step_enabled": "Two-step sign-in turned on",
    "two_step_disabled": "Two-step sign-in turned off",
    "two_step_failed": "Wrong two-step code",
    "reauth_failed": "Wrong password when confirming a security change",
    "recovery_code_used": "Recovery code used",
    "recovery_codes_renewed": "Recovery codes renewed",
    "passkey_added": "Passkey added",
    "passkey_removed": "Passkey removed",
    "org_two_step_required": "Two-step sign-in required for members",
    "org_two_step_optional": "Two-step sign-in made optional",
}
#: Kinds recorded with an organization: what an organization's Activity page can show.
ORG_KINDS = (
    "api_key_created", "api_key_disabled", "api_key_enabled", "api_key_revoked",
    "api_key_rolled", "api_key_updated", "connection_created", "connection_ended",
    "refresh_token_reuse", "org_two_step_required", "org_two_step_optional",
)


def record(
    session: Session,
    event: str,
    now: datetime,
    *,
    org: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    ip: str | None = None,
    **detail,
) -> AuditEvent:
    """Add an audit event to the session; the caller's transaction commits it (and logs it)."""
    row = AuditEvent(
        created_at=now, event=event, org_public_id=org, actor=actor, subject=subject, ip=ip,
        detail=detail,
    )
    session.add(row)
    _log_on_commit(session, row)
    return row


def record_sign_in_failure(session: Session, now: datetime, *, actor: str | None,
                           ip: str | None) -> AuditEvent:
    """One ``sign_in_failed`` row per account and address an hour, counting the failures."""
    # A flood of wrong passwords (or of made-up emails, all recorded with no actor) from one
    # address adds one row an hour, not one per attempt; each attempt is still logged.
    # FOR UPDATE: two failures at once on PostgreSQL must not both read the same count.
    # SQLite ignores it; there the caller already holds the write lock (begin_write).
    same = select(AuditEvent).where(
        AuditEvent.event == SIGN_IN_FAILED,
        AuditEvent.created_at > now - FAILURE_WINDOW,
        AuditEvent.actor.is_(None) if actor is None else AuditEvent.actor == actor,
        AuditEvent.ip.is_(None) if ip is None else AuditEvent.ip == ip,
    ).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(1).with_for_update()
    row = session.scalar(same)
    last = now.isoformat(timespec="seconds")
    if row is None:
        return record(session, SIGN_IN_FAILED, now, actor=actor, ip=ip, count=1, last_at=last)
    # A new dict: the JSON column notices reassignment, not changes inside the old one.
    row.detail = {**(row.detail or {}), "count": (row.detail or {}).get("count", 1) + 1,
                  "last_at": last}
    _log_on_commit(session, row)
    return row


def known_kinds(session: Session) -> list[str]:
    """Every kind named in :data:`KINDS` or present in the table, sorted."""
    stored = session.scalars(select(AuditEvent.event).distinct())
    return sorted(set(KINDS) | set(stored))


def search(session: Session, *, org: str | None = None, subject: str | None = None,
           since: datetime | None = None, kinds=(), limit: int = 50,
           offset: int = 0) -> list[AuditEvent]:
    """Events matching every filter given, newest first."""
    query = select(AuditEvent)
    if org is not None:
        query = query.where(AuditEvent.org_public_id == org)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if kinds:
        query = query.where(AuditEvent.event.in_(list(kinds)))
    query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    return list(session.scalars(query.offset(offset).limit(limit)))


def fields(row: AuditEvent) -> dict:
    """An event as plain fields: what the log line, ``--json`` and the page show."""
    return {
        "time": row.created_at.isoformat(timespec="seconds") if row.created_at else None,
        "event": row.event, "org": row.org_public_id, "actor": row.actor,
        "subject": row.subject, "ip": row.ip, "detail": dict(row.detail or {}),
    }


def log_line(entry: dict) -> str:
    """``audit <event> key=value …``: the text form of an event, values quoted when needed."""
    pairs = {key: entry[key] for key in ("org", "actor", "subject", "ip") if entry.get(key)}
    pairs.update(entry.get("detail") or {})
    return f"audit {entry['event']} {detail_text(pairs)}".rstrip()


def detail_text(detail: dict) -> str:
    """Details as ``key=value`` pairs on one line."""
    return " ".join(f"{key}={_quoted(value)}" for key, value in detail.items())


def _quoted(value) -> str:
    """A value as one token: bare when it has no space or quote, else JSON-quoted."""
    if isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    value = value if isinstance(value, str) else json.dumps(value)
    return value if value and not any(c in value for c in " \"=\n") else json.dumps(value)


def _log_on_commit(session: Session, row: AuditEvent) -> None:
    """Queue the event's log line until its transaction commits (see ``_flush_log``)."""
    # The fields are copied now: after the commit the row's attributes are expired, and
    # reading them there would need a new query.
    session.info.setdefault(PENDING, []).append(fields(row))


@sa_event.listens_for(Session, "after_commit")
def _flush_log(session: Session) -> None:
    """Write the queued lines of a committed transaction."""
    for entry in session.info.pop(PENDING, ()):
        log.info(log_line(entry), extra={"fields": {"audit": entry}})


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_log(session: Session, transaction) -> None:
    """A transaction that ended without committing takes its queued lines with it."""
    # The commit's own end runs after ``after_commit`` has already taken the queue.
    if transaction.parent is None:
        session.info.pop(PENDING, None)
