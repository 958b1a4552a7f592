"""Prediction of channels for new links from a (calibrated) twin."""
from rftwin.predict.predict import Prediction, WidebandGrid, channel_features, predict_channels, predict_links

__all__ = ["Prediction", "WidebandGrid", "channel_features", "predict_channels", "predict_links"]
