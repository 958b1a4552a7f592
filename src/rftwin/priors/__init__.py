"""Material priors: free-text labels -> ITU-R P.2040 materials (offline sentence encoder), VLM client."""
from rftwin.priors.labels import (
                                  DEFAULT_THRESHOLD,
                                  ENCODER_PACKAGE,
                                  ENCODER_REQUIREMENT,
                                  EncoderUnavailableError,
                                  LabelPrior,
                                  get_encoder,
                                  label_prior,
                                  label_priors,
                                  material_prior,
                                  normalize_label,
                                  scene_priors,
                                  to_material_prior,
                                  uniform_prior,
)
from rftwin.priors.vlm import (
                                  MaterialProposal,
                                  MeasurementConfig,
                                  PositionProposal,
                                  VLMClient,
                                  VLMError,
                                  validate_material_reply,
                                  validate_position_reply,
)

__all__ = ["DEFAULT_THRESHOLD", "ENCODER_PACKAGE", "ENCODER_REQUIREMENT", "EncoderUnavailableError", "LabelPrior",
           "MaterialProposal", "MeasurementConfig", "PositionProposal", "VLMClient", "VLMError", "get_encoder",
           "label_prior", "label_priors", "material_prior", "normalize_label", "scene_priors", "to_material_prior",
           "uniform_prior", "validate_material_reply", "validate_position_reply"]
