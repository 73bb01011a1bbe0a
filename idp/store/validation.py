"""Checks on what operators type: email syntax and organization names (SPEC §7)."""

import re

from sqlalchemy import func
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import Organization

#: RFC 5321 §4.5.3.1: 64 characters before the @, 254 in all (the usable path length).
MAX_LOCAL = 64
MAX_EMAIL = 254
#: The dot-atom of RFC 5322 §3.2.3 for the local part; quoted local parts are refused, as
#: mail providers do, so an address can be typed and compared without ambiguity.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
#: One DNS label (RFC 1035 §2.3.4, letters-digits-hyphens; punycode labels included).
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: Longest organization name (the column's size).
MAX_ORG_NAME = 200


class ValidationError(ValueError):
    """Input refused; the message says what is wrong in one sentence."""


def check_email(email: str) -> str:
    """The address normalized (trimmed, lowercased), or :class:`ValidationError`."""
    address = (email or "").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError(f"{email!r} is not an email address: it needs one @ with text "
                              "on both sides.")
    if len(address) > MAX_EMAIL or len(local) > MAX_LOCAL:
        raise ValidationError(f"{email!r} is too long for an email address.")
    if not _LOCAL.fullmatch(local):
        raise ValidationError(f"{email!r} is not an email address: the part before the @ has "
                              "characters an address cannot have.")
    try:
        # Internationalized domains are kept as typed but must encode to DNS labels.
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"{email!r} is not an email address: bad domain.") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValidationError(f"{email!r} is not an email address: the domain after the @ "
                              "must be a name like example.com.")
    return address.lower()


def check_org_name(name: str) -> str:
    """The name trimmed, if not blank and not taken (ignoring case), or ValidationError."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise ValidationError("An organization needs a name.")
    if len(cleaned) > MAX_ORG_NAME:
        raise ValidationError(f"An organization name is at most {MAX_ORG_NAME} characters.")
    # Two customers called "Acme Realty" and "acme realty" could not be told apart in lists.
    taken = db.session.scalar(
        select(Organization).where(func.lower(Organization.name) == cleaned.lower())
    )
    if taken is not None:
        raise ValidationError(f"{cleaned!r} is taken: organization {taken.public_id} is named "
                              f"{taken.name!r} (names are unique, ignoring case).")
    return cleaned
