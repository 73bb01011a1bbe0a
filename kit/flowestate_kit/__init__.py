"""FlowEstate's resource-server kit: judge bearers through the IdP's introspection endpoint.

The core (:mod:`flowestate_kit.judge`) is protocol-neutral; :mod:`flowestate_kit.flask` (the
``flask`` extra) and :mod:`flowestate_kit.wsgi` adapt it to a service. Nothing here imports
Flask unless the Flask adapter is imported.
"""

from flowestate_kit.answers import Denial
from flowestate_kit.judge import Bearer
from flowestate_kit.judge import CallerLimited
from flowestate_kit.judge import IdpUnavailable
from flowestate_kit.judge import Judge

__all__ = ["Bearer", "CallerLimited", "Denial", "IdpUnavailable", "Judge"]
