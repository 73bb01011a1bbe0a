"""Typed models, one module per noun. Credentials live here only as SHA-256 digests
(SPEC §2).

Every model is importable from here; importing the package registers every table
(migrations/env.py reads them all from ``db.metadata``).
"""

from idp.store.models.accounts import MANAGER_ROLES
from idp.store.models.accounts import ROLES
from idp.store.models.accounts import Membership
from idp.store.models.accounts import Organization
from idp.store.models.accounts import Passkey
from idp.store.models.accounts import PasswordReset
from idp.store.models.accounts import RecoveryCode
from idp.store.models.accounts import TotpCredential
from idp.store.models.accounts import User
from idp.store.models.accounts import UserSession
from idp.store.models.api_keys import ApiKey
from idp.store.models.audit import AuditEvent
from idp.store.models.columns import DIGEST
from idp.store.models.columns import PUBLIC_ID
from idp.store.models.oauth import AccessToken
from idp.store.models.oauth import AuthorizationCode
from idp.store.models.oauth import Client
from idp.store.models.oauth import Connection
from idp.store.models.oauth import ConnectorClientRules
from idp.store.models.oauth import RefreshToken
from idp.store.models.oauth import ResourceServer
from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfEvent
from idp.store.models.ssf import SsfKey
from idp.store.models.ssf import SsfState
from idp.store.models.ssf import SsfStream

__all__ = [
    "AccessToken", "ApiKey", "AuditEvent", "AuthorizationCode", "Client", "Connection",
    "ConnectorClientRules", "DIGEST", "MANAGER_ROLES", "Membership", "Organization", "PUBLIC_ID",
    "Passkey", "PasswordReset", "ROLES", "RecoveryCode", "RefreshToken", "ResourceServer",
    "SsfDelivery", "SsfEvent", "SsfKey", "SsfState", "SsfStream", "TotpCredential", "User",
    "UserSession",
]
