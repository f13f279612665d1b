"""Test helpers: a hand-written tiny Broden dataset and a model that replays planted maps."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from netdissect.data.writer import encode_label_png
from netdissect.models.preprocess import Preprocess
from netdissect.runs.checkpoints import read_checkpoint

#: Inputs in [0, 1], no normalisation: LookupNet reads the image's gray level back.
RAW = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
GRAY_STEP = 16


def gray_image(index: int, size: int) -> np.ndarray:
    """A uniform image whose gray level encodes ``index`` (robust to JPEG)."""
    return np.full((size, size, 3), GRAY_STEP * (index + 1), dtype=np.uint8)


class LookupNet(nn.Module):
    """Replays planted activations: decodes the image index from its gray level.

    ``maps`` is (N, U, h, w); the planted maps come out of the submodule ``layer``, followed by
    a ``head`` that the forward pass never needs to reach.
    """

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("maps", maps.float())
        self.layer = nn.Identity()
        self.head = nn.Flatten()
        self.head_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (x.mean(dim=(1, 2, 3)) * 255 / GRAY_STEP).round().long() - 1
        out = self.layer(self.maps[index])
        self.head_calls += 1
        return self.head(out)


def write_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_label_png(np.asarray(labels)).save(path)


def write_tiny_dataset(root: Path) -> Path:
    """The hand-computed dataset of the IoU tests (see tests/math/test_tally.py for the numbers).

    Labels: 1 dog (object), 2 leg (part), 3 tail (part), 4 park-s (scene), 5 cat (object).
    Image 0: dog on the top-left 2x2; part layers leg at (0,0) and tail at (0,0),(1,1) (two
    PNGs in one cell); scene park-s plus a 0 entry. Image 1: cat at (0,0); an all-zero part
    PNG; scene cell "0".
    """
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(gray_image(i, 8)).save(images / f"im{i}.jpg", quality=95)
    dog = np.zeros((4, 4), int)
    dog[:2, :2] = 1
    leg = np.zeros((4, 4), int)
    leg[0, 0] = 2
    tail = np.zeros((4, 4), int)
    tail[0, 0] = tail[1, 1] = 3
    cat = np.zeros((4, 4), int)
    cat[0, 0] = 5
    write_png(images / "im0_object.png", dog)
    write_png(images / "im0_part_1.png", leg)
    write_png(images / "im0_part_2.png", tail)
    write_png(images / "im1_object.png", cat)
    write_png(images / "im1_part.png", np.zeros((4, 4), int))
    (root / "category.csv").write_text("name,first,last,count,frequency\nobject,1,2,2,2\npart,1,2,2,1\nscene,1,1,1,1\n")
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        "1,dog,object(1),1,0.25,dog\n2,leg,part(1),1,0.0625,leg\n3,tail,part(1),1,0.125,tail\n"
        "4,park-s,scene(1),1,1,park\n5,cat,object(1),1,0.0625,cat\n"
    )
    (root / "c_object.csv").write_text("code,number,name,frequency,coverage\n1,1,dog,1,0.25\n2,5,cat,1,6.25e-2\n")
    (root / "c_part.csv").write_text("code,number,name,frequency,coverage\n1,2,leg,1,0.0625\n2,3,tail,1,0.125\n")
    (root / "c_scene.csv").write_text("code,number,name,frequency,coverage\n1,4,park-s,1,1\n")
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,object,part,scene\n"
        "im0.jpg,train,8,8,4,4,im0_object.png,im0_part_1.png;im0_part_2.png,4;0\n"
        "im1.jpg,val,8,8,4,4,im1_object.png,im1_part.png,0\n"
    )
    return root


def tiny_maps() -> torch.Tensor:
    """Planted activations (2 images, 2 units, 4x4) of the hand-computed IoU cases."""
    maps = torch.zeros(2, 2, 4, 4)
    maps[0, 0, 0, 0] = maps[0, 0, 0, 1] = 1.0  # unit 0, image 0: two pixels on the dog
    maps[1, 0, 3, 3] = 1.0  # unit 0, image 1: one unlabelled pixel
    maps[1, 1] = 1.0  # unit 1, image 1: the whole image
    return maps


def rename_label(root: Path, old: str, new: str) -> None:
    """Rename a label in a dataset's label.csv and c_*.csv files (e.g. to a hostile name)."""
    for path in [root / "label.csv", *root.glob("c_*.csv")]:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        rows = [[new if cell == old else cell for cell in row] for row in rows]
        with open(path, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)


def write_planted_dataset(
    root: Path, n: int = 12, seed: int = 0, scene_unit: bool = True, random_units: int = 0
) -> torch.Tensor:
    """Write a dataset with objects a, b, c (small bars, each in about half the images) and the
    scene s-s (every third image); return planted maps ``(n, units, 4, 4)`` for :class:`LookupNet`.

    Units 0-2 fire exactly on a, b, c; with ``scene_unit``, unit 3 fires on the whole image where
    s-s is annotated; ``random_units`` more units are Gaussian noise.
    """
    from netdissect.data.writer import BrodenWriter, LabelSpec

    rng = np.random.default_rng(seed)
    labels = [LabelSpec(1, "a"), LabelSpec(2, "b"), LabelSpec(3, "c"), LabelSpec(4, "s-s")]
    w = BrodenWriter(root, ["object", "scene"], labels)
    first_random = 3 + int(scene_unit)
    maps = torch.zeros(n, first_random + random_units, 4, 4)
    for i in range(n):
        seg = np.zeros((4, 4), int)
        for k in (1, 2, 3):
            if rng.random() < 0.5:
                y, x = rng.integers(0, 3, 2)
                seg[y : y + 2, x : x + 1] = k
        for k in (1, 2, 3):
            maps[i, k - 1] = torch.from_numpy(seg == k).float()
        if random_units:
            maps[i, first_random:] = torch.from_numpy(rng.normal(size=(random_units, 4, 4))).float()
        scene = [4] if i % 3 == 0 else []
        if scene_unit:
            maps[i, 3] = 1.0 if scene else 0.0
        w.add_image(f"im{i}", gray_image(i, 8), pixel_labels={"object": [seg]}, image_labels={"scene": scene})
    w.close()
    return maps


class SmallCNN(nn.Module):
    """A small seeded CNN (the same weights in every process) for subprocess runs.

    ``delay`` seconds of sleep per forward pass make a run slow enough to kill mid-pass;
    ``log`` names a file that gets one line per forward pass (the batch size).
    """

    def __init__(self, delay: float = 0.0, log: str | None = None) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
        torch.random.set_rng_state(generator_state)
        self.delay, self.log = delay, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{x.shape[0]}\n")
        if self.delay:
            time.sleep(self.delay)
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


def small_cnn(delay: float = 0.0, log: str | None = None) -> SmallCNN:
    """Model SPEC ``helpers:small_cnn`` (with tests/ on PYTHONPATH)."""
    return SmallCNN(delay, log)


def rank_cnn() -> SmallCNN:
    """Model SPEC ``helpers:rank_cnn``: weights that differ between torchrun ranks (a user error)."""
    model = SmallCNN()
    with torch.no_grad():
        model.conv1.bias += float(os.environ.get("RANK", "0"))
    return model


def subprocess_env() -> dict[str, str]:
    """The environment for netdissect subprocesses that import test helpers."""
    env = dict(os.environ)
    tests = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join([tests, *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def checkpoint_state(path: Path) -> dict | None:
    """The state in a checkpoint file (:func:`netdissect.runs.checkpoints.read_checkpoint`), or None while there is none."""
    saved = read_checkpoint(path)
    return None if saved is None else saved[1]


def same_layer_results(a: Path, b: Path) -> None:
    """Assert two layer directories hold identical tally.csv, arrays and top maps."""
    assert (a / "tally.csv").read_bytes() == (b / "tally.csv").read_bytes()
    for name in ("iou.npz", "top_maps.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                assert np.array_equal(x[key], y[key]), f"{name}:{key} differs"


def folder_digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file's SHA-256 under ``folder`` (or of ``folder`` itself when it is a file), by relative
    path; the lock file (it holds a pid) and entries under the folders ``skip`` left out."""
    import hashlib

    if folder.is_file():
        return {"": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock" and not set(skip) & set(p.relative_to(folder).parts)
    }


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the command line; it must exit 1 with exactly one ``netdissect: error:`` line and no traceback
    (progress bars aside). Returns the line."""
    from netdissect.cli import main

    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 1, (argv, captured.err[-2000:])
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("netdissect: error: "), captured.err
    return lines[0]


#: The hand-computed batch of the IoU count tests (tests/math/test_tally.py, tests/engine/test_null.py):
#: per label, its category.
LABEL_CATEGORY = torch.tensor([-1, 0, 1, 1, 2, 0])  # object=0, part=1, scene=2


def tiny_batch():
    seg = torch.zeros(2, 3, 4, 4, dtype=torch.int32)
    seg[0, 0, :2, :2] = 1  # dog
    seg[0, 1, 0, 0] = 2  # leg, part layer 1
    seg[0, 2, 0, 0] = seg[0, 2, 1, 1] = 3  # tail, part layer 2: (0,0) carries two part labels
    seg[1, 0, 0, 0] = 5  # cat
    scalars = torch.tensor([[4], [0]])  # park-s on image 0; padding 0 on image 1
    present = torch.tensor([[True, True, True], [True, False, False]])
    return seg, scalars, present
