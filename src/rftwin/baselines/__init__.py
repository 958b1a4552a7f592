"""Reference methods a calibrated twin is compared with: path-loss models and interpolation."""
from rftwin.baselines.gp import GPPathGain, fit_gp
from rftwin.baselines.pathloss import (
    SCENARIOS,
    LogDistanceFit,
    fit_log_distance,
    tr38901_path_gain_db,
)

__all__ = ["SCENARIOS", "GPPathGain", "LogDistanceFit", "fit_gp", "fit_log_distance", "tr38901_path_gain_db"]
