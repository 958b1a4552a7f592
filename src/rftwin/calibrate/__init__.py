"""Calibration: targets and channel features, losses, the multi-start optimisation loop (gain offset, MAP prior,
checkpoints) and its uncertainty report."""
from rftwin.calibrate.jacobian import jacobian
from rftwin.calibrate.loop import OFFSET_MODES, OPTIMIZERS, CalibrationConfig, CalibrationResult, calibrate
from rftwin.calibrate.losses import (
    FEATURE_METRICS,
    LOSSES,
    LossTerm,
    db_offset,
    mse_db,
    nae,
    parse_terms,
    smape,
)
from rftwin.calibrate.objective import PriorStats, objective
from rftwin.calibrate.posterior import PosteriorSamples, sample_posterior
from rftwin.calibrate.problem import Features, Targets, simulate_features, simulate_path_gain_db
from rftwin.calibrate.uncertainty import Uncertainty, laplace

__all__ = ["FEATURE_METRICS", "LOSSES", "OFFSET_MODES", "OPTIMIZERS", "CalibrationConfig",
           "CalibrationResult", "Features", "LossTerm", "PosteriorSamples", "PriorStats", "Targets", "Uncertainty",
           "calibrate", "db_offset", "jacobian", "laplace", "mse_db", "nae", "objective", "parse_terms",
           "sample_posterior", "smape", "simulate_features", "simulate_path_gain_db"]
