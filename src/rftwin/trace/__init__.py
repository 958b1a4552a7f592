"""Tracing with Sionna RT into cached PathSets (:mod:`rftwin.pathset`)."""
from rftwin.trace.tracer import AntennaSpec, SolverSettings, trace

__all__ = ["AntennaSpec", "SolverSettings", "trace"]
