"""People and organizations: passwords, memberships and suspension.

The signed-in user of a request is idp/web/sessions.py's concern; this module only keeps rows.
"""

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import or_
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models import MANAGER_ROLES
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import PasswordReset
from idp.store.models import RecoveryCode
from idp.store.models import User

#: argon2id with the library's RFC 9106 low-memory defaults.
_hasher = PasswordHasher()
#: Verified against when the email is unknown, so both paths cost the same (no enumeration).
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """True if the password matches; spends the same work when the user is unknown."""
    try:
        return _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and bool(user)
    except (VerificationError, InvalidHashError):
        return False


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding spaces."""
    return (email or "").strip().lower()


def find_user(email: str) -> User | None:
    """The user with this email, or None."""
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def create_user(email: str, name: str, password: str) -> User:
    """Add a user with an argon2id password hash."""
    user = User(
        public_id=cs.new_public_id("usr_"), email=normalize_email(email), name=name,
        password_hash=hash_password(password), created_at=utcnow(),
    )
    db.session.add(user)
    return user


def create_org(name: str) -> Organization:
    """Add an organization."""
    org = Organization(public_id=cs.new_public_id("org_"), name=name, created_at=utcnow())
    db.session.add(org)
    return org


def set_membership(user: User, org: Organization, role: str) -> Membership:
    """Give a user a role in an organization, replacing any earlier role."""
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )
    if membership is None:
        membership = Membership(user=user, organization=org, role=role)
        db.session.add(membership)
    membership.role = role
    return membership


def add_member(user: User, org: Organization, role: str, *, issuer: str) -> Membership:
    """An operator gives a user a role in an organization; a new membership is told to
    resource servers as ``membership_restored`` (as ``issuer``): connections the person kept
    in that organization work again. A role change alone is no event."""
    existing = db.session.scalar(
        select(Membership.id).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )
    membership = set_membership(user, org, role)
    if existing is None:
        outbox.emit(db.session, "membership_restored", utcnow(), issuer=issuer,
                    user=user.public_id, org=org.public_id)
    return membership


def remove_member(membership: Membership, *, issuer: str) -> None:
    """Take a user out of an organization: their connections there answer org_unbound at
    once, and resource servers are told (``membership_removed``, as ``issuer``)."""
    outbox.emit(db.session, "membership_removed", utcnow(), issuer=issuer,
                user=membership.user.public_id, org=membership.organization.public_id)
    db.session.delete(membership)


def set_suspended(org: Organization, suspended: bool, *, issuer: str) -> bool:
    """Suspend an organization (every credential of it stops) or lift the suspension; True if
    that changed anything, and then resource servers are told (as ``issuer``)."""
    if bool(org.suspended) == suspended:
        return False
    org.suspended = suspended
    outbox.emit(db.session, "org_suspended" if suspended else "org_restored", utcnow(),
                issuer=issuer, org=org.public_id)
    return True


def memberships(user: User) -> list[Membership]:
    """The user's memberships, organizations sorted by name."""
    rows = db.session.scalars(
        select(Membership).join(Organization).where(Membership.user_id == user.id)
        .order_by(Organization.name)
    )
    return list(rows)


def is_manager(membership: Membership | None) -> bool:
    """Owners and admins manage keys and every connection of their org."""
    return membership is not None and membership.role in MANAGER_ROLES


def spent_resets(now: datetime):
    """The purge's rule for password-reset links: used or expired (either gets the same
    "expired" page, so keeping them changes no answer)."""
    return PasswordReset, or_(PasswordReset.used_at.isnot(None), PasswordReset.expires_at <= now)


def used_recovery_codes():
    """The purge's rule for recovery codes: used ones (refused like a wrong code anyway)."""
    return RecoveryCode, RecoveryCode.used_at.isnot(None)
