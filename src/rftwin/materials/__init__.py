"""Material priors (ITU-R P.2040) and differentiable material parameterisations."""
from rftwin.materials.itu import ITU_NAMES, ITU_TABLE, itu_eps_sigma, itu_mean, itu_power_law
from rftwin.materials.per_object import (
                                         FIT_QUANTITIES,
                                         INIT_STRATEGIES,
                                         MaterialPrior,
                                         PerObjectMaterials,
                                         draw_start_values,
                                         draw_starts,
                                         prior_from_labels,
                                         with_relative_ranges,
                                         with_roughness,
                                         with_scattering,
)

__all__ = ["FIT_QUANTITIES", "INIT_STRATEGIES", "ITU_NAMES", "ITU_TABLE", "MaterialPrior", "PerObjectMaterials",
           "draw_start_values", "draw_starts", "itu_eps_sigma", "itu_mean", "itu_power_law", "prior_from_labels",
           "with_relative_ranges", "with_roughness", "with_scattering"]
