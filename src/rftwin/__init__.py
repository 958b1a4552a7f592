"""rftwin: calibrated electromagnetic digital twins from a 3D scene and a few radio measurements."""
from rftwin.runtime import ensure_llvm as _ensure_llvm

_ensure_llvm()
__version__ = "0.1.0"
