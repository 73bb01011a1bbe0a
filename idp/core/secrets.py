"""Make, digest and compare credentials (SPEC §2); all randomness comes from ``secrets``."""

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flowestate_kit.answers import API_KEY_PATTERN as API_KEY_PATTERN
from flowestate_kit.answers import API_KEY_PREFIX

ACCESS_TOKEN_PREFIX = "fe_at_"
REFRESH_TOKEN_PREFIX = "fe_rt_"
CLIENT_SECRET_PREFIX = "fe_cs_"
RESOURCE_SECRET_PREFIX = "fe_rs_"

# An API key is its prefix and 128 bits as 32 lowercase hex characters; the prefix and the
# pattern come from the kit's answers, which check a bearer's shape on both sides.

#: OAuth tokens carry 256 bits as 43 url-safe base64 characters.
ACCESS_TOKEN_PATTERN = re.compile(r"fe_at_[A-Za-z0-9_-]{43}")
REFRESH_TOKEN_PATTERN = re.compile(r"fe_rt_[A-Za-z0-9_-]{43}")
#: Width of every stored public id (``cli_…``, ``rs_…``, ``org_…``); ours are 24 characters.
PUBLIC_ID_LENGTH = 40
#: Longest client_id (connector or resource server) worth a lookup: no wider one can be stored.
MAX_CLIENT_ID = PUBLIC_ID_LENGTH


def new_api_key() -> str:
    """Return a fresh ``fe_k_`` key with 128 random bits."""
    return API_KEY_PREFIX + secrets.token_hex(16)


def new_access_token() -> str:
    """Return a fresh ``fe_at_`` token with 256 random bits."""
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    """Return a fresh ``fe_rt_`` token with 256 random bits."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_authorization_code() -> str:
    """Return a fresh authorization code with 256 random bits."""
    return secrets.token_urlsafe(32)


def new_client_secret(prefix: str = CLIENT_SECRET_PREFIX) -> str:
    """Return a fresh client (or resource-server) secret with 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


def new_public_id(prefix: str) -> str:
    """Return a public identifier such as ``con_…``; never a row number."""
    return prefix + secrets.token_hex(10)


def plausible_client_id(value: str | None) -> bool:
    """Whether a presented client_id may name a client at all: present and not over-long."""
    return bool(value) and len(value) <= MAX_CLIENT_ID


def digest(raw: str) -> str:
    """SHA-256 hex digest: the only form in which a credential is stored."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def same_digest(stored: str | None, raw: str) -> bool:
    """Compare a presented secret with a stored digest in constant time."""
    if not stored:
        return False
    return hmac.compare_digest(stored, digest(raw))


def _sealing_key(secret_key: str, raw_token: str) -> bytes:
    """Derive a Fernet key from the server secret *and* the presented token.

    Only someone who holds the raw refresh token (and the server) can open what was sealed
    under it, so a copy of the database alone never yields a usable successor.
    """
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=hashlib.sha256(secret_key.encode("utf-8")).digest(),
        info=b"flowestate-idp refresh successor v1",
    )
    return base64.urlsafe_b64encode(hkdf.derive(raw_token.encode("utf-8")))


def seal(secret_key: str, raw_token: str, payload: dict) -> bytes:
    """Encrypt a small JSON payload so that only ``raw_token`` can open it again."""
    return Fernet(_sealing_key(secret_key, raw_token)).encrypt(json.dumps(payload).encode())


def unseal(secret_keys: Sequence[str], raw_token: str, sealed: bytes) -> dict | None:
    """Open what :func:`seal` made under any of ``secret_keys``, or None if none opens it.

    The current key comes first and the previous ones (Flask's ``SECRET_KEY_FALLBACKS``) after
    it, so a seal made just before a key rotation still opens within its grace window.
    """
    if isinstance(secret_keys, str):
        raise TypeError("secret_keys is a sequence of keys, not one key")
    try:
        opener = MultiFernet([Fernet(_sealing_key(key, raw_token)) for key in secret_keys])
        return json.loads(opener.decrypt(sealed))
    except (InvalidToken, ValueError):
        return None
