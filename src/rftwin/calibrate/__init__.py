"""Calibration: targets and channel features, losses, the multi-start optimisation loop (gain offset, MAP prior,
checkpoints) and its uncertainty report.

Names are imported on first use (PEP 562), so that light modules of the package (``rftwin.calibrate.spec``) load
without torch: command-line argument errors come back at once.
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.calibrate.loop": ("OFFSET_MODES", "OPTIMIZERS", "CalibrationConfig", "CalibrationResult", "calibrate"),
    "rftwin.calibrate.objectives": ("PriorStats", "objective"),
    "rftwin.calibrate.jacobians": ("jacobian",),
    "rftwin.calibrate.uncertainty": ("Uncertainty", "laplace"),
    "rftwin.calibrate.losses": ("FEATURE_METRICS", "LOSSES", "LossTerm", "db_offset", "mse_db", "nae", "parse_terms",
                                "smape"),
    "rftwin.calibrate.posterior": ("PosteriorSamples", "sample_posterior"),
    "rftwin.calibrate.problem": ("Features", "Targets", "simulate_features", "simulate_path_gain_db"),
})
