"""Which package manager's version order each distribution's advisories are written in."""

from __future__ import annotations

from .records import Distro
from .versions import Manager

__all__ = ["manager_of"]

_MANAGERS = {
    Distro.DEBIAN: Manager.DPKG,
    Distro.UBUNTU: Manager.DPKG,
    Distro.ALPINE: Manager.APK,
    Distro.ROCKY: Manager.RPM,
    Distro.ALMA: Manager.RPM,
    Distro.RHEL: Manager.RPM,
    Distro.OPENSUSE: Manager.RPM,
    Distro.SUSE: Manager.RPM,
    Distro.AZURE_LINUX: Manager.RPM,
}


def manager_of(distro: Distro) -> Manager | None:
    """None for Distro.OTHER (language ecosystems), which no distro matcher reads."""
    return _MANAGERS.get(distro)
