"""Stored-hash guard: refactoring must leave a dissection's output files byte-identical.

Three runs are hashed: the demo model on the demo's synthetic dataset (40 images of 128 px,
layers conv3 and conv4), the same data with ``formula_length=2`` on conv4, and LookupNet's
planted maps on the hand-written tiny dataset of tests/helpers.py in both IoU modes. For each
layer the SHA-256 of ``tally.csv`` (and ``formulas.csv``), of ``units.json`` once parsed, and of
the bytes of every array of ``iou.npz`` and ``top_maps.npz`` (each array alone, not the zip,
whose member timestamps change) are compared with the hashes stored below, which were
generated from the code before the refactoring of "one place for each piece of knowledge".

Volatile in ``units.json`` (found by diffing the files of two identical runs and reading
them): ``metadata.versions`` (netdissect, torch, python), ``metadata.dataset.path`` (the
temporary directory) and the ``*_seconds`` timings of ``metadata.timings``. Those are dropped
before hashing; everything else, ``timings.processes`` included, is hashed.

Float honesty: the demo model's activations (hence the thresholds, ``top_values``,
``top_maps`` and ``units.json``'s ``threshold`` and ``top_maxima``) depend on which CPU kernels
torch picks. They are the same with 1, 2 and 8 threads, but ``ATEN_CPU_CAPABILITY=default``
instead of AVX2 changes their last bits (the counts, IoUs, labels, ``tally.csv`` and
``formulas.csv`` stay the same). So the hashes are in two sets: ``PORTABLE`` (counts, IoUs,
labels, tally and formula files, ``units.json`` without the activation values, and all of
LookupNet's outputs, whose activations are planted), checked everywhere, and ``ACTIVATIONS`` (the activation-valued outputs), checked only on the platform
they were recorded on (``RECORDED_ON``) and skipped, saying why, elsewhere.

Regenerate (only when an output is meant to change): ``python tests/test_outputs_unchanged.py``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # helpers, when run as a script

from helpers import RAW, LookupNet, tiny_maps, write_tiny_dataset
from netdissect import BrodenDataset, dissect, load_model
from netdissect.data.synthetic import make_synthetic_dataset

#: Arrays and units.json fields whose values are (or come straight from) float activations.
ACTIVATION_ARRAYS = ("thresholds", "top_values", "top_maps")
ACTIVATION_FIELDS = ("threshold", "top_maxima")

#: Where ACTIVATIONS was recorded: (machine, torch version, torch's CPU capability).
RECORDED_ON = ("x86_64", "2.14.1", "AVX2")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_sha(value: object) -> str:
    return _sha(json.dumps(value, sort_keys=True).encode())


def _stable_units(path: Path) -> dict:
    """units.json with its volatile metadata dropped (see the module's docstring)."""
    units = json.loads(path.read_text())
    metadata = units["metadata"]
    metadata.pop("versions")
    metadata["dataset"].pop("path")
    metadata["timings"] = {k: v for k, v in metadata["timings"].items() if not k.endswith("_seconds")}
    return units


def _layer_hashes(layer_dir: Path, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """(portable, activation) hashes of one layer directory's output files."""
    portable: dict[str, str] = {}
    activations: dict[str, str] = {}
    for name in ("tally.csv", "formulas.csv"):
        if (layer_dir / name).exists():
            portable[f"{prefix}/{name}"] = _sha((layer_dir / name).read_bytes())
    units = _stable_units(layer_dir / "units.json")
    activations[f"{prefix}/units.json"] = _json_sha(units)
    for unit in units["units"]:
        for field in ACTIVATION_FIELDS:
            unit.pop(field)
    portable[f"{prefix}/units.json[no activations]"] = _json_sha(units)
    for npz in ("iou.npz", "top_maps.npz"):
        with np.load(layer_dir / npz) as arrays:
            for key in arrays.files:
                target = activations if key in ACTIVATION_ARRAYS else portable
                target[f"{prefix}/{npz}:{key}"] = _sha(np.ascontiguousarray(arrays[key]).tobytes())
    return portable, activations


def compute_hashes(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Run the three dissections under ``root`` and hash their outputs."""
    common = dict(device="cpu", workers=0, progress=False)
    data = make_synthetic_dataset(root / "demo-data", n=40, size=128, seed=0)
    model = load_model("demo")
    dissect(model, data, ["conv3", "conv4"], root / "demo", **common)
    dissect(model, data, ["conv4"], root / "formula", formula_length=2, **common)
    tiny = BrodenDataset(write_tiny_dataset(root / "tiny-data"), preprocess=RAW)
    for mode in ("paper", "lite"):
        dissect(
            LookupNet(tiny_maps()),
            tiny,
            ["layer"],
            root / f"tiny-{mode}",
            iou_mode=mode,
            quantile=0.5,
            batch_size=1,
            **common,
        )
    layers = [
        ("demo", "conv3"),
        ("demo", "conv4"),
        ("formula", "conv4"),
        ("tiny-paper", "layer"),
        ("tiny-lite", "layer"),
    ]
    portable: dict[str, str] = {}
    activations: dict[str, str] = {}
    for run, layer in layers:
        p, a = _layer_hashes(root / run / layer, f"{run}/{layer}")
        portable.update(p)
        # LookupNet's activations are planted values, exact on every platform
        (portable if run.startswith("tiny") else activations).update(a)
    return portable, activations


PORTABLE: dict[str, str] = {
    "demo/conv3/tally.csv": "7d009779d664735705bd2dc4de52722fa9a6fb18e0a4b363b9025ecd354da5ce",
    "demo/conv3/units.json[no activations]": "d0f4de07559f3b5fd164abb793aace714179c3bd55d8085cd1fc3d3f138251cf",
    "demo/conv3/iou.npz:iou": "61c977f7d49076a4ffcef014d9aa04cdcca2066a67a766014c737b0ca8cbdab0",
    "demo/conv3/iou.npz:intersect": "0271831a74e7a0c48e0470a7969ce81871e72a754e7161379617200411cf0f06",
    "demo/conv3/iou.npz:activation": "ab0cef4d41db981c505745a5fd3bfcbfd59a7146241467b955a90e6607efc746",
    "demo/conv3/iou.npz:truth": "21f3af2da62b997ca4270fd7c4b2c1ab24709a714ca0f4f742817f42658ac0e9",
    "demo/conv3/iou.npz:label_names": "66ab85b3a87411a193d5f15346fd48557a56a8382891b7b5398cb089ada8b0be",
    "demo/conv3/iou.npz:label_category": "cc504468f08e11814065370cfbb5b4fb20099f7c681688b9f560f70bd82d16c3",
    "demo/conv3/iou.npz:categories": "d09f4bb4cafc0c99807e3828f6dd1b52e4b8cd6ace480c6b8e6dec9b3d0cc4b6",
    "demo/conv3/iou.npz:top_indices": "42777f5eaada383ff37b6f49c9c3dadacb7342ec0b7b5582b8a33873053b9ebb",
    "demo/conv3/iou.npz:iou_given": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "demo/conv4/tally.csv": "7933778586cc737751de3134cf9618f7a5da66acec6552967d6b786bc8e27e18",
    "demo/conv4/units.json[no activations]": "b07872d627538b81444fc212139adb703f4ea81f2360e49b65ad264f299e28ba",
    "demo/conv4/iou.npz:iou": "cb1b3936b45273975af389c3cc6e3597af8d8b4882778f9b126ee24ff0d3d170",
    "demo/conv4/iou.npz:intersect": "f0636f61d2b7f7a2f560b6374692af14aecd26bfa7bb5f6a5c3373a3a80e31b6",
    "demo/conv4/iou.npz:activation": "b23307670b2ad13a34ecf771c0c4e9b234af1eb621ef5a0d0f87bd051cc960d7",
    "demo/conv4/iou.npz:truth": "21f3af2da62b997ca4270fd7c4b2c1ab24709a714ca0f4f742817f42658ac0e9",
    "demo/conv4/iou.npz:label_names": "66ab85b3a87411a193d5f15346fd48557a56a8382891b7b5398cb089ada8b0be",
    "demo/conv4/iou.npz:label_category": "cc504468f08e11814065370cfbb5b4fb20099f7c681688b9f560f70bd82d16c3",
    "demo/conv4/iou.npz:categories": "d09f4bb4cafc0c99807e3828f6dd1b52e4b8cd6ace480c6b8e6dec9b3d0cc4b6",
    "demo/conv4/iou.npz:top_indices": "c343b72720562faf0981b8a004c3cd3079dc1f80d00fb05cbf25659c17d31427",
    "demo/conv4/iou.npz:iou_given": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "formula/conv4/tally.csv": "7933778586cc737751de3134cf9618f7a5da66acec6552967d6b786bc8e27e18",
    "formula/conv4/formulas.csv": "c4b3b96379f55984da371804bfcb9e08ae874b1fb4f1558ca5943f9fc05ff033",
    "formula/conv4/units.json[no activations]": "1e1d87ebc7d89a28619e9b00be64f9e2629501c521f6cd5889d4f76ba1efb9bf",
    "formula/conv4/iou.npz:iou": "cb1b3936b45273975af389c3cc6e3597af8d8b4882778f9b126ee24ff0d3d170",
    "formula/conv4/iou.npz:intersect": "f0636f61d2b7f7a2f560b6374692af14aecd26bfa7bb5f6a5c3373a3a80e31b6",
    "formula/conv4/iou.npz:activation": "b23307670b2ad13a34ecf771c0c4e9b234af1eb621ef5a0d0f87bd051cc960d7",
    "formula/conv4/iou.npz:truth": "21f3af2da62b997ca4270fd7c4b2c1ab24709a714ca0f4f742817f42658ac0e9",
    "formula/conv4/iou.npz:label_names": "66ab85b3a87411a193d5f15346fd48557a56a8382891b7b5398cb089ada8b0be",
    "formula/conv4/iou.npz:label_category": "cc504468f08e11814065370cfbb5b4fb20099f7c681688b9f560f70bd82d16c3",
    "formula/conv4/iou.npz:categories": "d09f4bb4cafc0c99807e3828f6dd1b52e4b8cd6ace480c6b8e6dec9b3d0cc4b6",
    "formula/conv4/iou.npz:top_indices": "c343b72720562faf0981b8a004c3cd3079dc1f80d00fb05cbf25659c17d31427",
    "formula/conv4/iou.npz:iou_given": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "formula/conv4/iou.npz:formula_labels": "9d11e4182d34b9e2be224827a0b5fd293d4eb755ec5148f42760ff551150d7d1",
    "formula/conv4/iou.npz:formula_ops": "1854d473235476f03cbac20c4bb533833a8c78ddbd73daf4b4580cd8c151848e",
    "formula/conv4/iou.npz:formula_iou": "b1201ec7874e199c0fdd8ec4d7aae8e0b5bdbcba9cf6f7c88f4cc17bc4503104",
    "formula/conv4/iou.npz:formula_single_label": "7bdfbd456e715c9b1cc387065bb90e7528c1c4aefc76b27b64002cf3fb522fa7",
    "formula/conv4/iou.npz:formula_single_iou": "0ec0d03c6c09faf61e700f551926e8ab47c44a462d766109d838e7ab7f025ad3",
    "tiny-paper/layer/tally.csv": "1d45153977992b8f53f7073f37a06c38a17c2ba4dcc5503df258a6e4ae26e288",
    "tiny-paper/layer/units.json[no activations]": "7bb4258baf5f2fbe7bac2f957d232f1b13a4537294669e4b40bed22d8210c5a5",
    "tiny-paper/layer/iou.npz:iou": "56b1dda5c0eb7151e08244d82bede5c81e7f842a7a5ee02292250ce3c2e99df5",
    "tiny-paper/layer/iou.npz:intersect": "6e4889b9a62c6054fb4a0b1df690497407e03725d25d2f0fbdcffca054802559",
    "tiny-paper/layer/iou.npz:activation": "d88ef60d512ce42525878bff3ae24ddfa08dfc0d5f342b81bcee003e9c7138af",
    "tiny-paper/layer/iou.npz:truth": "71cf70b0cc851e0e14ed6a05be6a320a267638f5e1f81820ce04e20f569a4f50",
    "tiny-paper/layer/iou.npz:label_names": "38b269e46dfa10f7919db694c930b93c771b1556888f3a965e0defb8e8efd0af",
    "tiny-paper/layer/iou.npz:label_category": "e361456c1768bb715121b198775c41ba975050aa881292f73f28b4328d3f713e",
    "tiny-paper/layer/iou.npz:categories": "a18ca645663c902fb9b8487a30811239a0a81e405cd6f9f5b68ef1262528f7ac",
    "tiny-paper/layer/iou.npz:top_indices": "db7f8e2aa97f8d230fc0a6c6d68184ecfee02f4bd2e94dcb331c0d3d54ca5fe8",
    "tiny-paper/layer/iou.npz:iou_given": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "tiny-paper/layer/units.json": "165902080b7953b8302a6b2c8710dedbcf308c87b1b01c4417711a3d0d4877be",
    "tiny-paper/layer/iou.npz:thresholds": "0051cfd064ea4a91086438ce7f6b3d21ca62d76ee264a63f3692e57cda89cd6e",
    "tiny-paper/layer/iou.npz:top_values": "66aa5265fb25a9151e9b998b2153e6a19358611fed4e7bdc7b0885ef36ca04de",
    "tiny-paper/layer/top_maps.npz:top_maps": "c11a3d1061b1c47681692e5e593f25fbcbc8482e3cf3f85f97165944e14bac1f",
    "tiny-lite/layer/tally.csv": "c775905999351e28046d0caa1d310eda2879cf25eb3c3db46a60b0bb48314b65",
    "tiny-lite/layer/units.json[no activations]": "cc26d99b5c76f446f1a7ca6454ca9066a650388d1d1ee87adc246d8d67b65777",
    "tiny-lite/layer/iou.npz:iou": "4c8f9080f47374d92ff9206e20670f068e8c8939dc89076f1c68ff74c1f1b345",
    "tiny-lite/layer/iou.npz:intersect": "6e4889b9a62c6054fb4a0b1df690497407e03725d25d2f0fbdcffca054802559",
    "tiny-lite/layer/iou.npz:activation": "180330b2dde1fa8090a6e111b1bed945a32d1e3fc92e70b22364b1c8aa75cb20",
    "tiny-lite/layer/iou.npz:truth": "71cf70b0cc851e0e14ed6a05be6a320a267638f5e1f81820ce04e20f569a4f50",
    "tiny-lite/layer/iou.npz:label_names": "38b269e46dfa10f7919db694c930b93c771b1556888f3a965e0defb8e8efd0af",
    "tiny-lite/layer/iou.npz:label_category": "e361456c1768bb715121b198775c41ba975050aa881292f73f28b4328d3f713e",
    "tiny-lite/layer/iou.npz:categories": "a18ca645663c902fb9b8487a30811239a0a81e405cd6f9f5b68ef1262528f7ac",
    "tiny-lite/layer/iou.npz:top_indices": "db7f8e2aa97f8d230fc0a6c6d68184ecfee02f4bd2e94dcb331c0d3d54ca5fe8",
    "tiny-lite/layer/iou.npz:iou_given": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "tiny-lite/layer/units.json": "8527221001ae4d904fcbdfd4bc10e1670625dabded4c57f3382d582a2bbea3e7",
    "tiny-lite/layer/iou.npz:thresholds": "252e1ca4191c9490c9ebf69366c21c0876f4436f7bc9ebf56d3cc37671ef2565",
    "tiny-lite/layer/iou.npz:top_values": "66aa5265fb25a9151e9b998b2153e6a19358611fed4e7bdc7b0885ef36ca04de",
    "tiny-lite/layer/top_maps.npz:top_maps": "c11a3d1061b1c47681692e5e593f25fbcbc8482e3cf3f85f97165944e14bac1f",
}

ACTIVATIONS: dict[str, str] = {
    "demo/conv3/units.json": "3a5e3a1636c77af8135f50643c539f031c7247cee034c9e3a1efaea30501fdb4",
    "demo/conv3/iou.npz:thresholds": "3489aea0350e882ea8248a37730f095005efe5b03057f13f3c81997c7143bfb1",
    "demo/conv3/iou.npz:top_values": "e2938f0b3f6ca5c71cf5aca6cced4ef7e58530d8be05e70174f564fdefc0e030",
    "demo/conv3/top_maps.npz:top_maps": "f999a503d2fdd526b4f7e092df53e5c2d6ee87715433480bb88a4602006c79be",
    "demo/conv4/units.json": "36259a2b6a6e1ebb6d4992ebf61e13692b41a0851a52aca9dc94d5124992ae17",
    "demo/conv4/iou.npz:thresholds": "5a222b26b4e9a8c22638aea66c54fee1b9b82c7463711e7b71ffdeca6db3620d",
    "demo/conv4/iou.npz:top_values": "ca3b95dff41b51fd386c90302871f0c42c50b15b323df1622d9afdcf66b93ae4",
    "demo/conv4/top_maps.npz:top_maps": "be3676f23b5913e25117d6350057b72918ae3da33ad049a1a21cdd7e6942b23b",
    "formula/conv4/units.json": "b6d1476048f387eedbbd10fa35603949501e90a6f3825cc07a73567373352c08",
    "formula/conv4/iou.npz:thresholds": "5a222b26b4e9a8c22638aea66c54fee1b9b82c7463711e7b71ffdeca6db3620d",
    "formula/conv4/iou.npz:top_values": "ca3b95dff41b51fd386c90302871f0c42c50b15b323df1622d9afdcf66b93ae4",
    "formula/conv4/top_maps.npz:top_maps": "be3676f23b5913e25117d6350057b72918ae3da33ad049a1a21cdd7e6942b23b",
}


@pytest.fixture(scope="module")
def hashes(tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    return compute_hashes(tmp_path_factory.mktemp("unchanged"))


def _differences(found: dict[str, str], stored: dict[str, str]) -> list[str]:
    return [name for name in sorted(set(found) | set(stored)) if found.get(name) != stored.get(name)]


def test_counts_ious_labels_and_files_unchanged(hashes):
    assert _differences(hashes[0], PORTABLE) == []


def test_activation_values_unchanged(hashes):
    here = (platform.machine(), torch.__version__.split("+")[0], torch.backends.cpu.get_cpu_capability())
    if here != RECORDED_ON:
        pytest.skip(
            f"activation hashes were recorded on {RECORDED_ON}; this is {here}, whose CPU kernels round differently"
        )
    assert _differences(hashes[1], ACTIVATIONS) == []


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        found = compute_hashes(Path(tmp))
    for title, table in zip(("PORTABLE", "ACTIVATIONS"), found):
        print(f"{title}: dict[str, str] = {{")
        for name, digest in table.items():
            print(f'    "{name}": "{digest}",')
        print("}\n")
