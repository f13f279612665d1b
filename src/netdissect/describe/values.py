"""Each unit's image-level value on each probe image, for any layer.

A (B, C) output (a fully connected layer, logits, a CLS token) gives its activations; a
(B, C, H, W) map its spatial mean; a (B, N, C) token sequence the mean over its patch tokens
(the leading class/register tokens dropped as ``dissect --tokens`` does). The pass over the
images checkpoints its values, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..capture.hooks import LayerCapture
from ..capture.tokens import channels_last_to_map, tokens_to_map
from ..errors import DatasetError, ModelError, first_line
from ..models.base import LoadedModel
from ..runs.checkpoints import Checkpointer


def image_level(
    name: str,
    output,
    tokens: str | int = "auto",
    channels_last: bool = False,
    input_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A layer output as (B, C) image-level values, or a one-line :class:`ModelError`."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ModelError(f"layer {name!r} output is {type(output).__name__}, not a tensor")
    x = output.detach().float()
    if x.dim() == 2:
        return x
    if x.dim() == 3:
        return tokens_to_map(name, x, tokens, input_hw, x.shape[0]).mean(dim=(2, 3))
    if x.dim() == 4:
        return (channels_last_to_map(name, x) if channels_last else x).mean(dim=(2, 3))
    raise ModelError(f"layer {name!r} output {tuple(x.shape)} is not (B, C), (B, N, C) tokens or a (B, C, H, W) map")


class ImageFiles(Dataset):
    """Image files as the model's input and, with ``clip_size``, as [0, 1] RGB at that size for CLIP."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable, clip_size: int | None = None) -> None:
        self.paths, self.preprocess, self.clip_size = list(paths), preprocess, clip_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(f"image {path} not found") from None
        except Exception as exc:  # PIL raises many kinds
            raise DatasetError(f"cannot read image {path}: {first_line(exc)}") from None
        clip = torch.zeros(0)
        if self.clip_size:
            resized = rgb.resize((self.clip_size, self.clip_size), Image.Resampling.BICUBIC)
            clip = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return self.preprocess(rgb), clip


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(x.shape) for x, _ in items}
    if len(shapes) > 1:
        raise DatasetError(
            f"images of one batch differ in size for the model {sorted(shapes)}: pass --input-size N to resize them"
        )
    return torch.stack([x for x, _ in items]), torch.stack([c for _, c in items])


def unit_values(
    model: LoadedModel,
    layers: Sequence[str],
    paths: Sequence[Path],
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    tokens: str | int = "auto",
    channels_last: bool = False,
    clip=None,
    checkpointer: Checkpointer | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Per layer, the (N, U) image-level values of its units on ``paths``; with ``clip`` (an
    encoder with ``image_size`` and ``encode_images``) also the images' (N, D) CLIP embeddings."""
    from tqdm.auto import tqdm

    if not layers and clip is None:
        return {}, None
    data = ImageFiles(paths, model.preprocess, clip.image_size if clip is not None else None)
    state = (checkpointer.load() if checkpointer is not None else None) or {}
    start = int(state.get("batch", 0))
    values: dict[str, torch.Tensor] = dict(state.get("values", {}))
    embeddings: torch.Tensor | None = state.get("clip")
    n = len(data)
    total = -(-n // batch_size)
    subset = torch.utils.data.Subset(data, range(min(start * batch_size, n), n))
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    module = model.module.to(device).eval()
    with LayerCapture(module, layers) as capture:
        bar = tqdm(total=total, initial=start, desc="describe", unit="batch", disable=not progress)
        with bar:
            for i, (x, clip_x) in enumerate(loader, start):
                first = i * batch_size
                outputs = capture(x.to(device)) if layers else {}  # no layer: CLIP's embeddings only
                for name in layers:
                    v = image_level(name, outputs[name], tokens, channels_last, tuple(x.shape[-2:]))
                    if name not in values:
                        values[name] = torch.zeros(n, v.shape[1])
                    values[name][first : first + len(x)] = v.cpu()
                if clip is not None:
                    e = clip.encode_images(clip_x.to(device)).float().cpu()
                    if embeddings is None:
                        embeddings = torch.zeros(n, e.shape[1])
                    embeddings[first : first + len(x)] = e
                bar.update(1)
                if checkpointer is not None and checkpointer.due():
                    checkpointer.save({"batch": i + 1, "values": values, "clip": embeddings})
    arrays = {name: values[name].numpy() for name in layers}
    return arrays, embeddings.numpy() if embeddings is not None else None
