"""Organization API keys."""

from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from idp.infra.extensions import db
from idp.store.models.accounts import Organization
from idp.store.models.accounts import User
from idp.store.models.columns import DIGEST
from idp.store.models.columns import PUBLIC_ID


class ApiKey(db.Model):
    """An organization's API key (``key_…``); the raw ``fe_k_`` value is never stored."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_api_keys_org_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(DIGEST, unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    scopes: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    #: The secret a roll replaced: it keeps working until ``previous_revoke_at`` (the overlap
    #: chosen when rolling), then answers 401 unknown_token like any secret no key holds.
    previous_digest: Mapped[str | None] = mapped_column(DIGEST, unique=True)
    previous_last4: Mapped[str | None] = mapped_column(String(4))
    previous_revoke_at: Mapped[datetime | None] = mapped_column(DateTime)

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship()
