"""The rotation baseline as a sweep: dissect a layer in rotations R**P for several powers P.

The rotation math is in :mod:`netdissect.math.rotation`; this module runs one dissection per power
and plots the detector counts against P.
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
    and writes it as ``out/rotation_sweep.json`` with a plot ``out/rotation_sweep.png``.
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
    plot_rotation_sweep(curves, out / "rotation_sweep.png")
    return curves


def plot_rotation_sweep(curves: dict, path) -> None:
    """Unique detectors and detectors against the rotation power, one line per layer (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.4), dpi=120)
    FigureCanvasAgg(figure)
    for k, key in enumerate(("unique_detectors", "detectors")):
        axes = figure.add_subplot(1, 2, k + 1)
        for name, entry in curves["layers"].items():
            axes.plot(curves["powers"], entry[key], marker="o", label=name)
        axes.set_xlabel("rotation power P")
        axes.set_ylabel(key.replace("_", " "))
        axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
