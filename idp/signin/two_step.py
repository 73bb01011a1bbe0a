"""Two-step sign-in: TOTP (RFC 6238, via pyotp) and one-time recovery codes.

The TOTP secret must be readable by the server to check codes, so it cannot be a digest: it
is sealed with Fernet under a key derived from ``SECRET_KEY`` and the user's public id
(:func:`idp.core.secrets.seal`), opened under ``SECRET_KEY_FALLBACKS`` too, and shown to the
person only while they set it up. A code is accepted once: the step it belongs to is stored
and no code of that step or an earlier one is taken again (RFC 6238 §5.2). Recovery codes
carry 80 random bits each and are stored as SHA-256 digests, each usable once.
"""

import calendar
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store.models import Passkey
from idp.store.models import RecoveryCode
from idp.store.models import TotpCredential
from idp.store.models import User

#: RFC 6238 time step, in seconds.
STEP = 30
#: Steps accepted either side of now: a phone clock a little off, a code typed as it turned.
DRIFT_STEPS = 1
#: Recovery codes made at a time (as GitHub and Google do).
RECOVERY_CODES = 10
#: The issuer name authenticator apps show next to the account.
ISSUER_NAME = "FlowEstate"


def _label(user: User) -> str:
    """What a sealed secret is bound to: moving it to another user's row opens nothing."""
    return "totp-secret:" + user.public_id


def seal_secret(config: dict, user: User, secret: str) -> bytes:
    """Encrypt a TOTP secret for storage."""
    return cs.seal(config["SECRET_KEY"], _label(user), {"secret": secret})


def open_secret(config: dict, user: User, sealed: bytes) -> str | None:
    """The TOTP secret, opened under SECRET_KEY or one of its fallbacks; None if none opens."""
    keys = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    opened = cs.unseal(keys, _label(user), sealed)
    return opened["secret"] if opened else None


def totp_of(db_session: Session, user: User) -> TotpCredential | None:
    """The user's authenticator app row, confirmed or still being set up."""
    return db_session.scalar(select(TotpCredential).where(TotpCredential.user_id == user.id))


def start_totp(db_session: Session, config: dict, user: User, now: datetime) -> TotpCredential:
    """A new, unconfirmed secret for the user (replacing an unfinished one)."""
    db_session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id,
                                                    TotpCredential.confirmed_at.is_(None)))
    row = TotpCredential(user_id=user.id, sealed_secret=seal_secret(config, user,
                                                                    pyotp.random_base32()),
                         created_at=now, last_step=0)
    db_session.add(row)
    db_session.flush()
    return row


def provisioning_uri(secret: str, user: User) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER_NAME)


def qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an inline SVG data URI, made here (no external service)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#111827")


def _step_of(now: datetime) -> int:
    """The RFC 6238 counter of a naive-UTC time."""
    return calendar.timegm(now.utctimetuple()) // STEP


def check_totp(db_session: Session, config: dict, user: User, row: TotpCredential, code: str,
               now: datetime) -> bool:
    """Accept a six-digit code once: a matching step later than the last one accepted."""
    secret = open_secret(config, user, row.sealed_secret)
    if secret is None or len(code) != 6 or not code.isdigit():
        return False
    totp = pyotp.TOTP(secret)
    current = _step_of(now)
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, whatever matched before.
        if hmac.compare_digest(totp.generate_otp(step), code) and step > row.last_step:
            matched = step
    if matched is None:
        return False
    # Conditional, so two requests racing with one code cannot both pass (replay).
    taken = db_session.execute(
        update(TotpCredential)
        .where(TotpCredential.id == row.id, TotpCredential.last_step < matched)
        .values(last_step=matched).execution_options(synchronize_session=False)
    ).rowcount
    return taken == 1


def _normalize_code(code: str) -> str:
    """Recovery codes compare without dashes, spaces or case."""
    return "".join(code.split()).replace("-", "").lower()


def new_recovery_codes(db_session: Session, user: User, now: datetime) -> list[str]:
    """Replace the user's recovery codes with ten fresh ones; the raw codes, shown once."""
    db_session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(10)
        codes.append("-".join(raw[i:i + 5] for i in range(0, 20, 5)))
        db_session.add(RecoveryCode(user_id=user.id, digest=cs.digest(raw), created_at=now))
    return codes


def use_recovery_code(db_session: Session, user: User, code: str, now: datetime) -> bool:
    """Spend one unused recovery code; False if it is not one (or was used)."""
    normalized = _normalize_code(code)
    if len(normalized) != 20:
        return False
    # A unique-index lookup of a digest: nothing to compare in constant time.
    return db_session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.digest == cs.digest(normalized),
               RecoveryCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount == 1


def recovery_codes_left(db_session: Session, user: User) -> int:
    """How many recovery codes the user can still use."""
    return db_session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))


def has_totp(db_session: Session, user: User) -> bool:
    """Whether an authenticator app is in force for the user."""
    return db_session.scalar(select(TotpCredential.id).where(
        TotpCredential.user_id == user.id, TotpCredential.confirmed_at.isnot(None))) is not None


def passkey_count(db_session: Session, user: User) -> int:
    """How many passkeys the user has registered."""
    return db_session.scalar(select(func.count()).select_from(Passkey)
                             .where(Passkey.user_id == user.id))


def has_two_step(db_session: Session, user: User) -> bool:
    """Whether signing in takes a second step: an authenticator app or a passkey."""
    return has_totp(db_session, user) or passkey_count(db_session, user) > 0


def remove_totp(db_session: Session, user: User) -> None:
    """Turn the authenticator app off; recovery codes go too when nothing else needs them."""
    db_session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    if passkey_count(db_session, user) == 0:
        db_session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
