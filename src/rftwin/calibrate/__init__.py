"""Calibration: targets and channel features, losses, the multi-start optimisation loop (gain offset, MAP prior,
checkpoints) and its uncertainty report."""
from rftwin.calibrate.loop import (
    OFFSET_MODES,
    OPTIMIZERS,
    CalibrationConfig,
    CalibrationResult,
    PriorStats,
    Uncertainty,
    calibrate,
    jacobian,
    laplace,
    objective,
)
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
from rftwin.calibrate.posterior import PosteriorSamples, sample_posterior
from rftwin.calibrate.problem import Features, Targets, simulate_features, simulate_path_gain_db

__all__ = ["FEATURE_METRICS", "LOSSES", "OFFSET_MODES", "OPTIMIZERS", "CalibrationConfig",
           "CalibrationResult", "Features", "LossTerm", "PosteriorSamples", "PriorStats", "Targets", "Uncertainty",
           "calibrate", "db_offset", "jacobian", "laplace", "mse_db", "nae", "objective", "parse_terms",
           "sample_posterior", "smape", "simulate_features", "simulate_path_gain_db"]
