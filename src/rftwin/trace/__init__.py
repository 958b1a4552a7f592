"""Tracing with Sionna RT into cached PathSets."""
from rftwin.trace.pathset import DIFFRACTION, DIFFUSE, NONE, REFRACTION, SPECULAR, PathSet, concat
from rftwin.trace.tracer import AntennaSpec, SolverSettings, trace

__all__ = ["AntennaSpec", "DIFFRACTION", "DIFFUSE", "NONE", "PathSet", "REFRACTION", "SPECULAR", "SolverSettings",
           "concat", "trace"]
