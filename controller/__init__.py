"""The furnace controller: recipes, the scan cycle, batch records and the ``furnace`` CLI.

Only ``software_version`` lives here, so that the CLI's front door can tell its version
without importing anything of the controller.
"""

from __future__ import annotations

__all__ = ["software_version"]


def software_version() -> str:
    """The installed package version, or ``"unknown"`` from a bare checkout. Reads the
    package metadata (imported here, when asked: it costs more than ``furnace --help``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("furnace")
    except PackageNotFoundError:
        return "unknown"
