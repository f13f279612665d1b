"""Resumable runs: checkpoints, kill -9 in either pass, corrupt checkpoints."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import same_layer_results, subprocess_env
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.resume import MAGIC, Checkpointer, checkpoint_key, load_checkpoint, save_checkpoint

BATCHES = 10


def test_checkpoint_round_trip_and_key(tmp_path):
    path = tmp_path / "c" / "rank0.ckpt"
    state = {"pass": 1, "next_batch": 3, "stats": {"x": {"values": torch.arange(5.0), "k": 5}}}
    save_checkpoint(path, "key-a", state)
    loaded = load_checkpoint(path, "key-a")
    assert loaded["next_batch"] == 3 and torch.equal(loaded["stats"]["x"]["values"], torch.arange(5.0))
    assert load_checkpoint(path, "key-b") is None  # another run's checkpoint is not used
    assert path.exists()  # ... nor deleted
    assert checkpoint_key({"a": 1, "b": [2]}) == checkpoint_key({"b": [2], "a": 1})
    assert checkpoint_key({"a": 1}) != checkpoint_key({"a": 2})


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "pickle"])
def test_corrupt_checkpoint_is_reported_and_removed(tmp_path, damage):
    path = tmp_path / "rank0.ckpt"
    save_checkpoint(path, "k", {"pass": 1, "values": torch.ones(100)})
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-20] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "header":
        data[:5] = b"junk!"
    else:  # a payload with a valid checksum that is not a checkpoint
        import hashlib

        payload = b"not a torch file"
        data = bytearray(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"checkpoint {path} is corrupt .*restarting the pass"):
        assert load_checkpoint(path, "k") is None
    assert not path.exists()


def test_checkpointer_is_due_after_its_interval(tmp_path):
    every = Checkpointer(tmp_path / "checkpoints" / "a.ckpt", "k", 0)
    assert every.due()
    rarely = Checkpointer(tmp_path / "b.ckpt", "k", 3600)
    assert not rarely.due()
    assert not Checkpointer(None, "k", 0).due()  # no run directory: nothing to save
    every.save({"pass": 1})
    assert every.load() == {"pass": 1}
    every.clear()
    assert not (tmp_path / "checkpoints").exists()  # the last checkpoint takes its directory along


# --------------------------------------------------------------------------------------------
# kill -9 and resume, in a subprocess


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("syn") / "d", n=4 * BATCHES - 1, size=32, seed=5, progress=False
    )


def command(dataset: Path, out: Path, log: Path | None = None, delay: float = 0.0, *extra: str) -> list[str]:
    model_args = json.dumps({"delay": delay, "log": str(log) if log else None})
    return [
        sys.executable,
        "-m",
        "netdissect",
        "dissect",
        "--model",
        "helpers:small_cnn",
        "--model-args",
        model_args,
        "--layers",
        "conv1",
        "conv2",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        "--no-report",
        "--top-images",
        "4",
        "--checkpoint-every",
        "0",
        *extra,
    ]


def checkpoint_state(path: Path) -> dict | None:
    """The state in a checkpoint file (read like a user would peek at it), or None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    payload = data.split(b"\n", 2)[2]
    return torch.load(io.BytesIO(payload), weights_only=True)["state"]


def kill_when(proc: subprocess.Popen, path: Path, wanted_pass: int, batches: int) -> dict:
    """SIGKILL ``proc`` once its checkpoint is in ``wanted_pass`` with ``batches`` done; its last state."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = checkpoint_state(path)
        if state and state["pass"] == wanted_pass and state["next_batch"] >= batches:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return checkpoint_state(path)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the run never reached the wanted checkpoint")


def forwards(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = subprocess.run(command(dataset, out), capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("wanted_pass", [1, 2])
def test_kill_and_resume_gives_the_uninterrupted_results(dataset, reference, tmp_path, wanted_pass):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = subprocess.Popen(
        command(dataset, out, log, 0.15),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    state = kill_when(proc, out / "checkpoints" / "rank0.ckpt", wanted_pass, 3)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "run.json").read_text())["state"] == "running"  # killed: no chance to say so
    done = state["next_batch"]
    assert 3 <= done < BATCHES
    log.unlink()
    resumed = subprocess.run(
        command(dataset, out, log), capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    # pass 1 continues after its checkpoint, and then pass 2 must run the model (the cache died);
    # pass 2 continues after its checkpoint
    expected = (BATCHES - done) + BATCHES if wanted_pass == 1 else BATCHES - done
    assert forwards(log) == expected
    for layer in ("conv1", "conv2"):
        same_layer_results(reference / layer, out / layer)
    assert json.loads((out / "run.json").read_text())["state"] == "done"
    assert not (out / "checkpoints").exists()


def test_corrupt_checkpoint_restarts_the_pass(dataset, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = subprocess.Popen(
        command(dataset, out, log, 0.15),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    path = out / "checkpoints" / "rank0.ckpt"
    kill_when(proc, path, 1, 4)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    log.unlink()
    resumed = subprocess.run(
        command(dataset, out, log), capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {path} is corrupt" in resumed.stderr
    assert forwards(log) == BATCHES  # pass 1 from its beginning, pass 2 from the cache
    for layer in ("conv1", "conv2"):
        same_layer_results(reference / layer, out / layer)


def test_other_options_do_not_reuse_a_checkpoint(dataset, tmp_path):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = subprocess.Popen(
        command(dataset, out, log, 0.15),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    kill_when(proc, out / "checkpoints" / "rank0.ckpt", 1, 3)
    log.unlink()
    # another batch size forms other batches: the checkpoint does not apply, the run starts over
    argv = command(dataset, out, log)
    argv[argv.index("--batch-size") + 1] = "5"
    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert resumed.returncode == 0, resumed.stderr
    assert forwards(log) == 8  # 40 - 1 images in batches of 5, pass 2 from the cache
