"""Train the demo CLIP on synthetic images and captions of their labels, and save its weights.

    python scripts/train_demo_clip.py [--out src/netdissect/models/demo_clip.pt]

Each image is drawn by the synthetic dataset's painter (``netdissect.data.synthetic.draw_image``,
at the demo's 128 px, saved and read back as JPEG like the dataset's files, then resized (bicubic) to
the demo CLIP's 64 px); its caption is the set of its label names: its scene and textures, and every
object, part, colour and material covering at least ``MIN_FRACTION`` of its pixels. The image and
text encoders (:mod:`netdissect.models.demo_clip`) are trained together with the symmetric InfoNCE
loss of CLIP. A caption keeps each word with probability ``--keep`` (at least one), so the text
encoder also sees short texts, like the single concept words it is asked about.

With ``--agreement RUN`` it trains nothing: it compares the soft-WPMI labels that the saved CLIP
gives the demo model's conv4 units on the demo dataset's images with their IoU labels in RUN
(written by ``netdissect demo --out RUN``), as reported in ``docs/describe-wpmi.md``.

Reproducible: fixed dataset seeds (training images from ``--dataset-seed``, held-out images
from the next seed, neither the demo dataset's seed 0), a fixed torch seed, deterministic
algorithms. It reports retrieval on the held-out images after each epoch, with the epoch's time
(the shipped weights took 35 minutes on a busy 2-core CPU).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from netdissect.data.synthetic import LABELS, draw_image
from netdissect.models.demo import DEMO_IMAGE_SIZE
from netdissect.models.demo_clip import IMAGE_SIZE, UNK, WEIGHTS, DemoClip, save_demo_clip

#: A pixel label enters the caption when it covers at least this share of the image.
MIN_FRACTION = 0.002
CATEGORY = dict(LABELS)
NAMES = [name for name, _ in LABELS]


def caption_of(drawn) -> list[str]:
    """The label names of one drawn image (see the module docstring), in label-table order."""
    numbers: set[int] = set()
    for layers in drawn.pixel_labels.values():
        if not layers:
            continue
        size = layers[0].size
        counts = np.bincount(np.concatenate([layer.ravel() for layer in layers]), minlength=len(NAMES) + 1)
        numbers |= {int(n) for n in np.nonzero(counts >= MIN_FRACTION * size)[0] if n > 0}
    for values in drawn.image_labels.values():
        numbers |= set(values)
    return [NAMES[n - 1] for n in sorted(numbers)]


def make_images(n: int, seed: int, jpeg_quality: int = 92) -> tuple[torch.Tensor, list[list[str]]]:
    """``n`` drawn images as uint8 (n, 3, IMAGE_SIZE, IMAGE_SIZE) and their captions.

    Each image goes through a JPEG file and a bicubic resize, as the dataset's images do on
    their way to ``netdissect describe``'s CLIP.
    """
    pixels = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        drawn = draw_image(np.random.default_rng((seed, i)), DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE // 2)
        buffer = io.BytesIO()
        Image.fromarray(drawn.image).save(buffer, format="JPEG", quality=jpeg_quality)
        with Image.open(buffer) as im:
            pixels[i] = _clip_pixels(np.asarray(im.convert("RGB")))
        captions.append(caption_of(drawn))
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), captions


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def drop_words(captions: list[list[str]], keep: float, gen: torch.Generator) -> list[str]:
    """Each caption with each word kept with probability ``keep`` (at least one word), as one text."""
    texts = []
    for words in captions:
        mask = torch.rand(len(words), generator=gen) < keep
        if not mask.any():
            mask[int(torch.randint(len(words), (1,), generator=gen))] = True
        texts.append(" ".join(w for w, m in zip(words, mask.tolist()) if m))
    return texts


def clip_loss(model: DemoClip, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """The symmetric InfoNCE loss of a batch of matching images and texts."""
    img = F.normalize(model.encode_image(images), dim=1)
    txt = F.normalize(model.encode_text(texts), dim=1)
    logits = model.logit_scale.exp().clamp(max=100.0) * img @ txt.T
    target = torch.arange(len(images))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def evaluate(model: DemoClip, images: torch.Tensor, captions: list[list[str]]) -> dict[str, float]:
    """Held-out retrieval: image -> its scene word (accuracy among the scenes) and, per category,
    the R-precision of the category's words (the share of an image's R true words among its top R)."""
    model.eval()
    emb = torch.cat(
        [F.normalize(model.encode_image(as_float(images[i : i + 256])), dim=1) for i in range(0, len(images), 256)]
    )
    words = F.normalize(model.encode_text(NAMES), dim=1)
    sim = emb @ words.T
    truth = torch.zeros_like(sim, dtype=torch.bool)
    for i, caption in enumerate(captions):
        truth[i, [NAMES.index(w) for w in caption]] = True
    results = {}
    for category in ("scene", "color", "object", "part", "material", "texture"):
        cols = torch.tensor([j for j, n in enumerate(NAMES) if CATEGORY[n] == category])
        s, t = sim[:, cols], truth[:, cols]
        hits, total = 0, 0
        for row in range(len(s)):
            r = int(t[row].sum())
            if r:
                top = s[row].topk(r).indices
                hits += int(t[row, top].sum())
                total += r
        key = "scene accuracy" if category == "scene" else f"{category} R-precision"
        results[key] = hits / max(total, 1)
    return results


@torch.no_grad()
def agreement(run: Path, weights: Path, top_ks: tuple[int, ...] = (100, 20)) -> None:
    """Print how often conv4's soft-WPMI labels (the dataset's label names) match its IoU labels.

    With this CLIP, and, as a reference, with an *oracle* CLIP whose image embedding is the
    normalised indicator of the labels the image holds (by the caption rule) and whose word
    embeddings are one-hot: what soft-WPMI says when the CLIP makes no mistake.
    """
    from netdissect.capture.hooks import LayerCapture
    from netdissect.data import BrodenDataset
    from netdissect.describe.clip import ClipEncoder
    from netdissect.describe.wpmi import soft_wpmi
    from netdissect.models import load_model
    from netdissect.models.demo_clip import demo_clip

    data = BrodenDataset(json.loads((run / "run.json").read_text())["key"]["dataset"]["path"])
    units = json.loads((run / "conv4" / "units.json").read_text())["units"]
    model = load_model("demo").module
    clip_model = demo_clip(weights)
    clip = ClipEncoder("demo", clip_model.encode_image, clip_model.encode_text, clip_model.image_size, "cpu")
    values, embeddings, present = [], [], []
    with LayerCapture(model, ["conv4"]) as capture:
        for b in range(0, len(data), 50):
            items = [data[i] for i in range(b, min(b + 50, len(data)))]
            values.append(capture(torch.stack([it["image"] for it in items]))["conv4"].mean(dim=(2, 3)))
            small = np.stack([_clip_pixels(data.decode_image(it["index"])) for it in items])
            embeddings.append(clip.encode_images(as_float(torch.from_numpy(small).permute(0, 3, 1, 2))))
            for it in items:
                seg = it["seg"].numpy()
                counts = np.bincount(seg.ravel(), minlength=len(NAMES) + 1) / seg[0].size
                counts[it["scalars"].numpy()] = 1.0
                present.append(counts[1:] >= MIN_FRACTION)
    acts = torch.cat(values)
    oracle = torch.tensor(np.array(present), dtype=torch.float32)
    similarities = {
        "demo CLIP": torch.cat(embeddings) @ clip.encode_texts(NAMES).T,
        "oracle CLIP": oracle / oracle.sum(dim=1, keepdim=True).clamp(min=1).sqrt(),
    }
    print(f"{len(data)} images, {acts.shape[1]} conv4 units, {len(NAMES)} concepts")
    labels = {u["unit"] - 1: (u["label"], bool(u["detector"])) for u in units}
    for clip_name, similarity in similarities.items():
        for k in top_ks:
            top5 = soft_wpmi(acts, similarity, top_k=k).topk(5, dim=1).indices
            for name, chosen in (("detectors", [u for u in labels if labels[u][1]]), ("all units", list(labels))):
                rank1 = sum(NAMES[int(top5[u, 0])] == labels[u][0] for u in chosen)
                in5 = sum(labels[u][0] in [NAMES[int(j)] for j in top5[u]] for u in chosen)
                print(
                    f"{clip_name}, top_k={k}, {name} ({len(chosen)}): WPMI rank 1 = IoU label {rank1} "
                    f"({rank1 / len(chosen):.1%}), IoU label in WPMI top 5 {in5} ({in5 / len(chosen):.1%})"
                )


def _clip_pixels(pixels: np.ndarray) -> np.ndarray:
    """An image's uint8 (H, W, 3) pixels at the demo CLIP's size (bicubic, as ``netdissect describe`` does)."""
    return np.asarray(Image.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--keep", type=float, default=0.7, help="chance that a caption keeps each word")
    parser.add_argument("--dataset-seed", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--agreement", type=Path, metavar="RUN", help="measure WPMI-IoU agreement on a demo run; no training"
    )
    args = parser.parse_args()
    if args.agreement:
        agreement(args.agreement, args.out)
        return

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    start = time.time()
    train_images, train_captions = make_images(args.images, args.dataset_seed)
    val_images, val_captions = make_images(args.held_out, args.dataset_seed + 1)
    print(f"drew {args.images} + {args.held_out} images in {time.time() - start:.0f}s")
    model = DemoClip([UNK, *NAMES])
    steps = args.epochs * ((args.images + args.batch_size - 1) // args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        t0, total = time.time(), 0.0
        order = torch.randperm(args.images, generator=gen)
        for b in range(0, args.images, args.batch_size):
            idx = order[b : b + args.batch_size]
            x = as_float(train_images[idx])
            flip = torch.rand(len(x), generator=gen) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = clip_loss(model, x, drop_words([train_captions[i] for i in idx.tolist()], args.keep, gen))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        scores = evaluate(model, val_images, val_captions)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        print(f"epoch {epoch + 1}: loss {total / args.images:.3f}, {shown}, {time.time() - t0:.0f}s", flush=True)
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_demo_clip(model, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
