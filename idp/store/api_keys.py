"""API keys: create (raw key returned once), roll, rename, re-scope, disable, enable, revoke."""

from datetime import datetime
from datetime import timedelta

from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.scopes import join_scope
from idp.infra.extensions import db
from idp.store import audit
from idp.store import outbox
from idp.store.models import ApiKey
from idp.store.models import Organization
from idp.store.models import User

#: Longest key name accepted.
MAX_NAME_LENGTH = 100
#: How long a rolled-away secret may keep working, as offered on the Roll page (seconds).
ROLL_OVERLAPS = {0: "Stop it now", 3600: "1 hour", 86400: "1 day", 7 * 86400: "7 days"}
#: Expiry presets of the create form, in days.
EXPIRY_PRESETS = (30, 90, 365)


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
    name = _check_name_and_scopes(org, name, scopes, catalogue)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise ApiKeyError("The expiry date must be in the future.")
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


def _check_name_and_scopes(org: Organization, name: str, scopes: list[str], catalogue: dict,
                           key_id: int | None = None) -> str:
    """The stripped name, or ApiKeyError for a bad name, one taken by another key of the
    organization (any other than ``key_id``) or bad scopes."""
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
    others = select(ApiKey.id).where(ApiKey.org_id == org.id, ApiKey.name == name)
    if key_id is not None:
        others = others.where(ApiKey.id != key_id)
    if db.session.scalar(others):
        raise ApiKeyError(f"This organization already has a key named {name!r}.")
    return name


def update_key(key: ApiKey, name: str, scopes: list[str], catalogue: dict, *,
               actor: str = "cli", ip: str | None = None) -> dict:
    """Rename and re-scope a key (effective on its next use); returns what changed, audited."""
    name = _check_name_and_scopes(key.organization, name, scopes, catalogue, key_id=key.id)
    scope = join_scope(scopes)
    changes = {}
    if name != key.name:
        changes["name"] = [key.name, name]
    if scope != key.scopes:
        changes["scopes"] = [key.scopes, scope]
    if changes:
        key.name, key.scopes = name, scope
        audit.record(db.session, "api_key_updated", utcnow(), org=key.organization.public_id,
                     actor=actor, subject=key.public_id, ip=ip, **changes)
    return changes


def roll(key: ApiKey, overlap_seconds: int, *, actor: str = "cli",
         ip: str | None = None) -> str:
    """Give a key a new secret (returned once); the old one works ``overlap_seconds`` more.

    Only one old secret is kept, as for client secrets (SPEC §7): rolling again during an
    overlap stops the secret before it at once.
    """
    if overlap_seconds not in ROLL_OVERLAPS:
        raise ApiKeyError("Choose how long the old key keeps working.")
    now = utcnow()
    if expired(key, now):
        raise ApiKeyError("An expired key cannot be rolled; create a new key instead.")
    raw = cs.new_api_key()
    if overlap_seconds:
        key.previous_digest, key.previous_last4 = key.digest, key.last4
        key.previous_revoke_at = now + timedelta(seconds=overlap_seconds)
    else:
        key.previous_digest = key.previous_last4 = key.previous_revoke_at = None
    key.digest, key.last4 = cs.digest(raw), raw[-4:]
    audit.record(db.session, "api_key_rolled", now, org=key.organization.public_id, actor=actor,
                 subject=key.public_id, ip=ip, overlap_seconds=overlap_seconds,
                 old_key_stops_at=(key.previous_revoke_at or now).isoformat() + "Z")
    return raw


def in_overlap(key: ApiKey, now: datetime) -> bool:
    """True while a rolled-away secret of this key still works."""
    return key.previous_revoke_at is not None and key.previous_revoke_at > now


def set_active(key: ApiKey, active: bool, *, issuer: str, actor: str = "cli",
               ip: str | None = None) -> None:
    """Disable a key (403 key_inactive at once) or enable it again; a real change is told to
    resource servers (access paused or resumed), as ``issuer``."""
    kind = "api_key_enabled" if active else "api_key_disabled"
    now = utcnow()
    if key.active != active:
        outbox.emit(db.session, kind, now, issuer=issuer, api_key=key.public_id)
    key.active = active
    audit.record(db.session, kind, now, org=key.organization.public_id, actor=actor,
                 subject=key.public_id, ip=ip)


def revoke(key: ApiKey, *, issuer: str, actor: str = "cli", ip: str | None = None) -> None:
    """Delete a key for good (401 unknown_token afterwards), told to resource servers as a
    credential-change delete."""
    now = utcnow()
    audit.record(db.session, "api_key_revoked", now, org=key.organization.public_id,
                 actor=actor, subject=key.public_id, ip=ip, name=key.name)
    outbox.emit(db.session, "api_key_revoked", now, issuer=issuer, api_key=key.public_id)
    db.session.delete(key)


def expired(key: ApiKey, now: datetime) -> bool:
    """True once a key has passed its expiry date: for good, whatever its active flag."""
    return key.expires_at is not None and key.expires_at <= now


def status(key: ApiKey, now: datetime) -> str:
    """Active, Disabled or Expired, as the API Keys page shows it."""
    if not key.active:
        return "Disabled"
    if expired(key, now):
        return "Expired"
    return "Active"


def find_key(org: Organization, public_id: str) -> ApiKey | None:
    """A key of this organization by id; another org's key is never found."""
    return db.session.scalar(
        select(ApiKey).where(ApiKey.org_id == org.id, ApiKey.public_id == public_id)
    )


def ended_overlaps(now: datetime):
    """The purge's clean-up of rolled keys: the replaced secret, once its overlap has ended,
    is set to NULL (past ``previous_revoke_at`` it already answers ``unknown_token``)."""
    return ApiKey, ApiKey.previous_revoke_at <= now, {
        "previous_digest": None, "previous_last4": None, "previous_revoke_at": None}
