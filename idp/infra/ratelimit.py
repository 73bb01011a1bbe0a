"""Per-credential rate limits (SPEC §10): one counter per API key or connection.

The counting itself (fixed windows on the ``limits`` library, the pause after a store fails,
the 429's parts) lives in the kit's ``flowestate_kit.counting``, and the in-process counters in
``flowestate_kit.local_counters``, so the IdP's guard and a resource server protected by the
kit count with the same code and name their counters the same way; this module is the IdP's
name for it. The counters live in the storage of the IdP's Flask-Limiter instance
(``memory://`` by default, Redis via ``RATELIMIT_STORAGE_URI``), reached through
idp.infra.throttle.
"""

from flowestate_kit.counting import IPV6_PREFIX
from flowestate_kit.counting import OPEN
from flowestate_kit.counting import PAUSE_AFTER_FAILURE
from flowestate_kit.counting import SCOPE
from flowestate_kit.counting import Usage
from flowestate_kit.counting import address_key
from flowestate_kit.counting import count
from flowestate_kit.counting import parse_many
from flowestate_kit.counting import peek
from flowestate_kit.counting import rate_limited_parts
from flowestate_kit.local_counters import LocalCounters

__all__ = [
    "IPV6_PREFIX", "OPEN", "PAUSE_AFTER_FAILURE", "SCOPE", "LocalCounters", "Usage",
    "address_key", "count", "parse_many", "peek", "rate_limited_parts",
]
