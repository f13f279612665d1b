"""Run directories: the recorded state and the lock that keeps two runs apart."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import RAW, LookupNet, tiny_maps
from netdissect import BrodenDataset, DissectionResult, dissect
from netdissect.engine import runner as engine
from netdissect.errors import ActivationError, DatasetError, RunDirectoryError
from netdissect.runs import directory as rundir
from netdissect.runs.directory import run_lock

OPTIONS = dict(quantile=0.5, workers=0, progress=False, device="cpu", batch_size=1)


def test_state_done_and_failed(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    out = tmp_path / "run"
    dissect(LookupNet(tiny_maps()), data, ["layer"], out, **OPTIONS)
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "done" and "error" not in record
    maps = tiny_maps()
    maps[0, 0, 0, 0] = float("nan")
    with pytest.raises(ActivationError, match="NaN"):
        dissect(LookupNet(maps), data, ["layer"], tmp_path / "bad", **OPTIONS)
    record = json.loads((tmp_path / "bad" / "run.json").read_text())
    assert record["state"] == "failed" and "NaN" in record["error"]


def test_refused_run_leaves_the_finished_one_alone(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    out = tmp_path / "run"
    dissect(LookupNet(tiny_maps()), data, ["layer"], out, **OPTIONS)
    with pytest.raises(RunDirectoryError, match="different run"):
        dissect(LookupNet(tiny_maps()), data, ["layer"], out, **{**OPTIONS, "quantile": 0.25})
    assert json.loads((out / "run.json").read_text())["state"] == "done"


def test_second_process_cannot_write_a_locked_directory(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    holder = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from netdissect.runs.directory import run_lock
        with run_lock(Path({str(out)!r})):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        data = BrodenDataset(tiny_dataset, preprocess=RAW)
        with pytest.raises(RunDirectoryError, match=rf"being written by another netdissect run \(pid {proc.pid}\)"):
            dissect(LookupNet(tiny_maps()), data, ["layer"], out, **OPTIONS)
    finally:
        proc.kill()
        proc.wait()
    with run_lock(out):  # released when its holder died
        pass


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file"), run_lock(tmp_path / "f"):
        pass


# --------------------------------------------------------------------------------------------
# overwrites: the old run stays until the new one has finished


def snapshot(out) -> dict:
    """Every file under ``out`` but the lock and a staged run, by relative path: its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != ".lock" and p.relative_to(out).parts[0] != ".overwrite"
    }


def test_failed_overwrite_leaves_the_old_run_byte_identical(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    dissect(LookupNet(tiny_maps()), BrodenDataset(tiny_dataset, preprocess=RAW), ["layer"], out, **OPTIONS)
    (out / "index.html").write_text("the old run's report")
    before = snapshot(out)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dataset, bad)
    (bad / "images" / "im1.jpg").write_bytes(b"not a jpeg")  # the second image (index.csv row 2)
    with pytest.raises(DatasetError, match=r"cannot read image .*im1\.jpg \(index.csv row 2\)"):
        dissect(LookupNet(tiny_maps()), BrodenDataset(bad, preprocess=RAW), ["layer"], out, overwrite=True, **OPTIONS)
    assert snapshot(out) == before
    staged = json.loads((out / ".overwrite" / "run.json").read_text())
    assert staged["state"] == "failed" and "im1.jpg" in staged["error"]
    assert DissectionResult.load(out)["layer"].summary() == json.loads(before["summary.json"])["layers"]["layer"]


def test_overwrite_replaces_the_run_once_finished(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    out = tmp_path / "run"
    dissect(LookupNet(tiny_maps()), data, ["layer"], out, **OPTIONS)
    (out / "index.html").write_text("the old run's report")
    (out / "report-images").mkdir()
    (out / "report-images" / "000001.jpg").write_bytes(b"an old top image")
    (out / "extra_pages.json").write_text('[{"title": "ablation of the old model", "path": "abl/index.html"}]')
    (out / "notes.txt").write_text("not netdissect's")
    new = {**OPTIONS, "quantile": 0.25}
    result = dissect(LookupNet(tiny_maps()), data, ["layer"], out, overwrite=True, **new)
    fresh = dissect(LookupNet(tiny_maps()), data, ["layer"], tmp_path / "fresh", **new)
    assert result.directory == out
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "layer",
        "netdissect.json",
        "notes.txt",
        "run.json",
        "summary.json",
    ]
    for name in ("tally.csv", "iou.npz", "top_maps.npz"):
        assert (out / "layer" / name).read_bytes() == (fresh.directory / "layer" / name).read_bytes()
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "done" and record["key"]["options"]["quantile"] == 0.25


def count_renames(monkeypatch, fail_at: int | None = None) -> list[int]:
    """Count os.replace calls from now on; raise OSError at call number ``fail_at``."""
    calls = [0]
    real = os.replace

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OSError(f"killed at rename {fail_at}")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_replacement_cut_short_is_completed_by_the_next_run(tiny_dataset, tmp_path, monkeypatch):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    new = {**OPTIONS, "quantile": 0.25}
    reference = dissect(LookupNet(tiny_maps()), data, ["layer"], tmp_path / "reference", **new)

    def old_run(out):
        dissect(LookupNet(tiny_maps()), data, ["layer"], out, **OPTIONS)
        (out / "summary.png").write_bytes(b"the old run's chart")

    # count the renames of a replacement ...
    old_run(tmp_path / "counted")
    monkeypatch.setattr(engine, "replace_run", lambda run_dir: None)
    dissect(LookupNet(tiny_maps()), data, ["layer"], tmp_path / "counted", overwrite=True, **new)
    calls = count_renames(monkeypatch)
    rundir.replace_run(tmp_path / "counted")
    renames = calls[0]
    monkeypatch.undo()
    assert renames == 8  # the journal, 4 old entries aside, 3 new entries in
    # ... then cut one short at each of them: the next run completes the replacement
    for fail_at in range(1, renames + 1):
        out = tmp_path / f"cut{fail_at}"
        old_run(out)

        def cut(run_dir, fail_at=fail_at):
            count_renames(monkeypatch, fail_at)
            rundir.replace_run(run_dir)

        monkeypatch.setattr(engine, "replace_run", cut)
        with pytest.raises(OSError, match=f"killed at rename {fail_at}"):
            dissect(LookupNet(tiny_maps()), data, ["layer"], out, overwrite=True, **new)
        monkeypatch.undo()
        again = dissect(LookupNet(tiny_maps()), data, ["layer"], out, overwrite=True, **new)
        assert sorted(p.name for p in out.iterdir()) == [
            ".lock",
            "layer",
            "netdissect.json",
            "run.json",
            "summary.json",
        ], fail_at
        assert (out / "layer" / "tally.csv").read_bytes() == (reference.directory / "layer" / "tally.csv").read_bytes()
        assert again["layer"].summary() == reference["layer"].summary()
        assert json.loads((out / "run.json").read_text())["state"] == "done"
