"""The twin API: ``Twin.load(scene)``, ``Calibrator(spec).fit(twin, measurements) -> CalibratedTwin``.

``Twin`` is the scene model (:class:`rftwin.scene.load.TwinScene`: geometry, objects and their radio materials);
``CalibrationSpec`` says how a calibration is made; ``CalibratedTwin`` holds the result and its uses (predict,
radio maps, save / load).
"""
from rftwin.calibrate.spec import CalibrationSpec, SpecError
from rftwin.scene.load import TwinScene as Twin
from rftwin.twin.calibrated import CalibratedTwin
from rftwin.twin.calibrator import Calibrator

__all__ = ["CalibratedTwin", "CalibrationSpec", "Calibrator", "SpecError", "Twin"]
