"""``IMGPKG_REGISTRY_*`` variables that are not credential sets, and who reads each.

The environment source refuses any ``IMGPKG_REGISTRY_*`` name it does not know, so that a typo
(``IMGPKG_REGISTRY_PASSWROD``) is an error rather than a silently missing password. A few names
with that prefix belong to other sources; they are listed here, once, so that the environment
source skips them without knowing any cloud, and the cloud that reads one takes its name from
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

AZURE_CR_CONFIG: Final = "IMGPKG_REGISTRY_AZURE_CR_CONFIG"

NOT_CREDENTIAL_SETS: Final[Mapping[str, str]] = {
    AZURE_CR_CONFIG: "the Azure config file (keychain 'aks')",
}
"""Variable -> what it is and which source reads it."""
