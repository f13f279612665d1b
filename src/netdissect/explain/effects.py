"""Per-image unit effects: how much an image's top class loses when one unit of the layer is zeroed.

The ablation engine does the work (:mod:`netdissect.ablation`): the part of the network before
the layer runs once per batch of images (:func:`~netdissect.ablation.split.split_model`), and
the layer's output, once per unit with that unit set to 0 (plus once as it is), goes through the
rest of the network in chunks of at most ``max_rows`` images
(:func:`~netdissect.ablation.compute.score_configs`). The probabilities are exact: the same
softmax a forward pass with the unit zeroed gives, batched.

Units are the channels of the layer, as in the dissection: axis 1 of a ``(B, C, H, W)`` map,
the last axis of ``(B, N, C)`` tokens (zeroed in every token, class token included) or of a
channels-last ``(B, H, W, C)`` map.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..ablation import compute
from ..ablation.split import Split, split_model
from ..capture.hooks import as_feature_map
from ..errors import ModelError, first_line


class UnitsOnAxis1:
    """A split whose layer output has its units on axis ``axis``, seen with the units on axis 1."""

    def __init__(self, split: Split, axis: int) -> None:
        self.split, self.axis = split, axis
        self.path, self.reason = split.path, split.reason

    def prefix(self, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
        state, out = self.split.prefix(x)
        return state, out.movedim(self.axis, 1)

    def suffix(self, state: Any, replaced: torch.Tensor, copies: int) -> torch.Tensor:
        return self.split.suffix(state, replaced.movedim(1, self.axis), copies)


class LayerRunner:
    """The model cut at ``layer``: the layer's maps and every unit's effect for a batch of images."""

    def __init__(
        self,
        module: nn.Module,
        layer: str,
        first: torch.Tensor,
        tokens: str | int = "auto",
        channels_last: bool = False,
        use_fx: bool = True,
    ) -> None:
        self.layer, self.tokens, self.channels_last = layer, tokens, channels_last
        try:
            split = split_model(module, layer, first, use_fx=use_fx)
            with torch.no_grad():
                _, out = split.prefix(first)
        except ModelError:
            raise
        except Exception as exc:  # the model itself failed on the input
            raise ModelError(f"the model failed on input of shape {tuple(first.shape)}: {first_line(exc)}") from exc
        self.feature_map(out, first)  # a layer without maps fails here, with dissect's message
        axis = 1
        if out.dim() == 3:  # (B, N, C) tokens: the units are the channels
            axis = 2
        elif out.dim() == 4 and channels_last:
            axis = 3
        self.axis = axis
        self.split: Split = split if axis == 1 else cast(Split, UnitsOnAxis1(split, axis))

    @property
    def path(self) -> str:
        """``fx`` or ``hook``: how the rest of the network runs (see :mod:`netdissect.ablation.split`)."""
        return self.split.path

    def feature_map(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The layer's raw output as ``(B, C, h, w)`` maps, as the dissection reads it."""
        return as_feature_map(self.layer, out, self.tokens, self.channels_last, (x.shape[-2], x.shape[-1]), x.shape[0])

    @torch.no_grad()
    def run(self, x: torch.Tensor, max_rows: int = 128) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """For a batch ``x``: the layer's maps ``(B, C, h, w)``, the model's probabilities ``(B, outputs)``
        and each unit's effect ``(B, C)``: the drop of the probability of the image's top class
        when the unit alone is zeroed (float64)."""
        try:
            state, out = self.split.prefix(x)
            raw = out.movedim(1, self.axis)  # the output as the layer gave it
            maps = self.feature_map(raw, x)
            logits = self.split.suffix(state, out, 1)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the model failed on input of shape {tuple(x.shape)}: {first_line(exc)}") from exc
        probabilities = torch.softmax(logits.float(), -1).double().cpu().numpy()
        top = torch.from_numpy(probabilities.argmax(1))
        width = out.shape[1]
        keep = compute.single_unit_configs(list(range(1, width + 1)), width)
        batch = x.shape[0]
        _, prob = compute.score_configs(
            self.split, state, out, torch.zeros(width), keep, top, torch.arange(batch), batch, max_rows
        )
        prob_np = prob.numpy()  # (1 + C, B): row 0 nothing removed, row u unit u zeroed
        return maps.float(), probabilities, (prob_np[0][None, :] - prob_np[1:]).T.copy()
