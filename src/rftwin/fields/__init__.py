"""Spatially varying neural material fields (Fourier-feature MLP, hash grid) trained through the channel engine."""
from rftwin.fields.base import MaterialField
from rftwin.fields.evaluate import (
    MaterialErrors,
    field_values,
    interaction_points,
    link_errors,
    material_errors,
    normal_reflection,
)
from rftwin.fields.fourier import FourierField
from rftwin.fields.hashgrid import HashGridField
from rftwin.fields.readout import READOUTS, PointMaterials, PowerLawBounds
from rftwin.fields.train import FieldTrainConfig, FieldTrainResult, train_field

__all__ = ["FieldTrainConfig", "FieldTrainResult", "FourierField", "HashGridField", "MaterialErrors",
           "MaterialField", "PointMaterials", "PowerLawBounds", "READOUTS", "field_values", "interaction_points",
           "link_errors", "material_errors", "normal_reflection", "train_field"]
