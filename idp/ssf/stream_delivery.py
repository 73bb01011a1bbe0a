"""A stream's ``delivery`` (SSF 1.0 §8.1.1): poll or push, checked, and push's sealed header.

A push ``endpoint_url`` must be https, or http to a loopback address (a receiver on the same
host, in development and tests); a poll stream's URL is ours, and whatever the receiver names
for it is ignored. The push ``authorization_header`` is stored sealed under SECRET_KEY, bound
to its stream, and never shown again, like every secret (docs/ssf.md).
"""

from urllib.parse import urlsplit

from flowestate_kit.judge import is_loopback
from idp.core import secrets as cs
from idp.ssf import keys
from idp.ssf.stream_errors import SsfError
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH
from idp.store.models.ssf import SsfStream

#: Longest push endpoint URL, and longest Authorization header value kept for it.
MAX_URL = 2000
MAX_AUTHORIZATION = 2000
#: What a push Authorization header's seal is bound to besides SECRET_KEY and its stream.
AUTHORIZATION_CONTEXT = "flowestate-idp ssf push authorization "


def _push_url(value) -> str:
    """A push ``endpoint_url``: https, or http to a loopback host; no userinfo, no fragment."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise SsfError("delivery.endpoint_url is required for push and must be a URL of at "
                       f"most {MAX_URL} characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise SsfError("delivery.endpoint_url is not a valid URL.") from None
    if not parts.hostname or parts.username is not None or parts.fragment:
        raise SsfError("delivery.endpoint_url must name a host, with no user name, password "
                       "or fragment.")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return value
    raise SsfError("delivery.endpoint_url must be https (http only to a loopback address).")


def _authorization(value) -> str | None:
    """An optional Authorization header value for push: printable ASCII, one line."""
    if value is None:
        return None
    if (not isinstance(value, str) or not value or len(value) > MAX_AUTHORIZATION
            or not value.isascii() or not value.isprintable()):
        raise SsfError("delivery.authorization_header must be one line of printable ASCII, "
                       f"at most {MAX_AUTHORIZATION} characters.")
    return value


def delivery_of(value) -> tuple[str, str | None, str | None]:
    """(method, push endpoint_url, push Authorization header) of a ``delivery`` member."""
    if value is None:
        return POLL, None, None
    if not isinstance(value, dict):
        raise SsfError("delivery must be a JSON object.")
    method = value.get("method")
    if method == POLL:
        # The poll URL is ours; whatever the receiver names is ignored (SSF 1.0 §8.1.1).
        return POLL, None, None
    if method != PUSH:
        raise SsfError(f"delivery.method must be {PUSH} (push) or {POLL} (poll).")
    return PUSH, _push_url(value.get("endpoint_url")), _authorization(
        value.get("authorization_header"))


def seal_authorization(config, stream_public_id: str, value: str) -> bytes:
    """Seal a push Authorization header under SECRET_KEY, bound to its stream."""
    return cs.seal(config["SECRET_KEY"], AUTHORIZATION_CONTEXT + stream_public_id,
                   {"authorization": value})


def push_authorization(stream: SsfStream, config) -> str | None:
    """The push stream's Authorization header, opened (SECRET_KEY_FALLBACKS too); None when
    it has none or its seal no longer opens."""
    if not stream.sealed_authorization:
        return None
    opened = cs.unseal(keys.sealing_keys(config), AUTHORIZATION_CONTEXT + stream.public_id,
                       bytes(stream.sealed_authorization))
    return None if opened is None else opened.get("authorization")
