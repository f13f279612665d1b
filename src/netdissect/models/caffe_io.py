"""Reading Caffe files: deploy ``.prototxt`` text and binary ``.caffemodel`` weights, through the
minimal schema of :mod:`netdissect.models.caffe_schema`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError


def read_prototxt(path: str | os.PathLike):
    """Parse a deploy ``.prototxt`` into a NetParameter; one-line ModelError on failure."""
    from google.protobuf import text_format

    from .caffe_schema import parse_prototxt

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Caffe prototxt {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        return parse_prototxt(text)
    except text_format.ParseError as exc:
        raise ModelError(f"cannot parse Caffe prototxt {path}: {str(exc).splitlines()[0]}") from None


@dataclass
class CaffeBlob:
    data: np.ndarray
    shape: tuple[int, ...]
    legacy: bool  # shape from the deprecated num/channels/height/width fields


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[CaffeBlob]]:
    """Read the parameter blobs of a binary ``.caffemodel``: layer name -> blobs."""
    from google.protobuf.message import DecodeError

    from .caffe_schema import NetParameter

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Caffe weights file {path} does not exist")
    try:
        net = NetParameter.FromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(
            f"cannot read {path} as a binary Caffe .caffemodel: {str(exc).strip() or type(exc).__name__}"
        ) from None
    result: dict[str, list[CaffeBlob]] = {}
    for layer in list(net.layer) + list(net.layers):
        if not layer.blobs or layer.name in result:
            continue
        blobs = []
        for i, blob in enumerate(layer.blobs):
            if blob.HasField("shape"):
                shape, legacy = tuple(int(d) for d in blob.shape.dim), False
            else:
                shape, legacy = (blob.num, blob.channels, blob.height, blob.width), True
            data = np.asarray(blob.data, dtype=np.float32)
            if data.size == 0 and len(blob.double_data):
                data = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
            if data.size != math.prod(shape):
                raise ModelError(f"{path}: blob {i} of layer {layer.name!r} holds {data.size} values for shape {shape}")
            blobs.append(CaffeBlob(data, shape, legacy))
        result[layer.name] = blobs
    return result
