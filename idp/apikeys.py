"""API keys: create (raw key returned once), disable, enable, revoke (SPEC §2, §6, §7)."""

from datetime import datetime

from sqlalchemy import select

from idp import audit
from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.scopes import join_scope
from idp.extensions import db
from idp.models import ApiKey
from idp.models import Organization
from idp.models import User

#: Longest key name accepted.
MAX_NAME_LENGTH = 100


class ApiKeyError(ValueError):
    """A request about API keys that cannot be accepted; the message is for people."""


def create_key(
    org: Organization,
    name: str,
    scopes: list[str],
    catalogue: dict,
    *,
    created_by: User | None = None,
    expires_at: datetime | None = None,
    actor: str = "cli",
    ip: str | None = None,
) -> tuple[ApiKey, str]:
    """Add a key to the organization; returns the row and the raw ``fe_k_`` value (shown once)."""
    name = (name or "").strip()
    if not name:
        raise ApiKeyError("Give the key a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise ApiKeyError(f"Use at most {MAX_NAME_LENGTH} characters for the name.")
    if not scopes:
        raise ApiKeyError("Choose at least one scope.")
    unknown = sorted(set(scopes) - set(catalogue))
    if unknown:
        raise ApiKeyError(f"Unknown scopes: {', '.join(unknown)}.")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise ApiKeyError("The expiry date must be in the future.")
    taken = db.session.scalar(
        select(ApiKey.id).where(ApiKey.org_id == org.id, ApiKey.name == name)
    )
    if taken:
        raise ApiKeyError(f"This organization already has a key named {name!r}.")
    raw = cs.new_api_key()
    key = ApiKey(
        public_id=cs.new_public_id("key_"), org_id=org.id, name=name, digest=cs.digest(raw),
        last4=raw[-4:], scopes=join_scope(scopes),
        created_by_id=created_by.id if created_by else None, created_at=now,
        expires_at=expires_at, active=True,
    )
    db.session.add(key)
    audit.record(db.session, "api_key_created", now, org=org.public_id, actor=actor,
                 subject=key.public_id, ip=ip, name=name, scopes=key.scopes)
    return key, raw


def set_active(key: ApiKey, active: bool, *, actor: str = "cli", ip: str | None = None) -> None:
    """Disable a key (403 key_inactive at once) or enable it again."""
    key.active = active
    audit.record(db.session, "api_key_enabled" if active else "api_key_disabled", utcnow(),
                 org=key.organization.public_id, actor=actor, subject=key.public_id, ip=ip)


def revoke(key: ApiKey, *, actor: str = "cli", ip: str | None = None) -> None:
    """Delete a key for good (401 unknown_token afterwards)."""
    audit.record(db.session, "api_key_revoked", utcnow(), org=key.organization.public_id,
                 actor=actor, subject=key.public_id, ip=ip, name=key.name)
    db.session.delete(key)


def status(key: ApiKey, now: datetime) -> str:
    """Active, Disabled or Expired, as the API Keys page shows it."""
    if not key.active:
        return "Disabled"
    if key.expires_at is not None and key.expires_at <= now:
        return "Expired"
    return "Active"


def find_key(org: Organization, public_id: str) -> ApiKey | None:
    """A key of this organization by id; another org's key is never found."""
    return db.session.scalar(
        select(ApiKey).where(ApiKey.org_id == org.id, ApiKey.public_id == public_id)
    )
