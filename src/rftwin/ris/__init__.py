"""Reconfigurable intelligent surfaces: reradiation model (Tang et al. 2021), geometry and visibility, placement
ranking. ``physics`` is pure torch; ``geometry`` casts rays in the twin's Mitsuba scene."""
from rftwin.ris.physics import RisSpec

__all__ = ["RisSpec"]
