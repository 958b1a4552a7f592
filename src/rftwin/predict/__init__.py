"""Prediction of channels for new links from a (calibrated) twin."""
from rftwin.predict.predict import predict_links

__all__ = ["predict_links"]
