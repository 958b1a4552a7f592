"""Measurement planning: information-optimal link selection among candidate links (:mod:`rftwin.scene.candidates`)."""
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

__all__ = ["DesignResult", "LinkSensitivity", "MeasurementPlan", "ParameterPrior", "candidate_links",
           "evaluate_design", "greedy_design", "link_sensitivity", "plan_command", "plan_from_links", "plan_links",
           "plan_measurements", "random_designs", "scene_prior", "tx_groups"]
