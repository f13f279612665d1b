"""How a model wants its input: size, channel order, pixel scale, mean and std."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Turns a PIL image into a model input tensor (3, H, W).

    The image keeps the dataset's resolution unless ``input_size`` is given, in which case
    the whole image is resized (never cropped: activations must stay aligned with the
    segmentations). Pixels are scaled to ``[0, pixel_scale]``, optionally reordered to BGR,
    then normalised as ``(x - mean) / std`` with mean and std in the same units and order.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    pixel_scale: float = 1.0
    input_size: tuple[int, int] | None = None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The model input for an RGB image: ``normalize(resize(image))``."""
        return self.normalize(self.resize(image))

    def resize(self, image: Image.Image) -> np.ndarray:
        """The RGB image's pixels at the model's input size: uint8 (H, W, 3).

        Resized as a whole (bilinear) when ``input_size`` is set and differs, else as they are.
        """
        if self.input_size is not None and image.size != (self.input_size[1], self.input_size[0]):
            image = image.resize((self.input_size[1], self.input_size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) RGB pixels as the normalised float32 model input (3, H, W).

        Computes ``(float32(x) * (pixel_scale / 255) - mean) / std`` in float32, in place.
        """
        chw = np.asarray(pixels, dtype=np.uint8).transpose(2, 0, 1)
        if self.bgr:
            chw = chw[::-1]
        x = np.empty(chw.shape, dtype=np.float32)
        x[...] = chw
        x *= self.pixel_scale / 255.0
        x -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        x /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return torch.from_numpy(x)
