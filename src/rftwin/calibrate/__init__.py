"""Calibration: losses, targets, the multi-start optimisation loop and its uncertainty report."""
from rftwin.calibrate.loop import (OPTIMIZERS, CalibrationConfig, CalibrationResult, Uncertainty, calibrate, jacobian,
                                   laplace)
from rftwin.calibrate.losses import LOSSES, db_offset, mse_db, nae
from rftwin.calibrate.problem import Targets, simulate_path_gain_db

__all__ = ["CalibrationConfig", "CalibrationResult", "LOSSES", "OPTIMIZERS", "Targets", "Uncertainty", "calibrate",
           "db_offset", "jacobian", "laplace", "mse_db", "nae", "simulate_path_gain_db"]
