"""rftwin: calibrated electromagnetic digital twins from a 3D scene and a few radio measurements."""
from rftwin.runtime import ensure_llvm as _ensure_llvm
from rftwin.runtime import quiet_openmp as _quiet_openmp

_ensure_llvm()
_quiet_openmp()
__version__ = "0.1.0"
