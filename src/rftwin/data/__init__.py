"""Link and measurement records: file formats and validation."""
from rftwin.data.measurements import (
    FEATURE_COLUMNS,
    Links,
    MeasurementError,
    Measurements,
    Problem,
    points_inside_mesh,
    read_labels,
    read_links,
    read_measurements,
    validate_labels,
    write_measurements,
)
from rftwin.data.mpc import (
    MPCMatch,
    MPCTable,
    match_mpcs,
    match_mpcs_to_rows,
    mpcs_from_arrays,
    mpcs_from_paths,
    read_mpcs,
    write_mpcs,
)
from rftwin.data.wideband import (
    Wideband,
    WidebandLink,
    read_wideband,
    simulate_wideband,
    write_wideband,
)

__all__ = ["FEATURE_COLUMNS", "Links", "MPCMatch", "MPCTable", "MeasurementError", "Measurements", "Problem",
           "Wideband", "WidebandLink", "match_mpcs", "match_mpcs_to_rows", "mpcs_from_arrays",
           "mpcs_from_paths", "points_inside_mesh", "read_labels", "read_links", "read_measurements",
           "read_mpcs", "read_wideband", "simulate_wideband", "validate_labels", "write_measurements",
           "write_mpcs", "write_wideband"]
