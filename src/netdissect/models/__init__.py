"""Model sources and their preprocessing."""

from .demo import DemoNet, demo_model
from .loading import LoadedModel, load_checkpoint, load_model, model_fingerprint
from .preprocess import Preprocess

__all__ = ["DemoNet", "LoadedModel", "Preprocess", "demo_model", "load_checkpoint", "load_model", "model_fingerprint"]
