"""Material priors (ITU-R P.2040) and differentiable material parameterisations.

The names below load their modules on first use, so the pure table (:mod:`rftwin.materials.itu`) imports without
torch: the command line checks material labels with it before any heavy import.
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.materials.itu": ("ITU_NAMES", "ITU_TABLE", "itu_eps_sigma", "itu_mean", "itu_power_law"),
    "rftwin.materials.per_object": ("FIT_QUANTITIES", "INIT_STRATEGIES", "MaterialPrior", "PerObjectMaterials",
                                    "draw_start_values", "draw_starts", "prior_from_labels", "with_relative_ranges",
                                    "with_roughness", "with_scattering"),
})
