"""SSF 1.0 §7.1 transmitter configuration metadata (``/.well-known/ssf-configuration``)."""

from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH

#: SSF 1.0 §7.1 ``spec_version`` of the specification we implement.
SPEC_VERSION = "1_0"
#: RFC 7617 HTTP Basic: how resource servers authenticate, as to introspection.
AUTHORIZATION_SCHEMES = [{"spec_urn": "urn:ietf:rfc:7617"}]


def configuration(config) -> dict:
    """The metadata document, every URL derived from the issuer."""
    issuer = config["IDP_ISSUER"]
    return {
        "spec_version": SPEC_VERSION,
        "issuer": issuer,
        "jwks_uri": issuer + "/ssf/jwks",
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": issuer + "/ssf/streams",
        "status_endpoint": issuer + "/ssf/status",
        "verification_endpoint": issuer + "/ssf/verify",
        "authorization_schemes": AUTHORIZATION_SCHEMES,
        # Every stream receives events about every subject; none are added or removed.
        "default_subjects": "ALL",
    }
