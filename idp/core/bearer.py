"""The bearer rules of SPEC §4, as the IdP names them.

They live in the kit's ``flowestate_kit.answers`` (standard library only), so the IdP's guard
and introspection and a resource server protected by the kit word every refusal from the same
table; this module re-exports what the IdP uses.
"""

from flowestate_kit.answers import MALFORMED
from flowestate_kit.answers import MAX_TOKEN_LENGTH
from flowestate_kit.answers import MESSAGES
from flowestate_kit.answers import MISSING
from flowestate_kit.answers import RETRY_AFTER_UNAVAILABLE
from flowestate_kit.answers import STATUSES
from flowestate_kit.answers import UNKNOWN
from flowestate_kit.answers import Denial
from flowestate_kit.answers import check_shape
from flowestate_kit.answers import denial
from flowestate_kit.answers import denial_from_dict
from flowestate_kit.answers import denial_parts
from flowestate_kit.answers import error_body
from flowestate_kit.answers import parse_authorization
from flowestate_kit.answers import scope_denial
from flowestate_kit.answers import unavailable_parts
from flowestate_kit.answers import www_authenticate

__all__ = [
    "MALFORMED", "MAX_TOKEN_LENGTH", "MESSAGES", "MISSING", "RETRY_AFTER_UNAVAILABLE", "STATUSES",
    "UNKNOWN", "Denial",
    "check_shape", "denial", "denial_from_dict", "denial_parts", "error_body",
    "parse_authorization", "scope_denial", "unavailable_parts", "www_authenticate",
]
