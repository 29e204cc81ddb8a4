"""Microsoft Entra ID connector: msal client-credentials tokens and Microsoft Graph delta queries.

``settings`` holds the config keys, ``token`` the msal side, ``transport`` the TLS/timeout session, ``throttle``
the waits, ``delta`` the paging of one round, ``records`` the folding of pages into records, and ``connector`` the
read itself (snapshot first, deltas after, full resync when Graph asks for it).
"""

from connectors.azure.connector import Connector
from connectors.azure.settings import Settings

__all__ = ["Connector", "Settings"]
