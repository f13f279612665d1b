"""Reading Caffe files: deploy ``.prototxt`` text and binary ``.caffemodel`` weights, through the
minimal schema of :mod:`netdissect.models.caffe_schema`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import check_file, model_options


def read_prototxt(path: str | os.PathLike):
    """Parse a deploy ``.prototxt`` into a NetParameter; one-line ModelError on failure."""
    from google.protobuf import text_format

    from .caffe_schema import parse_prototxt

    path = Path(path)
    check_file(path, f"{model_options().spec} caffe:{path}", "a Caffe prototxt file")
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
    name = f"{model_options().weights} {path}"
    check_file(path, name, "a .caffemodel file")
    try:
        net = NetParameter.FromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        cause = (exc.strerror if isinstance(exc, OSError) else None) or str(exc).strip() or type(exc).__name__
        raise ModelError(f"{name} cannot be read as a binary Caffe .caffemodel: {cause.splitlines()[0]}") from None
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
