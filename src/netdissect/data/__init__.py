"""Concept datasets: the Broden reader and writer and the synthetic dataset generator."""

from .broden import BrodenDataset, BrodenMeta, collate_broden, decode_label_png
from .writer import BrodenWriter, LabelSpec

__all__ = ["BrodenDataset", "BrodenMeta", "collate_broden", "decode_label_png", "BrodenWriter", "LabelSpec"]
