"""Passkeys (WebAuthn Level 3, via py_webauthn): register, and sign in with one.

The relying party id is the issuer's host and the expected origin the issuer itself, so a
passkey made for this IdP answers nowhere else. User verification is required: a passkey
proves possession and the device's PIN or biometric, so it is a second step on its own and
also signs in without a password. The user handle is the user's public id (random, not the
email). Each ceremony's challenge lives in the session and is spent on first use.
"""

import json
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import base64url_to_bytes
from webauthn import generate_authentication_options
from webauthn import generate_registration_options
from webauthn import options_to_json
from webauthn import verify_authentication_response
from webauthn import verify_registration_response
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AuthenticatorSelectionCriteria
from webauthn.helpers.structs import PublicKeyCredentialDescriptor
from webauthn.helpers.structs import ResidentKeyRequirement
from webauthn.helpers.structs import UserVerificationRequirement

from idp.core import secrets as cs
from idp.store.models import Passkey
from idp.store.models import User

RP_NAME = "FlowEstate"
#: Longest credential JSON accepted from a browser (attestation "none" is under 2 KiB).
MAX_RESPONSE_LENGTH = 16 * 1024


class PasskeyError(ValueError):
    """A browser's answer that does not verify; the message is safe to show."""


def rp_id(config: dict) -> str:
    """The relying party id: the issuer's host name."""
    return urlsplit(config["IDP_ISSUER"]).hostname


def _descriptors(rows) -> list[PublicKeyCredentialDescriptor]:
    """Credential descriptors of stored passkeys."""
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id))
            for row in rows]


def user_passkeys(db_session: Session, user: User) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    return list(db_session.scalars(select(Passkey).where(Passkey.user_id == user.id)
                                   .order_by(Passkey.created_at)))


def registration_options(db_session: Session, config: dict, user: User) -> tuple[str, str]:
    """(options JSON for the browser, challenge to keep in the session)."""
    options = generate_registration_options(
        rp_id=rp_id(config), rp_name=RP_NAME, user_name=user.email,
        user_id=user.public_id.encode(), user_display_name=user.name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=_descriptors(user_passkeys(db_session, user)),
    )
    return options_to_json(options), bytes_to_base64url(options.challenge)


def authentication_options(config: dict, rows=()) -> tuple[str, str]:
    """(options JSON, challenge); no allow list means any passkey of this site (discoverable)."""
    options = generate_authentication_options(
        rp_id=rp_id(config), allow_credentials=_descriptors(rows) or None,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options), bytes_to_base64url(options.challenge)


def _parsed(response: str) -> dict:
    """The browser's credential JSON, bounded."""
    if not response or len(response) > MAX_RESPONSE_LENGTH:
        raise PasskeyError("The browser sent no passkey.")
    try:
        parsed = json.loads(response)
    except ValueError:
        raise PasskeyError("The browser's answer was not readable.") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise PasskeyError("The browser's answer was not readable.")
    return parsed


def register(db_session: Session, config: dict, user: User, response: str, challenge: str,
             name: str, now) -> Passkey:
    """Verify a registration ceremony and store the new passkey."""
    try:
        verified = verify_registration_response(
            credential=_parsed(response), expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(config), expected_origin=config["IDP_ISSUER"],
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey could not be verified. Try again.") from error
    credential_id = bytes_to_base64url(verified.credential_id)
    if db_session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise PasskeyError("That passkey is already registered.")
    row = Passkey(public_id=cs.new_public_id("pk_"), user_id=user.id,
                  credential_id=credential_id, public_key=verified.credential_public_key,
                  sign_count=verified.sign_count, name=name or "Passkey", created_at=now)
    db_session.add(row)
    return row


def authenticate(db_session: Session, config: dict, response: str, challenge: str,
                 now, user: User | None = None) -> Passkey:
    """Verify an authentication ceremony; the passkey used (``user``'s own, when given)."""
    parsed = _parsed(response)
    query = select(Passkey).where(Passkey.credential_id == parsed["id"])
    if user is not None:
        query = query.where(Passkey.user_id == user.id)
    row = db_session.scalar(query)
    if row is None:
        raise PasskeyError("That passkey is not registered with FlowEstate.")
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(config), expected_origin=config["IDP_ISSUER"],
            credential_public_key=row.public_key, credential_current_sign_count=row.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey could not be verified. Try again.") from error
    row.sign_count = verified.new_sign_count
    row.last_used_at = now
    return row
