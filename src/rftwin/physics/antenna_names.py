"""Names of the antenna patterns and polarisations rftwin accepts (those of Sionna RT's ``PlanarArray``).

Pure Python, so the command line checks ``pattern=`` / ``polarization=`` of ``--tx-array`` / ``--rx-array``
before torch and Sionna load; :class:`rftwin.physics.arrays.ArraySpec` checks with the same function.
"""
from __future__ import annotations

#: polarisation -> patterns per element (V, H: one; VH, cross: two)
POLARIZATIONS = {"V": 1, "H": 1, "VH": 2, "cross": 2}
PATTERNS = ("iso", "dipole", "hw_dipole", "tr38901")


def check_antenna(pattern: str, polarization: str) -> None:
    """ValueError naming the unknown ``pattern`` or ``polarization`` and the accepted names."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown antenna pattern '{pattern}'; expected one of {', '.join(PATTERNS)}")
    if polarization not in POLARIZATIONS:
        raise ValueError(f"unknown polarization '{polarization}'; expected one of {', '.join(POLARIZATIONS)}")


__all__ = ["PATTERNS", "POLARIZATIONS", "check_antenna"]
