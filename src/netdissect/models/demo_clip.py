"""The demo CLIP: a tiny image and text encoder pair trained contrastively on the synthetic dataset.

Its weights ship with the package (``demo_clip.pt``, made by ``scripts/train_demo_clip.py``) so
``netdissect describe`` runs offline with ``--clip demo``. The image encoder is four 3x3 conv
blocks on 64 x 64 RGB inputs in ``[0, 1]``; the text encoder is a bag of words over the
synthetic dataset's label names (``red-c``, ``ball``, ``kitchen-s`` ...): the mean of the words'
embeddings, then a linear map. Words are split at spaces, commas and semicolons and lower-cased;
a colour or scene may drop its suffix (``red`` reads as ``red-c``, ``beach`` as ``beach-s``);
any other unknown word maps to the ``<unk>`` embedding.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .base import load_state, torch_load

WEIGHTS = Path(__file__).with_name("demo_clip.pt")
#: The demo CLIP's input resolution (images of other sizes are resized by the caller).
IMAGE_SIZE = 64
EMBED_DIM = 64
UNK = "<unk>"
#: Suffixes a bare word may lack: ``red`` -> ``red-c`` (colours), ``beach`` -> ``beach-s`` (scenes).
SUFFIXES = ("-c", "-s")
_SPLIT = re.compile(r"[\s,;]+")


def words_of(text: str) -> list[str]:
    """The words of a text: split at spaces, commas and semicolons, lower-cased, outer punctuation stripped."""
    return [w for w in (part.strip(".:!?\"'()[]").lower() for part in _SPLIT.split(text)) if w]


class DemoImageEncoder(nn.Module):
    """Four conv -> batch norm -> ReLU blocks (16, 32, 64, 128 channels, max pooling between),
    global average and max pooling concatenated, and a linear map to the embedding."""

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        widths = [3, 16, 32, 64, 128]
        layers: list[nn.Module] = []
        for i in range(1, 5):
            layers += [nn.Conv2d(widths[i - 1], widths[i], 3, padding=1), nn.BatchNorm2d(widths[i]), nn.ReLU()]
            if i < 4:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * widths[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in ``[0, 1]`` -> (B, embed_dim) unnormalised embeddings."""
        f = self.features((x - 0.5) / 0.25)
        return self.proj(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


class DemoTextEncoder(nn.Module):
    """A bag of words: the mean of the words' embeddings (``<unk>`` for unknown words), then a linear map."""

    def __init__(self, vocabulary: list[str], embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        if not vocabulary or vocabulary[0] != UNK:
            raise ValueError(f"the vocabulary must start with {UNK!r}")
        self.vocabulary = list(vocabulary)
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.embedding = nn.EmbeddingBag(len(self.vocabulary), embed_dim, mode="mean")
        self.proj = nn.Linear(embed_dim, embed_dim)

    def word_id(self, word: str) -> int:
        """The vocabulary index of a word (also ``word-c`` / ``word-s``), 0 (``<unk>``) when unknown."""
        for candidate in (word, *(word + s for s in SUFFIXES)):
            if candidate in self.index:
                return self.index[candidate]
        return 0

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The flat word ids and the bag offsets of ``texts`` (an empty text reads as ``<unk>``)."""
        ids: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(ids))
            ids.extend([self.word_id(w) for w in words_of(text)] or [0])
        device = self.embedding.weight.device
        return torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(
            offsets, dtype=torch.long, device=device
        )

    def forward_ids(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Embeddings of bags given as flat ids and offsets: (B, embed_dim), unnormalised."""
        return self.proj(self.embedding(ids, offsets))

    def forward(self, texts: list[str]) -> torch.Tensor:
        """A list of texts -> (B, embed_dim) unnormalised embeddings."""
        return self.forward_ids(*self.tokenize(texts))


class DemoClip(nn.Module):
    """The demo CLIP: ``encode_image`` ([0, 1] RGB at :data:`IMAGE_SIZE`) and ``encode_text`` (strings)."""

    def __init__(self, vocabulary: list[str], embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.image_size = IMAGE_SIZE
        self.image = DemoImageEncoder(embed_dim)
        self.text = DemoTextEncoder(vocabulary, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), as in CLIP

    @property
    def vocabulary(self) -> list[str]:
        return self.text.vocabulary

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.text(texts)


def save_demo_clip(model: DemoClip, path: str | os.PathLike) -> None:
    """Save the weights and the vocabulary in a file that ``torch.load(weights_only=True)`` reads."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"vocabulary": model.vocabulary, "embed_dim": int(model.image.proj.out_features), "state_dict": state}
    torch.save(payload, path)


def demo_clip(weights: str | os.PathLike = WEIGHTS) -> DemoClip:
    """The demo CLIP with its shipped weights (or those of a file saved by :func:`save_demo_clip`), in eval mode."""
    payload = torch_load(Path(weights), False, "demo CLIP weights")
    vocabulary = payload.get("vocabulary") if isinstance(payload, dict) else None
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not (isinstance(vocabulary, list) and vocabulary and vocabulary[0] == UNK and isinstance(state, dict)):
        raise ModelError(f"demo CLIP weights {weights} hold no vocabulary and state dict (made by train_demo_clip.py?)")
    model = DemoClip(vocabulary, int(payload.get("embed_dim", EMBED_DIM)))
    load_state(model, state, weights)
    return model.eval()
