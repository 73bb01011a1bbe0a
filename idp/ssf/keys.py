"""The keys that sign SETs: P-256, private halves sealed under ``SECRET_KEY`` (docs/ssf.md,
"The SET").

The first key is made on first use (or by ``flask ssf rotate-key``). A rotated key stops
signing at once and stays in the JWKS until every delivery signed with it is acknowledged;
the purge then removes it (``idp.store.outbox.retired_keys``).
"""

import logging
import secrets
from datetime import datetime
from functools import lru_cache

from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store import ssf_keys
from idp.store.models.ssf import SsfKey

log = logging.getLogger(__name__)

#: RFC 7518 §3.4: ECDSA with P-256 and SHA-256, the one algorithm our SETs use.
ALG = "ES256"
#: The curve of every signing key.
CURVE = "P-256"
#: What a key's seal is bound to besides SECRET_KEY, so no other seal opens as a signing key.
SEAL_CONTEXT = "flowestate-idp ssf signing key "


class KeyUnavailable(RuntimeError):
    """The signing key's seal opens under none of the configured secret keys.

    SECRET_KEY was replaced without keeping the old one in SECRET_KEY_FALLBACKS. Signing
    stops (a passing fault for the caller) rather than silently making a new key: the
    operator decides, by restoring the old key or running ``flask ssf rotate-key``.
    """


def sealing_keys(config) -> tuple[str, ...]:
    """The keys a seal may have been made under: the current one first, then the previous."""
    return (config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ()))


def create(session: Session, config, now: datetime) -> SsfKey:
    """Make a new live key: a random kid, the private half sealed under SECRET_KEY."""
    kid = secrets.token_urlsafe(16)
    key = ECKey.generate_key(CURVE, parameters={"kid": kid, "alg": ALG, "use": "sig"},
                             private=True)
    sealed = cs.seal(config["SECRET_KEY"], SEAL_CONTEXT + kid, key.as_dict(private=True))
    row = ssf_keys.add(session, kid=kid, sealed_private=sealed,
                       public_jwk=key.as_dict(private=False), now=now)
    log.info("ssf signing key %s created", kid)
    return row


def current_key(session: Session, config, now: datetime) -> SsfKey:
    """The key that signs now, made first if there is none yet."""
    return ssf_keys.newest_live(session) or create(session, config, now)


def rotate(session: Session, config, now: datetime) -> SsfKey:
    """Retire the live key (it stays in the JWKS) and make the one that signs from now on."""
    ssf_keys.retire_live(session, now)
    return create(session, config, now)


def private_key(row: SsfKey, config) -> ECKey:
    """The opened private half of ``row``; KeyUnavailable when no configured key opens it."""
    key = _opened(row.kid, bytes(row.sealed_private), sealing_keys(config))
    if key is None:
        log.warning("ssf signing key %s cannot be opened with SECRET_KEY or its fallbacks",
                    row.kid)
        raise KeyUnavailable(row.kid)
    return key


@lru_cache(maxsize=16)
def _opened(kid: str, sealed: bytes, keys: tuple[str, ...]) -> ECKey | None:
    """Open a seal once per process: a poll signs up to a hundred SETs with the same key."""
    private = cs.unseal(keys, SEAL_CONTEXT + kid, sealed)
    return None if private is None else ECKey.import_key(private)


def jwks(session: Session) -> dict:
    """RFC 7517 §5 key set of the public halves, live and retired, newest first."""
    return {"keys": [dict(row.public_jwk) for row in ssf_keys.published(session)]}
