"""Resumable runs: checkpoints, kill -9 in either pass, corrupt checkpoints, killed overwrites."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import checkpoint_state, same_layer_results, subprocess_env
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.runs.checkpoints import (
    MAGIC,
    Checkpointer,
    checkpoint_key,
    load_checkpoint,
    previous_path,
    read_checkpoint,
    resume_together,
    save_checkpoint,
)

BATCHES = 10


def test_checkpoint_round_trip_and_key(tmp_path):
    path = tmp_path / "c" / "rank0.ckpt"
    state = {"pass": 1, "next_batch": 3, "stats": {"x": {"values": torch.arange(5.0), "k": 5}}}
    save_checkpoint(path, "key-a", state)
    loaded = load_checkpoint(path, "key-a")
    assert loaded["next_batch"] == 3 and torch.equal(loaded["stats"]["x"]["values"], torch.arange(5.0))
    assert load_checkpoint(path, "key-b") is None  # another run's checkpoint is not used
    assert path.exists()  # ... nor deleted
    key, peeked = read_checkpoint(path)  # looked into as it is, whatever its key
    assert (
        key == "key-a" and peeked["next_batch"] == 3 and torch.equal(peeked["stats"]["x"]["values"], torch.arange(5.0))
    )
    assert read_checkpoint(tmp_path / "none.ckpt") is None
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
    with pytest.raises(ValueError, match=f"checkpoint {path}: "):
        read_checkpoint(path)  # looking into it says what is wrong, and removes nothing
    with pytest.warns(UserWarning, match=rf"checkpoint {path} is corrupt .*restarting from the beginning$"):
        assert load_checkpoint(path, "k") is None
    assert not path.exists()


def saves(path: Path, batches: int) -> None:
    for b in range(1, batches + 1):
        save_checkpoint(path, "k", {"pass": 1, "next_batch": b, "values": torch.full((50,), float(b))})


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    path = tmp_path / "rank0.ckpt"
    saves(path, 3)
    assert load_checkpoint(previous_path(path), "k")["next_batch"] == 2  # the one before is kept
    data = path.read_bytes()
    path.write_bytes(
        {"flip": data[:-9] + bytes([data[-9] ^ 1]) + data[-8:], "truncate": data[:-100], "empty": b""}[damage]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = load_checkpoint(path, "k")
    assert [str(w.message) for w in caught] == [
        f"checkpoint {path} is corrupt ({'not a netdissect checkpoint' if damage == 'empty' else 'its contents do not match its checksum'}); "
        "continuing from the previous checkpoint rank0.ckpt.prev (pass 1, batch 2)"
    ]
    assert state["next_batch"] == 2 and torch.equal(state["values"], torch.full((50,), 2.0))
    assert not path.exists() and previous_path(path).exists()
    save_checkpoint(path, "k", {"pass": 1, "next_batch": 3})  # the run goes on from there
    assert load_checkpoint(previous_path(path), "k")["next_batch"] == 2


def test_both_checkpoints_corrupt_restart_with_one_warning(tmp_path):
    path = tmp_path / "rank0.ckpt"
    saves(path, 2)
    for p in (path, previous_path(path)):
        p.write_bytes(p.read_bytes()[:60])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_checkpoint(path, "k") is None
    assert len(caught) == 1 and "restarting from the beginning (rank0.ckpt.prev is corrupt too)" in str(
        caught[0].message
    )
    assert not path.exists() and not previous_path(path).exists()


def test_kill_between_the_renames_of_a_save_keeps_the_previous_state(tmp_path):
    path = tmp_path / "rank0.ckpt"
    saves(path, 2)
    path.unlink()  # what a kill after "current -> .prev" and before "new -> current" leaves
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing is corrupt
        assert load_checkpoint(path, "k")["next_batch"] == 1


def test_a_failed_write_keeps_the_checkpoints_and_the_run_going(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "rank0.ckpt"
    checkpointer = Checkpointer(path, "k", 0)
    checkpointer.save({"pass": 1, "next_batch": 1})
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("netdissect.runs.checkpoints.os.fsync", disk_full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checkpointer.save({"pass": 1, "next_batch": 2})
        checkpointer.save({"pass": 1, "next_batch": 3})
    assert len(caught) == 1 and "cannot write checkpoint" in str(caught[0].message)
    assert "No space left on device" in str(caught[0].message)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["rank0.ckpt"]
    monkeypatch.undo()
    checkpointer.save({"pass": 1, "next_batch": 4})
    checkpointer.clear()
    assert not path.parent.exists()  # current and previous checkpoints gone with their directory


def test_ranks_resume_in_the_same_pass():
    one, two = {"pass": 1, "next_batch": 3}, {"pass": 2, "next_batch": 0}
    assert resume_together(one, [1, 2]) is one
    assert resume_together(two, [2, 2]) is two
    with pytest.warns(UserWarning, match="running pass 1 again"):
        assert resume_together(two, [2, 0]) is None
    assert resume_together(None, [0, 2]) is None


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


def kill_when(proc: subprocess.Popen, path: Path, wanted_pass: int, batches: int) -> dict:
    """SIGKILL ``proc`` once its checkpoint is in ``wanted_pass`` with ``batches`` done; its last state."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = checkpoint_state(path)
        if state and state["pass"] == wanted_pass and state["next_batch"] >= batches:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # killed between a save's two renames, the previous checkpoint stands (as a resume reads it)
            return checkpoint_state(path) or checkpoint_state(previous_path(path))
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


def test_kill_in_pass_2_keeps_the_image_values(dataset, tmp_path):
    """Pass 2's image-level values are in its checkpoints: a killed run resumes to the same values."""
    reference = tmp_path / "reference"
    done = subprocess.run(
        command(dataset, reference, None, 0.0, "--image-values"), capture_output=True, text=True, timeout=300,
        env=subprocess_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = start(dataset, out, log, "--image-values")
    state = kill_when(proc, out / "checkpoints" / "rank0.ckpt", 2, 3)
    assert proc.returncode == -signal.SIGKILL and 3 <= state["next_batch"] < BATCHES
    resumed = subprocess.run(
        command(dataset, out, None, 0.0, "--image-values"), capture_output=True, text=True, timeout=300,
        env=subprocess_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    for layer in ("conv1", "conv2"):
        same_layer_results(reference / layer, out / layer)  # image_values included (iou.npz)
        with np.load(out / layer / "iou.npz") as z:
            assert z["image_values"].shape[0] == 4 * BATCHES - 1


def start(dataset: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(dataset, out, log, 0.15, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


@pytest.mark.parametrize("both", [False, True])
def test_corrupt_checkpoint_resumes_from_the_last_good_state(dataset, reference, tmp_path, both):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = start(dataset, out, log)
    path = out / "checkpoints" / "rank0.ckpt"
    kill_when(proc, path, 1, 4)
    previous = checkpoint_state(previous_path(path))
    assert previous["pass"] == 1
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short
    if both:
        data = bytearray(previous_path(path).read_bytes())
        data[len(data) // 2] ^= 0x55
        previous_path(path).write_bytes(bytes(data))
    log.unlink()
    resumed = subprocess.run(
        command(dataset, out, log), capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("UserWarning") == 1 and "Traceback" not in resumed.stderr
    if both:
        assert "restarting from the beginning" in resumed.stderr
        assert forwards(log) == BATCHES  # pass 1 from its beginning, pass 2 from the cache
    else:
        assert f"continuing from the previous checkpoint rank0.ckpt.prev (pass 1, batch {previous['next_batch']})" in (
            resumed.stderr
        )
        assert forwards(log) == (BATCHES - previous["next_batch"]) + BATCHES  # pass 2 runs the model again
    for layer in ("conv1", "conv2"):
        same_layer_results(reference / layer, out / layer)


def test_killed_overwrite_keeps_the_old_run_and_resumes(dataset, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    old = subprocess.run(
        command(dataset, out, None, 0.0, "--quantile", "0.02"),
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert old.returncode == 0, old.stderr
    (out / "notes.txt").write_text("mine")
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    proc = start(dataset, out, log, "--overwrite")
    state = kill_when(proc, out / ".overwrite" / "checkpoints" / "rank0.ckpt", 2, 3)
    now = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert {k: v for k, v in now.items() if k.parts[0] != ".overwrite"} == files  # the old run, byte for byte
    log.unlink()
    resumed = subprocess.run(
        command(dataset, out, log, 0.0, "--overwrite"),
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert forwards(log) == BATCHES - state["next_batch"]  # the staged run went on from its checkpoint
    for layer in ("conv1", "conv2"):
        same_layer_results(reference / layer, out / layer)
    assert json.loads((out / "run.json").read_text())["state"] == "done"
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "conv1",
        "conv2",
        "netdissect.json",
        "notes.txt",
        "run.json",
        "summary.json",
    ]


def test_other_options_do_not_reuse_a_checkpoint(dataset, tmp_path):
    out, log = tmp_path / "run", tmp_path / "forward.log"
    proc = start(dataset, out, log)
    kill_when(proc, out / "checkpoints" / "rank0.ckpt", 1, 3)
    log.unlink()
    # another batch size forms other batches: the checkpoint does not apply, the run starts over
    argv = command(dataset, out, log)
    argv[argv.index("--batch-size") + 1] = "5"
    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert resumed.returncode == 0, resumed.stderr
    assert forwards(log) == 8  # 40 - 1 images in batches of 5, pass 2 from the cache


def test_clear_removes_what_a_killed_write_left(tmp_path):
    path = tmp_path / "checkpoints" / "rank0.ckpt"
    checkpointer = Checkpointer(path, "key", 0)
    checkpointer.save({"pass": 1, "next_batch": 1})
    checkpointer.save({"pass": 1, "next_batch": 2})
    (path.parent / f".{path.name}.tmp99999").write_bytes(b"half a checkpoint")  # a process killed mid-write
    checkpointer.clear()
    assert not path.parent.exists()
