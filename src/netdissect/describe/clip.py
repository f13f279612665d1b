"""CLIP models behind one interface, for open-vocabulary unit descriptions (``netdissect describe``).

``load_clip(SPEC)`` gives a :class:`ClipEncoder` that turns RGB images in ``[0, 1]`` and texts
into L2-normalised embeddings in a shared space. SPECs:

* ``demo``: the tiny CLIP shipped with the package (:mod:`netdissect.models.demo_clip`), trained
  on the synthetic dataset's label names; offline, no extra package;
* ``open_clip:ARCH/PRETRAINED``: an open_clip model (``open_clip:ViT-B-32/laion2b_s34b_b79k``);
  PRETRAINED is a pretrained tag, read from open_clip's cache only, or a checkpoint path;
* ``hf:NAME_OR_DIR``: a Hugging Face ``CLIPModel`` from a local folder or the hub cache
  (``hf:openai/clip-vit-base-patch32``), never downloaded;
* ``package.module:callable``: called without arguments, it returns an object with
  ``encode_image(images)`` (a (B, 3, S, S) float batch of RGB in ``[0, 1]``, S its optional
  ``image_size`` attribute, default 224) and ``encode_text(texts)`` (a list of strings), each
  returning a (B, D) tensor; netdissect normalises the outputs.

open_clip and transformers are optional: ``pip install 'netdissect[clip]'``. Nothing is
downloaded: weights missing from the cache stop with one line naming the cache folder.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_device
from ..errors import ModelError, NetDissectError, first_line

__all__ = ["ACCEPTED_SPECS", "ClipEncoder", "load_clip", "resize_images"]

ACCEPTED_SPECS = "demo, open_clip:ARCH/PRETRAINED, hf:NAME_OR_DIR or package.module:callable"
CLIP_EXTRA = "pip install 'netdissect[clip]'"
#: Texts encoded per forward pass.
TEXT_BATCH = 256
#: The image normalisation of OpenAI's CLIP (open_clip's and transformers' default).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_CALLABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (B, 3, H, W) float batch as a whole (never cropped) to ``size`` x ``size``: bilinear, antialiased."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class ClipEncoder:
    """A CLIP model: ``encode_images`` and ``encode_texts`` give L2-normalised float32 (B, D) embeddings.

    Both run under ``torch.no_grad`` on :attr:`device` and return tensors there. Images are
    (B, 3, H, W) float RGB in ``[0, 1]``, ideally :attr:`image_size` square; other sizes are
    resized as a whole (:func:`resize_images`). ``image_fn`` and ``text_fn`` are the model's own
    encoders (any normalisation of the pixels is theirs); their outputs need not be normalised.
    """

    def __init__(
        self,
        spec: str,
        image_fn: Callable[[torch.Tensor], torch.Tensor],
        text_fn: Callable[[list[str]], torch.Tensor],
        image_size: int = 224,
        device: torch.device | str = "cpu",
        model: Any = None,
    ) -> None:
        self.spec = spec
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.model = model
        self._image_fn = image_fn
        self._text_fn = text_fn

    def __repr__(self) -> str:
        return f"ClipEncoder({self.spec!r}, image_size={self.image_size}, device={str(self.device)!r})"

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB in ``[0, 1]`` -> (B, D) L2-normalised embeddings."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise NetDissectError(f"CLIP images must be a (B, 3, H, W) RGB batch, got {shape}")
        x = resize_images(images.to(self.device, torch.float32), self.image_size)
        with torch.no_grad():
            out = self._image_fn(x)
        return self._finish(out, len(x), "images")

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """A list of strings -> (N, D) L2-normalised embeddings (in batches of :data:`TEXT_BATCH`)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise NetDissectError("CLIP texts must be a list of strings")
        texts = list(texts)
        if not texts:
            return self._encode_text_batch(["a"])[:0]
        return torch.cat([self._encode_text_batch(texts[i : i + TEXT_BATCH]) for i in range(0, len(texts), TEXT_BATCH)])

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            out = self._text_fn(texts)
        return self._finish(out, len(texts), "texts")

    def _finish(self, out: Any, rows: int, what: str) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != rows:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"CLIP {self.spec!r} encoded {rows} {what} as {shape}, not a ({rows}, D) tensor")
        out = out.detach().to(self.device, torch.float32)
        if not torch.isfinite(out).all():
            raise ModelError(f"CLIP {self.spec!r} gave NaN or infinite embeddings for its {what}")
        return F.normalize(out, dim=1)


def load_clip(spec: str, device: torch.device | str | None = None) -> ClipEncoder:
    """The CLIP model of a SPEC (see the module docstring) on ``device`` (default: CUDA when available).

    A bad SPEC, a missing optional package or weights absent from the cache stop with one
    :class:`~netdissect.errors.ModelError` line.
    """
    dev = resolve_device(None if device is None else str(device))
    if spec == "demo":
        return _load_demo(spec, dev)
    if spec.startswith("open_clip:"):
        return _load_open_clip(spec, dev)
    if spec.startswith("hf:"):
        return _load_hf(spec, dev)
    if _CALLABLE.fullmatch(spec):
        return _load_callable(spec, dev)
    raise ModelError(f"unknown CLIP spec {spec!r}: use {ACCEPTED_SPECS}")


# --------------------------------------------------------------------------- demo


def _load_demo(spec: str, device: torch.device) -> ClipEncoder:
    from ..models.demo_clip import demo_clip

    model = demo_clip().to(device)
    return ClipEncoder(spec, model.encode_image, model.encode_text, model.image_size, device, model)


# --------------------------------------------------------------------------- optional packages


def _require(module: str, package: str, spec: str) -> ModuleType:
    """Import an optional package, or one line naming it and the ``clip`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) in (module, None)
        why = "is not installed" if missing else f"cannot be imported ({first_line(exc)})"
        raise ModelError(f"CLIP spec {spec!r} needs the {package} package, which {why}: {CLIP_EXTRA}") from None


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Keep huggingface_hub from reaching the network (its offline mode) while loading."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.path.expanduser("~/.cache/huggingface/hub")


def _cached_hub_file(repo_id: str, filenames: list[str]) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def _normalizer(mean: Any, std: Any, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor([float(v) for v in mean], device=device).view(1, -1, 1, 1)
    s = torch.tensor([float(v) for v in std], device=device).view(1, -1, 1, 1)
    return lambda x: (x - m) / s


def _square(size: Any) -> int:
    """A model's input size (an int or an (H, W) pair) as one int."""
    if isinstance(size, (tuple, list)):
        return int(max(size))
    return int(size)


# --------------------------------------------------------------------------- open_clip


def _load_open_clip(spec: str, device: torch.device) -> ClipEncoder:
    arch, _, pretrained = spec.removeprefix("open_clip:").partition("/")
    if not arch or not pretrained:
        raise ModelError(
            f"CLIP spec {spec!r}: use open_clip:ARCH/PRETRAINED, PRETRAINED a tag "
            "(open_clip:ViT-B-32/laion2b_s34b_b79k) or a checkpoint path"
        )
    open_clip = _require("open_clip", "open_clip_torch", spec)
    models = open_clip.list_models()
    if arch not in models:
        close = difflib.get_close_matches(arch, models, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (open_clip.list_models() lists them)"
        raise ModelError(f"open_clip has no architecture {arch!r}{hint}")
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    preprocess: dict[str, Any] = {}
    quick_gelu = False
    if os.path.isfile(pretrained):
        checkpoint = pretrained
    elif tag_cfg:
        checkpoint = _open_clip_cached(arch, pretrained, tag_cfg)
        preprocess = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))  # OpenAI's weights were trained with QuickGELU
    elif os.path.exists(pretrained):
        raise ModelError(f"open_clip checkpoint {pretrained} is a folder, not a file")
    else:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        known = f"its tags: {', '.join(tags)}" if tags else "it has no pretrained tags"
        raise ModelError(f"open_clip checkpoint or tag {pretrained!r} of {arch} not found ({known})")
    try:
        with _hub_offline():
            model, _, _ = open_clip.create_model_and_transforms(
                arch,
                pretrained=checkpoint,
                device=device,
                force_quick_gelu=quick_gelu,
                image_mean=preprocess.get("mean"),
                image_std=preprocess.get("std"),
            )
            tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:
        raise ModelError(f"cannot load open_clip {arch} from {checkpoint}: {first_line(exc)}") from None
    model.eval()
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    normalize = _normalizer(cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD), device)
    size = _square(cfg.get("size", getattr(model.visual, "image_size", 224)))

    def encode_text(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    return ClipEncoder(spec, lambda x: model.encode_image(normalize(x)), encode_text, size, device, model)


def _open_clip_cached(arch: str, tag: str, cfg: dict) -> str:
    """The cached checkpoint file of an open_clip pretrained tag, or one line naming the cache folders."""
    if cfg.get("file"):
        return str(cfg["file"])
    where = []
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(
            cfg["hf_hub"].rstrip("/") if not cfg["hf_hub"].endswith("/") else cfg["hf_hub"]
        )
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename]
        if filename == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        found = _cached_hub_file(repo_id, names)
        if found:
            return found
        where.append(f"{_hub_cache()} (repo {repo_id})")
    if cfg.get("url"):
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if target.is_file():
            return str(target)
        where.append(str(target))
    raise ModelError(
        f"open_clip weights {arch}/{tag} are not in the cache ({' or '.join(where)}); netdissect downloads "
        f"nothing: run open_clip.create_model('{arch}', pretrained='{tag}') on a machine with internet and "
        "copy its cache here, or give a checkpoint path"
    )


# --------------------------------------------------------------------------- Hugging Face transformers


def _load_hf(spec: str, device: torch.device) -> ClipEncoder:
    name = spec.removeprefix("hf:")
    if not name:
        raise ModelError(f"CLIP spec {spec!r}: use hf:NAME_OR_DIR (hf:openai/clip-vit-base-patch32 or a local folder)")
    transformers = _require("transformers", "transformers", spec)
    local = os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1
    if local and not os.path.isdir(os.path.expanduser(name)):
        raise ModelError(f"CLIP spec {spec!r}: folder {name} not found")
    name = os.path.expanduser(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with _hub_offline():
            model = _hf_part(transformers.CLIPModel, name, spec, local, "model")
            tokenizer = _hf_part(transformers.AutoTokenizer, name, spec, local, "tokenizer")
            try:
                processor = transformers.CLIPImageProcessor.from_pretrained(name, local_files_only=True)
                mean, std = processor.image_mean, processor.image_std
            except (OSError, ValueError):  # no preprocessor_config.json: CLIP's own normalisation
                mean, std = OPENAI_MEAN, OPENAI_STD
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    model = model.to(device).eval()
    normalize = _normalizer(mean, std, device)
    max_length = int(model.config.text_config.max_position_embeddings)

    def encode_image(x: torch.Tensor) -> torch.Tensor:
        return _pooled(model.get_image_features(pixel_values=normalize(x)))

    def encode_text(texts: list[str]) -> torch.Tensor:
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return _pooled(model.get_text_features(**{k: v.to(device) for k, v in inputs.items()}))

    size = _square(model.config.vision_config.image_size)
    return ClipEncoder(spec, encode_image, encode_text, size, device, model)


def _hf_part(cls: Any, name: str, spec: str, local: bool, what: str) -> Any:
    try:
        return cls.from_pretrained(name, local_files_only=True)
    except OSError as exc:
        if local:
            raise ModelError(f"CLIP spec {spec!r}: cannot load the {what} from {name}: {first_line(exc)}") from None
        raise ModelError(
            f"CLIP spec {spec!r}: {name} is not in the Hugging Face cache ({_hub_cache()}); netdissect downloads "
            f"nothing: fetch it on a machine with internet (huggingface-cli download {name}) and copy the cache, "
            "or give a local folder"
        ) from None
    except Exception as exc:
        raise ModelError(f"CLIP spec {spec!r}: cannot load the {what}: {first_line(exc)}") from None


def _pooled(out: Any) -> Any:
    """transformers 4 returns the projected features; 5 returns an output whose ``pooler_output`` they are."""
    return out if isinstance(out, torch.Tensor) else getattr(out, "pooler_output", out)


# --------------------------------------------------------------------------- your own


def _load_callable(spec: str, device: torch.device) -> ClipEncoder:
    from ..models.base import import_object

    factory = import_object(spec, "CLIP")
    try:
        model = factory() if callable(factory) and not hasattr(factory, "encode_image") else factory
    except Exception as exc:
        raise ModelError(f"CLIP spec {spec!r} failed: {first_line(exc)}") from None
    missing = [m for m in ("encode_image", "encode_text") if not callable(getattr(model, m, None))]
    if missing:
        raise ModelError(f"CLIP spec {spec!r} gave a {type(model).__name__} without {' and '.join(missing)}")
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    size = getattr(model, "image_size", 224)
    try:
        size = _square(size)
    except (TypeError, ValueError):
        raise ModelError(f"CLIP spec {spec!r}: image_size {size!r} is not an int") from None
    return ClipEncoder(spec, model.encode_image, model.encode_text, size, device, model)
