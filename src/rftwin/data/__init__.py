"""Link and measurement records: file formats and validation."""
from rftwin.data.measurements import (
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

__all__ = ["Links", "MeasurementError", "Measurements", "Problem", "points_inside_mesh", "read_labels",
           "read_links", "read_measurements", "validate_labels", "write_measurements"]
