"""Audit events: one row per security-relevant change (SPEC §1)."""

from datetime import datetime

from sqlalchemy.orm import Session

from idp.models import AuditEvent


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
    """Add an audit event to the session; the caller's transaction commits it."""
    row = AuditEvent(
        created_at=now, event=event, org_public_id=org, actor=actor, subject=subject, ip=ip,
        detail=detail,
    )
    session.add(row)
    return row
