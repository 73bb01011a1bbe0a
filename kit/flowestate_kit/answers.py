"""The bearer rules of SPEC §4 as plain data: parse a header, judge its shape, word the answer.

Standard library only, and nothing of Flask or a database: the IdP's own guard (through
``idp.core.bearer``) and the kit's adapters, running inside another service, build the very
same status, body and headers from this one module.
"""

import re
from collections.abc import Collection
from collections.abc import Sequence
from dataclasses import dataclass

#: The realm every challenge names (RFC 6750 §3).
REALM = "FlowEstate"
#: RFC 6750 §2.1 b64token; anything else in the credential position is garbage.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Longer than any credential we issue by a wide margin; past it the value is garbage.
MAX_TOKEN_LENGTH = 512
#: Every API key starts so (SPEC §2) ...
API_KEY_PREFIX = "fe_k_"
#: ... and is the prefix and 128 bits as 32 lowercase hex characters.
API_KEY_PATTERN = re.compile(r"fe_k_[0-9a-f]{32}")

#: One plain sentence per §4 reason; every door copies it into its error body.
MESSAGES = {
    "missing_authorization": "Send an Authorization header of the form 'Bearer <token>'.",
    "malformed_authorization": (
        "The Authorization header is not 'Bearer <token>' with a valid token."
    ),
    "unknown_token": "This API key or access token is not recognised.",
    "token_expired": "This access token has expired; refresh it for a new one.",
    "token_revoked": "This access token belongs to a connection that has been ended.",
    "key_inactive": "This API key is disabled.",
    "key_expired": "This API key has passed its expiration date.",
    "insufficient_scope": "This credential lacks the scope this endpoint needs.",
    "client_disabled": "The app that obtained this token has been disabled.",
    "org_unbound": (
        "This credential's organization binding no longer holds: the organization is "
        "suspended, the person left it, or the app may no longer act for it."
    ),
}
#: Status each reason is given with (SPEC §4); the code follows from the status.
STATUSES = {
    "missing_authorization": 401,
    "malformed_authorization": 401,
    "unknown_token": 401,
    "token_expired": 401,
    "token_revoked": 401,
    "key_inactive": 403,
    "key_expired": 403,
    "insufficient_scope": 403,
    "client_disabled": 403,
    "org_unbound": 403,
}
#: Body and wait of a 429 (SPEC §10).
RATE_LIMITED_MESSAGE = "Too many requests for this credential; wait before retrying."
#: Body and wait of a 503 when the judge itself cannot be reached.
UNAVAILABLE_MESSAGE = "The service is briefly unavailable; retry shortly."
RETRY_AFTER_UNAVAILABLE = 5


@dataclass(frozen=True)
class Denial:
    """Why a bearer was refused: the exact status, code and reason of SPEC §4."""

    status: int
    reason: str
    #: True when a credential was presented (RFC 6750 §3 adds error="invalid_token").
    presented: bool = True
    #: For insufficient_scope: the scopes the endpoint needs.
    needed: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """UNAUTHORIZED or FORBIDDEN, derived from the status."""
        return "UNAUTHORIZED" if self.status == 401 else "FORBIDDEN"

    @property
    def message(self) -> str:
        """One plain sentence for people reading the error."""
        return MESSAGES[self.reason]

    def as_dict(self) -> dict:
        """The ``denial`` object of introspection (SPEC §5.5)."""
        return {"status": self.status, "code": self.code, "reason": self.reason}


MISSING = Denial(401, "missing_authorization", presented=False)
MALFORMED = Denial(401, "malformed_authorization")
UNKNOWN = Denial(401, "unknown_token")


def denial(reason: str, **kwargs) -> Denial:
    """The Denial for a §4 reason, with the status the table gives it."""
    return Denial(STATUSES[reason], reason, **kwargs)


def denial_from_dict(data) -> Denial | None:
    """Rebuild a Denial from introspection's ``denial`` object; None if it is not one of ours."""
    if not isinstance(data, dict):
        return None
    reason = data.get("reason")
    if reason not in STATUSES or data.get("status") != STATUSES[reason]:
        return None
    return denial(reason, presented=reason != "missing_authorization")


def parse_authorization(header: str | None) -> str | Denial:
    """The token of an ``Authorization: Bearer`` header value (RFC 6750 §2.1), or the Denial."""
    if header is None:
        return MISSING
    scheme, _, token = header.partition(" ")
    # RFC 7235 §2.1: the scheme name is case-insensitive.
    if scheme.lower() != "bearer" or not token.strip():
        return MALFORMED
    return token.strip()


def check_shape(token: str) -> Denial | None:
    """Refuse values that cannot be any credential we issue, before any lookup."""
    if len(token) > MAX_TOKEN_LENGTH or not B64TOKEN.fullmatch(token):
        return MALFORMED
    if token.startswith(API_KEY_PREFIX) and not API_KEY_PATTERN.fullmatch(token):
        return MALFORMED
    return None


def scope_denial(held: Collection[str], needed: Sequence[str]) -> Denial | None:
    """The insufficient_scope Denial when ``held`` lacks any of ``needed``; write ≠ read."""
    if any(scope not in held for scope in needed):
        return denial("insufficient_scope", needed=tuple(needed))
    return None


def www_authenticate(refusal: Denial) -> str | None:
    """The RFC 6750 §3 challenge for a denial, or None when §4 sends none (other 403s)."""
    value = f'Bearer realm="{REALM}"'
    if refusal.reason == "insufficient_scope":
        return value + f', error="insufficient_scope", scope="{" ".join(refusal.needed)}"'
    if refusal.status != 401:
        return None
    if refusal.presented:
        return value + ', error="invalid_token"'
    return value


def error_body(code: str, reason: str, message: str) -> dict:
    """The one JSON error shape of SPEC §4."""
    return {"error": {"code": code, "reason": reason, "message": message}}


def denial_parts(refusal: Denial) -> tuple[int, dict, dict]:
    """Status, JSON body and headers that answer a denial."""
    headers = {}
    challenge = www_authenticate(refusal)
    if challenge:
        headers["WWW-Authenticate"] = challenge
    return refusal.status, error_body(refusal.code, refusal.reason, refusal.message), headers


def unavailable_parts() -> tuple[int, dict, dict]:
    """503 for a passing fault: never a 4xx, which a connector would take as a dead credential."""
    body = error_body("UNAVAILABLE", "temporarily_unavailable", UNAVAILABLE_MESSAGE)
    return 503, body, {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
