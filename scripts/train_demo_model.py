"""Train the demo CNN on the synthetic dataset's scene labels and save its weights.

    python scripts/train_demo_model.py [--out src/netdissect/models/demo_weights.pt]

Reproducible: a fixed dataset seed (different from the demo's dataset seed, so the demo
dissects images the model never saw), a fixed torch seed and deterministic algorithms.
A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from netdissect.data import BrodenDataset, collate_broden
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.models.demo import DEMO_IMAGE_SIZE, WEIGHTS, DemoNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dataset-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(
            Path(tmp) / "train", n=args.images, size=DEMO_IMAGE_SIZE, seed=args.dataset_seed, progress=True
        )
        data = BrodenDataset(root, categories=["scene"], load_segmentations=False)
        scenes = data.meta.labels_of("scene").tolist()
        print("scenes:", [data.meta.label_names[s] for s in scenes])
        lookup = torch.full((data.meta.num_labels,), -1, dtype=torch.long)
        lookup[scenes] = torch.arange(len(scenes))
        loader = DataLoader(
            data,
            batch_size=32,
            shuffle=True,
            num_workers=2,
            collate_fn=collate_broden,
            generator=torch.Generator().manual_seed(args.seed),
        )
        val = [
            b
            for b in DataLoader(
                BrodenDataset(root, categories=["scene"], split="val", load_segmentations=False),
                batch_size=64,
                collate_fn=collate_broden,
            )
        ]
        model = DemoNet(num_classes=len(scenes))
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * len(loader))
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(args.epochs):
            model.train()
            start, total, seen = time.time(), 0.0, 0
            for batch in loader:
                target = lookup[batch["scalars"][:, 0]]
                x = batch["image"]
                flip = torch.rand(len(x)) < 0.5
                x[flip] = x[flip].flip(-1)
                loss = loss_fn(model(x), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(x)
                seen += len(x)
            model.eval()
            with torch.no_grad():
                correct = sum((model(b["image"]).argmax(1) == lookup[b["scalars"][:, 0]]).sum().item() for b in val)
                count = sum(len(b["image"]) for b in val)
            print(
                f"epoch {epoch + 1}: loss {total / seen:.3f}, val acc {correct / count:.3f}, {time.time() - start:.0f}s"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
