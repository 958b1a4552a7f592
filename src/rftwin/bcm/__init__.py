"""Bayesian channel map (BCM) and uncertainty-aware calibration (seed 003, WEDT).

features -> trend + GP residual (the BCM) -> NLL calibration of any material model against it.
"""
from rftwin.bcm.calibrate import (
           NllConfig,
           NllResult,
           calibrate_nll,
           link_channel_parameters,
)
from rftwin.bcm.features import (
           FADE_FEATURES,
           PATH_FEATURES,
           FeatureScaler,
           GeometryFeatures,
           geometry_features,
)
from rftwin.bcm.gp import GpConfig, ResidualGp
from rftwin.bcm.map import BayesianChannelMap, BcmConfig, ChannelMap
from rftwin.bcm.nll import EmaBias, batch_gain_bias, bcm_nll, gaussian_nll
from rftwin.bcm.sampling import SAMPLING_MODES, sample_measurements
from rftwin.bcm.trend import (
           LogDistanceTrend,
           PowerLawTrend,
           fit_log_distance,
           fit_power_law,
)

__all__ = [
           "FADE_FEATURES",
           "PATH_FEATURES",
           "SAMPLING_MODES",
           "BayesianChannelMap",
           "BcmConfig",
           "ChannelMap",
           "EmaBias",
           "FeatureScaler",
           "GeometryFeatures",
           "GpConfig",
           "LogDistanceTrend",
           "NllConfig",
           "NllResult",
           "PowerLawTrend",
           "ResidualGp",
           "batch_gain_bias",
           "bcm_nll",
           "calibrate_nll",
           "fit_log_distance",
           "fit_power_law",
           "gaussian_nll",
           "geometry_features",
           "link_channel_parameters",
           "sample_measurements",
]
