"""Run directories: the recorded state and the lock that keeps two runs apart."""

import json
import subprocess
import sys
import textwrap

import pytest

from helpers import RAW, LookupNet, tiny_maps
from netdissect import BrodenDataset, dissect
from netdissect.errors import ActivationError, RunDirectoryError
from netdissect.rundir import run_lock

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
        from netdissect.rundir import run_lock
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
