"""Scale-out: torchrun with gloo on CPU gives exactly the results of one process."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import same_layer_results, subprocess_env
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.engine.distributed import Shard

torch_distributed = pytest.importorskip("torch.distributed")
if not torch_distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)


@pytest.mark.parametrize("items,batch,world", [(13, 4, 2), (13, 4, 3), (40, 8, 4), (5, 16, 2), (1, 1, 1)])
def test_batch_ranges_cover_every_batch_once(items, batch, world):
    ranges = [Shard(rank, world).batch_range(items, batch) for rank in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == -(-items // batch)
    for (_, end), (first, _) in itertools.pairwise(ranges):
        assert end == first  # contiguous, in rank order
    sizes = [end - first for first, end in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_shard_needs_no_group():
    shard = Shard()
    assert shard.gather("x") == ["x"] and shard.broadcast(3) == 3 and shard.is_main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # 37 images: not divisible by the batch size nor by the world size (uneven shards)
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "d", n=37, size=32, seed=3, progress=False)


def argv(dataset: Path, out: Path, batch: int, *extra: str) -> list[str]:
    return [
        "-m",
        "netdissect",
        "dissect",
        "--model",
        "helpers:small_cnn",
        "--layers",
        "conv1",
        "conv2",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--batch-size",
        str(batch),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        "--no-report",
        "--top-images",
        "4",
        *extra,
    ]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]


@pytest.mark.parametrize(
    "nproc,batch,extra",
    [
        (2, 4, []),  # 10 batches: 5 per rank, the last one of 1 image
        (3, 8, ["--null-samples", "3"]),  # 5 batches: 1, 2, 2; the null's shifts follow the batch, not the rank
        (2, 64, []),  # 1 batch: rank 0 reads nothing
        (2, 4, ["--image-values"]),  # each rank fills its images' rows; the sum is the one-process values
    ],
)
def test_torchrun_matches_one_process(dataset, tmp_path, nproc, batch, extra):
    run([sys.executable, *argv(dataset, tmp_path / "one", batch, *extra)], tmp_path)
    proc = run([*torchrun(nproc), *argv(dataset, tmp_path / "many", batch, *extra)], tmp_path)
    assert proc.stdout.count("results:") == 1  # rank 0 alone prints
    for layer in ("conv1", "conv2"):
        same_layer_results(tmp_path / "one" / layer, tmp_path / "many" / layer)
    meta = json.loads((tmp_path / "many" / "conv2" / "units.json").read_text())["metadata"]
    assert meta["timings"]["processes"] == nproc
    assert not (tmp_path / "many" / "checkpoints").exists()  # every rank dropped its checkpoint
    assert json.loads((tmp_path / "many" / "run.json").read_text())["state"] == "done"


def test_ranks_with_other_weights_are_refused(dataset, tmp_path):
    cmd = [*torchrun(2), *argv(dataset, tmp_path / "run", 8)]
    cmd[cmd.index("helpers:small_cnn")] = "helpers:rank_cnn"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=subprocess_env())
    assert proc.returncode != 0
    assert "netdissect: error: the model's weights differ between ranks" in proc.stderr
    assert not (tmp_path / "run" / "conv1" / "tally.csv").exists()


def test_torchrun_overwrite_replaces_the_run_once_finished(dataset, tmp_path):
    run([sys.executable, *argv(dataset, tmp_path / "one", 4)], tmp_path)
    run([sys.executable, *argv(dataset, tmp_path / "many", 4, "--quantile", "0.02")], tmp_path)  # the old run
    # every rank checkpoints into the staged run; rank 0 swaps it in after all have finished
    run([*torchrun(2), *argv(dataset, tmp_path / "many", 4, "--overwrite", "--checkpoint-every", "0")], tmp_path)
    for layer in ("conv1", "conv2"):
        same_layer_results(tmp_path / "one" / layer, tmp_path / "many" / layer)
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [
        ".lock",
        "conv1",
        "conv2",
        "netdissect.json",
        "run.json",
        "summary.json",
    ]
    assert json.loads((tmp_path / "many" / "run.json").read_text())["state"] == "done"
