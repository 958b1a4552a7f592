"""Measurement planning: candidate radio positions and information-optimal link selection."""
from rftwin.plan.candidates import (
                                    SceneGeometry,
                                    candidate_grid,
                                    farthest_point_subset,
                                    point_triangle_distance,
                                    winding_number,
)
from rftwin.plan.design import (
                                    DesignResult,
                                    LinkSensitivity,
                                    ParameterPrior,
                                    evaluate_design,
                                    greedy_design,
                                    link_sensitivity,
                                    plan_links,
                                    random_designs,
                                    tx_groups,
)
from rftwin.plan.workflow import (
                                    MeasurementPlan,
                                    candidate_links,
                                    plan_command,
                                    plan_from_links,
                                    plan_measurements,
                                    scene_prior,
)

__all__ = ["DesignResult", "LinkSensitivity", "MeasurementPlan", "ParameterPrior", "SceneGeometry", "candidate_grid",
           "candidate_links", "plan_from_links",
           "evaluate_design", "farthest_point_subset", "greedy_design", "link_sensitivity", "plan_command",
           "plan_links", "plan_measurements", "point_triangle_distance", "random_designs", "scene_prior",
           "tx_groups", "winding_number"]
