"""Surface-roughness classes -> scattering-coefficient priors (VisRFTwin, seed 002, Table 2).

VisRFTwin maps a vision-inferred roughness level of a surface to an interval of the (lambertian) scattering
coefficient S, using mmWave measurements that relate the arithmetic mean roughness Ra to diffuse scattering:

| class (level)          | example surface      | Ra (um) | S         |
|------------------------|----------------------|---------|-----------|
| very_smooth (1)        | wall plasterboard    | 2.309   | 0.07-0.10 |
| smooth (2)             | chipboard            | 2.695   | 0.10-0.20 |
| moderately_smooth (3)  | cardboard            | 3.252   | 0.10-0.20 |
| rough (4)              | ceiling plasterboard | 11.85   | 0.20-0.40 |
| very_rough (5)         | brick                | 14.68   | 0.30-0.50 |

The values come from mmWave measurements; S grows with roughness relative to the wavelength,
so they are optimistic (too high) priors at lower frequencies. Use them as initial values / prior ranges for
calibration, not as ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RoughnessClass:
    """One row of the prior table: ``ra_um`` mean arithmetic roughness (micrometres), S interval [s_min, s_max]."""

    name: str
    level: int
    example: str
    ra_um: float
    s_min: float
    s_max: float

    @property
    def s_mean(self) -> float:
        """Midpoint of the scattering-coefficient interval (the default prior value)."""
        return 0.5 * (self.s_min + self.s_max)


ROUGHNESS_CLASSES: tuple[RoughnessClass, ...] = (
    RoughnessClass("very_smooth", 1, "wall plasterboard", 2.309, 0.07, 0.10),
    RoughnessClass("smooth", 2, "chipboard", 2.695, 0.10, 0.20),
    RoughnessClass("moderately_smooth", 3, "cardboard", 3.252, 0.10, 0.20),
    RoughnessClass("rough", 4, "ceiling plasterboard", 11.85, 0.20, 0.40),
    RoughnessClass("very_rough", 5, "brick", 14.68, 0.30, 0.50),
)

# Alternative names accepted by :func:`roughness_class` (surface examples and ITU material names of Table 2)
_ALIASES = {
    "wall_plasterboard": "very_smooth", "plasterboard": "very_smooth",
    "chipboard": "smooth",
    "cardboard": "moderately_smooth",
    "ceiling_plasterboard": "rough", "ceiling_board": "rough",
    "brick": "very_rough",
}


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def roughness_class(name_or_level: str | int) -> RoughnessClass:
    """Look up a class by name (``"rough"``), level (1..5) or an example surface (``"brick"``)."""
    if isinstance(name_or_level, int) and not isinstance(name_or_level, bool):
        for c in ROUGHNESS_CLASSES:
            if c.level == name_or_level:
                return c
        raise KeyError(f"roughness level {name_or_level} not in 1..{len(ROUGHNESS_CLASSES)}")
    key = _ALIASES.get(_key(str(name_or_level)), _key(str(name_or_level)))
    for c in ROUGHNESS_CLASSES:
        if c.name == key:
            return c
    raise KeyError(f"unknown roughness class '{name_or_level}'; classes: "
                   + ", ".join(c.name for c in ROUGHNESS_CLASSES) + "; surfaces: " + ", ".join(sorted(_ALIASES)))


def roughness_class_from_ra(ra_um: float) -> RoughnessClass:
    """The class whose Ra is nearest to ``ra_um`` (micrometres) on a log scale."""
    if not ra_um > 0:
        raise ValueError(f"Ra must be positive, got {ra_um}")
    return min(ROUGHNESS_CLASSES, key=lambda c: abs(math.log(c.ra_um / ra_um)))


def scattering_prior(name_or_level: str | int | float) -> tuple[float, tuple[float, float]]:
    """Scattering-coefficient prior (mean, (min, max)) for a class name, level, surface, or an Ra value (float,
    micrometres)."""
    if isinstance(name_or_level, float):
        c = roughness_class_from_ra(name_or_level)
    else:
        c = roughness_class(name_or_level)
    return c.s_mean, (c.s_min, c.s_max)


__all__ = ["ROUGHNESS_CLASSES", "RoughnessClass", "roughness_class", "roughness_class_from_ra", "scattering_prior"]
