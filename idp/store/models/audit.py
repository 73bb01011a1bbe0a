"""The audit trail."""

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import DateTime
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from idp.infra.extensions import db
from idp.store.models.columns import PUBLIC_ID


class AuditEvent(db.Model):
    """A security-relevant change; refers to things by public id so deletions keep history."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    event: Mapped[str] = mapped_column(String(60), index=True)
    org_public_id: Mapped[str | None] = mapped_column(PUBLIC_ID, index=True)
    actor: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
