"""Turn transformer layer outputs into (B, C, h, w) feature maps.

* **Token sequences** ``(B, N, C)`` (ViT, DeiT, BEiT, DINO...): the ``N`` tokens are some
  leading extra tokens (a class token, distillation token, register tokens) followed by the
  patch tokens in row-major order. The extra tokens are dropped and the patch tokens become an
  ``h x w`` map. How many leading tokens to drop is the ``tokens`` option:

  - ``"auto"`` (default): the fewest leading tokens (0 to :data:`MAX_AUTO_PREFIX`) whose removal
    leaves a grid with the input image's aspect ratio (a square for square images: 197 tokens at
    224x224 -> drop 1, 14x14; 261 -> drop 5 (class + 4 registers), 16x16). A tiny grid can be
    ambiguous (1 + 4 registers + 2x2 = 9 tokens would read as 3x3): give the number then;
  - an integer ``N``: drop exactly ``N`` leading tokens (0: every token is a patch);
  - ``"off"``: token outputs are refused, as any non-map output.

  Tokens must be batch-first (``(B, N, C)``, as in torchvision and timm); sequence-first
  ``(N, B, C)`` outputs are refused with a clear error.
* **Channels-last maps** ``(B, H, W, C)`` (torchvision's and timm's Swin stages): with
  ``channels_last=True`` every 4-D layer output is read as ``(B, H, W, C)`` and permuted.
  Without it, 4-D outputs are taken as ``(B, C, H, W)``; :func:`looks_channels_last` lets
  ``netdissect layers`` point out the ones that look channels-last.
"""

from __future__ import annotations

import math

import torch

from ..errors import ModelError, OptionError

#: The most leading (non-patch) tokens ``tokens="auto"`` will drop.
MAX_AUTO_PREFIX = 16


def parse_tokens(value: str | int) -> str | int:
    """Validate a ``tokens`` option: ``"auto"``, ``"off"`` or a count >= 0 (int or digits)."""
    if isinstance(value, bool):
        raise OptionError(f"--tokens must be auto, off or a number of leading tokens >= 0, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise OptionError(f"--tokens must be auto, off or a number of leading tokens >= 0, got {value}")
        return value
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    if text.isdigit():
        return int(text)
    raise OptionError(f"--tokens must be auto, off or a number of leading tokens >= 0, got {value!r}")


def _fits(h: int, w: int, input_hw: tuple[int, int] | None) -> int | None:
    """How far an h x w grid is from the input's aspect ratio (None: too far; 0: exact)."""
    if input_hw is None:
        return 0 if h == w else None
    H, W = input_hw
    error = abs(h * W - w * H)
    # patch grids are floor(H / p) x floor(W / p): allow less than one cell of rounding
    return error if error < max(H, W) else None


def _grid(m: int, input_hw: tuple[int, int] | None) -> tuple[int, int] | None:
    """The h x w factorisation of ``m`` tokens that best fits the input's aspect ratio."""
    if m < 1:
        return None
    best = None
    for h in range(1, math.isqrt(m) + 1):
        if m % h:
            continue
        for hh, ww in ((h, m // h), (m // h, h)):
            error = _fits(hh, ww, input_hw)
            if error is not None and (best is None or error < best[0]):
                best = (error, hh, ww)
    return None if best is None else (best[1], best[2])


def token_grid(n: int, input_hw: tuple[int, int] | None, tokens: str | int = "auto") -> tuple[int, int, int] | None:
    """``(leading tokens to drop, h, w)`` for ``n`` tokens, or None when no grid fits."""
    tokens = parse_tokens(tokens)
    if tokens == "off":
        return None
    candidates = range(0, min(MAX_AUTO_PREFIX, n - 1) + 1) if tokens == "auto" else [int(tokens)]
    for k in candidates:
        grid = _grid(n - k, input_hw)
        if grid is not None:
            return (k, *grid)
    return None


def tokens_to_map(
    name: str,
    x: torch.Tensor,
    tokens: str | int = "auto",
    input_hw: tuple[int, int] | None = None,
    batch: int | None = None,
) -> torch.Tensor:
    """A ``(B, N, C)`` token output as a ``(B, C, h, w)`` map of its patch tokens.

    ``input_hw`` is the model input's (H, W), used to recognise non-square grids (None:
    square); ``batch`` the input's batch size, to tell a batch-first layout from others.
    Raises a one-line :class:`ModelError` naming the layer and the shape when it cannot.
    """
    shape = tuple(x.shape)
    tokens = parse_tokens(tokens)
    if tokens == "off":
        raise ModelError(
            f"layer {name!r} output {shape} is a token sequence, not a (B, C, H, W) map; "
            "--tokens off refuses those (use --tokens auto or a number of leading tokens)"
        )
    if x.dim() != 3:
        raise ModelError(f"layer {name!r} output {shape} is neither a (B, C, H, W) map nor (B, N, C) tokens")
    if batch is not None and shape[0] != batch:
        layout = " (it looks sequence-first, (N, B, C))" if shape[1] == batch else ""
        raise ModelError(
            f"layer {name!r} output {shape} is not a batch-first (B, N, C) token sequence for a batch "
            f"of {batch}{layout}"
        )
    n = shape[1]
    found = token_grid(n, input_hw, tokens)
    if found is None:
        size = f"{input_hw[0]}x{input_hw[1]}" if input_hw else "square"
        tried = (
            f"dropping 0 to {min(MAX_AUTO_PREFIX, n - 1)} leading tokens"
            if tokens == "auto"
            else f"dropping {tokens} leading token(s)"
        )
        raise ModelError(
            f"layer {name!r} output {shape}: its {n} tokens form no patch grid for a {size} input "
            f"(tried {tried}); set --tokens to the number of leading class/register tokens"
        )
    k, h, w = found
    patches = x[:, k:, :]
    return patches.transpose(1, 2).reshape(shape[0], shape[2], h, w).contiguous()


def channels_last_to_map(name: str, x: torch.Tensor) -> torch.Tensor:
    """A ``(B, H, W, C)`` output as a ``(B, C, H, W)`` map."""
    if x.dim() != 4:
        raise ModelError(f"layer {name!r} output {tuple(x.shape)} is not a channels-last (B, H, W, C) map")
    return x.permute(0, 3, 1, 2).contiguous()


def looks_channels_last(shape: tuple, input_hw: tuple[int, int]) -> bool:
    """Whether a 4-D output shape reads better as (B, H, W, C) than as (B, C, H, W).

    True when dims 1-2 have the input's aspect ratio and dims 2-3 do not (a Swin stage at a
    square input: ``(1, 56, 56, 96)``). A heuristic for hints only, never applied silently.
    """
    if len(shape) != 4:
        return False
    H, W = input_hw
    first = shape[1] <= H and shape[2] <= W and _fits(shape[1], shape[2], input_hw) is not None
    last = _fits(shape[2], shape[3], input_hw) is not None
    return first and not last
