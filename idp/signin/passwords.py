"""The password policy: one function every place that sets a password calls.

The common-password list is the first 10,000 entries (most common first) of the 20,000 that
Django ships in ``django/contrib/auth/common-passwords.txt.gz`` (BSD licence), which Royce
Williams compiled from breached-password corpora and which Django lowercased and deduplicated.
"""

import functools
from pathlib import Path

#: Shorter passwords fall to guessing (NIST SP 800-63B asks at least 8; we ask more).
MIN_LENGTH = 12
#: Longer ones are refused so argon2 is never handed megabytes to hash.
MAX_LENGTH = 1024
#: One lowercased password a line.
COMMON_PASSWORDS = Path(__file__).resolve().parents[1] / "data" / "common-passwords.txt"


class PasswordPolicyError(ValueError):
    """A password the policy refuses; the message says why, in one sentence."""


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, read once per process."""
    return frozenset(COMMON_PASSWORDS.read_text(encoding="utf-8").split("\n")) - {""}


def check_password_policy(password: str, email: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` may be set for ``email``."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"The password must be at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"The password must be at most {MAX_LENGTH} characters.")
    if not password.strip():
        raise PasswordPolicyError("The password must not be only spaces.")
    folded = password.lower()
    if folded in common_passwords():
        raise PasswordPolicyError("That password is on a list of common passwords; choose "
                                  "another.")
    if len(set(folded)) == 1:
        raise PasswordPolicyError("The password must not repeat one character.")
    if email and folded.strip() in {email.strip().lower(), email.strip().lower().split("@")[0]}:
        raise PasswordPolicyError("The password must not be the email address.")
