"""Labelled images: folder matching, --size, sizes, Broden scene labels; the split's fallback."""

from __future__ import annotations

import numpy as np
import pytest

from ablation_helpers import write_folders
from netdissect import ablate, load_model
from netdissect.ablation.images import labelled_images, match_classes, normalise, read_class_file
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import DatasetError, OptionError


def test_names_match_ignoring_case_separators_and_broden_suffix():
    assert normalise("Golden_Retriever") == normalise("golden retriever") == normalise("golden-retriever")
    assert normalise("kitchen-s") == "kitchen"
    names = ["tench", "golden retriever", "kitchen-s"]
    assert match_classes(["Golden_Retriever", "kitchen"], names, "d") == {"Golden_Retriever": 1, "kitchen": 2}
    with pytest.raises(DatasetError, match=r"'golden_retreiver' in d matches no output class.*golden retriever"):
        match_classes(["golden_retreiver"], names, "d")
    assert match_classes(["0", "12"], None, "d") == {"0": 0, "12": 12}
    with pytest.raises(DatasetError, match="not an output index in 0..9"):
        match_classes(["12"], None, "d", num_outputs=10)


def test_class_file_and_size_take_images_in_turn(tmp_path):
    (tmp_path / "c.txt").write_text("# comment\na\n\nb\nc\n")
    assert read_class_file(tmp_path / "c.txt") == ["a", "b", "c"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(OptionError, match="lists no class"):
        read_class_file(tmp_path / "empty.txt")
    root = write_folders(tmp_path / "images", {"c": 3, "a": 1, "b": 2})
    images = labelled_images(root, ["a", "b", "c"])
    assert images.class_names == ["a", "b", "c"] and images.counts().tolist() == [1, 2, 3]
    assert images.targets == [0, 1, 1, 2, 2, 2]  # in output order
    part = labelled_images(root, ["a", "b", "c"], size=4)
    assert part.counts().tolist() == [1, 2, 1]  # one from each folder, then the second of b


def test_images_of_different_sizes_need_input_size(tmp_path):
    root = write_folders(tmp_path / "images", {"0": 1}, size=8)
    write_folders(tmp_path / "other", {"1": 1}, size=12)
    (tmp_path / "other" / "1").rename(root / "1")
    model = load_model("demo")
    with pytest.raises(DatasetError, match="images differ in size.*--input-size"):
        ablate(model, root, "conv4", classes=[str(i) for i in range(5)], progress=False)


def test_broden_scene_labels_are_the_classes(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", n=12, size=32, seed=1)
    images = labelled_images(data, ["kitchen", "bedroom", "beach", "street", "forest"])
    assert len(images.paths) == 12 and all(p.is_file() for p in images.paths)
    assert images.class_outputs == sorted(images.class_outputs)
    with pytest.raises(DatasetError, match="no 'nothing' category"):
        labelled_images(data, None, label_category="nothing")


def test_a_layer_called_twice_falls_back_to_hooks(tmp_path):
    """The demo's ReLU module runs after every conv: tracing cannot cut at one call, hooks ablate the first."""
    root = write_folders(tmp_path / "images", {"kitchen": 2, "beach": 2}, size=32)
    result = ablate(load_model("demo"), root, "relu", top_k=2, units="1-4", progress=False, device="cpu")
    assert result.metadata["split"] == "hook"
    assert "called 4 times" in result.metadata["split_fallback_reason"]
    assert result.units.tolist() == [1, 2, 3, 4] and np.isfinite(result.importance).all()


def test_torchvision_weights_name_their_categories():
    from torch import nn

    from netdissect.ablation.images import model_class_names
    from netdissect.models.base import LoadedModel
    from netdissect.models.preprocess import Preprocess

    named = LoadedModel(nn.Identity(), Preprocess(), "torchvision:resnet18", "IMAGENET1K_V1")
    names = model_class_names(named)
    assert len(names) == 1000 and names[0] == "tench"
    assert model_class_names(LoadedModel(nn.Identity(), Preprocess(), "torchvision:resnet18")) is None


def test_places365_models_know_their_365_classes():
    from torch import nn

    from netdissect.ablation.images import model_class_names
    from netdissect.models import LoadedModel, Preprocess
    from netdissect.models.places365 import NUM_CLASSES, category_names

    names = category_names()
    assert len(names) == NUM_CLASSES == len(set(names))
    assert (names[0], names[15], names[52], names[364]) == ("airfield", "arena/hockey", "bedroom", "zen_garden")
    folders = model_class_names(LoadedModel(nn.Identity(), Preprocess(), "places365:resnet18", None))
    assert folders[15] == "arena_hockey" and folders[52] == "bedroom" and len(folders) == 365
