"""Concept datasets: the Broden reader and writer, prepared (pre-decoded) copies, and the synthetic dataset generator."""

from .broden import BrodenDataset, BrodenMeta, collate_broden, decode_label_png
from .prepared import PreparedData, default_cache_dir, find_prepared, open_prepared, prepare_dataset
from .writer import BrodenWriter, LabelSpec

__all__ = [
    "BrodenDataset",
    "BrodenMeta",
    "BrodenWriter",
    "LabelSpec",
    "PreparedData",
    "collate_broden",
    "decode_label_png",
    "default_cache_dir",
    "find_prepared",
    "open_prepared",
    "prepare_dataset",
]
