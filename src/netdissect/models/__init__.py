"""Model sources (``--model SPEC``), their preprocessing, and the bundled demo CNN."""

from .base import LoadedModel, ModelSource, load_checkpoint, model_fingerprint, register_source
from .demo import DemoNet, demo_model
from .loading import list_sources, load_model
from .preprocess import Preprocess

__all__ = [
    "DemoNet",
    "LoadedModel",
    "ModelSource",
    "Preprocess",
    "demo_model",
    "list_sources",
    "load_checkpoint",
    "load_model",
    "model_fingerprint",
    "register_source",
]
