"""A killed ablation continues from its checkpoint and gives the uninterrupted results."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ablation_helpers import write_folders
from helpers import SmallCNN, checkpoint_state, subprocess_env
from netdissect import ablate
from netdissect.ablation.result import NPZ_FILE
from netdissect.models.base import LoadedModel
from netdissect.models.preprocess import Preprocess


def command(images: Path, out: Path, log: Path, delay: float) -> list[str]:
    args = json.dumps({"delay": delay, "log": str(log)})
    return (
        [sys.executable, "-m", "netdissect", "ablate", "--model", "helpers:small_cnn", "--model-args", args]
        + ["--layer", "conv1", "--images", str(images), "--out", str(out), "--batch-size", "2", "--split", "hook"]
        + ["--checkpoint-every", "0", "--top-k", "3", "--no-progress", "--no-report", "--device", "cpu"]
    )


def test_kill_and_resume_gives_the_uninterrupted_results(tmp_path):
    images = write_folders(tmp_path / "images", {"0": 8, "1": 8}, size=12)
    out = tmp_path / "out"
    killed_log, resumed_log = tmp_path / "killed.log", tmp_path / "resumed.log"
    proc = subprocess.Popen(command(images, out, killed_log, 0.15), env=subprocess_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            state = checkpoint_state(out / "checkpoints" / "ablation.ckpt")
            if state and state["stage"] == "single" and state["batch"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()  # SIGKILL: no chance to clean up
    finally:
        proc.wait()
    assert not (out / NPZ_FILE).exists()
    resumed = subprocess.run(command(images, out, resumed_log, 0.0), env=subprocess_env(), cwd=tmp_path)
    assert resumed.returncode == 0
    assert not (out / "checkpoints" / "ablation.ckpt").exists()
    # the uninterrupted reference, in this process
    reference = ablate(
        LoadedModel(SmallCNN().eval(), Preprocess(), "ref"),
        images,
        "conv1",
        top_k=3,
        batch_size=2,
        split="hook",
        progress=False,
    )
    with np.load(out / NPZ_FILE) as z:
        for key, value in reference.arrays().items():
            np.testing.assert_array_equal(z[key], value, err_msg=key)
    # it continued: 8 batches x 2 stages x 2 passes (+2 to set up) for a whole run; fewer after the kill
    assert len(resumed_log.read_text().split()) < 2 + 8 * 2 * 2
    assert len(killed_log.read_text().split()) >= 2 + 3 * 2


def test_a_run_interrupted_in_process_resumes(tmp_path, monkeypatch):
    from netdissect.ablation import compute

    images = write_folders(tmp_path / "images", {"0": 6, "1": 6}, size=12)
    model = LoadedModel(SmallCNN().eval(), Preprocess(), "m")
    options = dict(top_k=2, batch_size=3, checkpoint_every=0, progress=False, report=False)
    reference = ablate(model, images, "conv2", method="mean", **options)
    real, calls = compute.score_configs, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # the second batch of the group stage
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compute, "score_configs", interrupted)
    with contextlib.suppress(KeyboardInterrupt):
        ablate(model, images, "conv2", tmp_path / "out", method="mean", **options)
    state = checkpoint_state(tmp_path / "out" / "checkpoints" / "ablation.ckpt")
    assert state["stage"] == "group" and state["batch"] == 1 and set(state["done"]) == {"mean", "single"}
    monkeypatch.setattr(compute, "score_configs", real)
    resumed = ablate(model, images, "conv2", tmp_path / "out", method="mean", **options)
    for key, value in reference.arrays().items():
        np.testing.assert_array_equal(resumed.arrays()[key], value, err_msg=key)
