"""Pure-tensor physics: slab coefficients, the Jones-chain channel engine, channel quantities."""
from rftwin.physics.channel import (
           link_sum,
           path_gain,
           path_power,
           subcarrier_frequencies,
           to_db,
)
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.features import cfr_from_paths, delay_moments
from rftwin.physics.slab import complex_permittivity, slab_coefficients

__all__ = ["MaterialValues", "cfr_from_paths", "complex_permittivity", "delay_moments", "link_sum", "path_coefficients",
           "path_gain", "path_power", "slab_coefficients", "subcarrier_frequencies", "to_db"]
