"""The rotation baseline as a sweep: dissect a layer in rotations R**P for several powers P.

The rotation math is in :mod:`netdissect.math.rotation`; this module runs one dissection per power
and collects the detector counts against P; :mod:`netdissect.report.charts.rotation_sweep`
draws them (the CLI writes ``rotation_sweep.png``).
"""

from __future__ import annotations

from ..files import atomic_write_json
from ..runs.outputs import ROTATION, claim_output
from .runner import dissect

SWEEP_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def rotation_sweep(
    model,
    dataset,
    layers,
    out,
    seed: int = 0,
    powers=SWEEP_POWERS,
    **options,
) -> dict:
    """Dissect ``layers`` at each rotation power (one run directory per power under ``out``).

    Returns ``{"powers": [...], "layers": {layer: {"detectors": [...], "unique_detectors": [...]}}}``
    and writes it as ``out/rotation_sweep.json`` (the plot: :mod:`netdissect.report.charts.rotation_sweep`).
    """
    out = claim_output(out, ROTATION)
    curves: dict = {"powers": [float(p) for p in powers], "seed": seed, "layers": {}}
    for power in powers:
        result = dissect(
            model, dataset, layers, out / f"power_{power:.2f}", rotate=seed, rotation_power=power, **options
        )
        for name, summary in result.summary().items():
            entry = curves["layers"].setdefault(name, {"detectors": [], "unique_detectors": []})
            entry["detectors"].append(summary["detectors"])
            entry["unique_detectors"].append(summary["unique_detectors"])
    atomic_write_json(out / "rotation_sweep.json", curves)
    return curves
