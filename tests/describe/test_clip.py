"""load_clip: the demo CLIP, open_clip and transformers models saved in their own formats, callables, errors."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netdissect.describe.clip import ClipEncoder, load_clip, resize_images
from netdissect.errors import ModelError, NetDissectError


def assert_unit_rows(x: torch.Tensor, rows: int) -> None:
    assert x.dim() == 2 and x.shape[0] == rows and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(rows), atol=1e-5)


def one_line_error(spec: str, error: type = ModelError) -> str:
    with pytest.raises(error) as info:
        load_clip(spec, "cpu")
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the encoder


def test_encoder_normalises_resizes_and_batches_texts():
    seen: list[tuple[int, ...]] = []

    def image_fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x.mean(dim=(2, 3)) * 7.0

    def text_fn(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[float(len(t)), 1.0, 0.0] for t in texts])

    enc = ClipEncoder("toy", image_fn, text_fn, image_size=8)
    out = enc.encode_images(torch.rand(2, 3, 16, 16))
    assert seen == [(2, 3, 8, 8)]
    assert_unit_rows(out, 2)
    texts = [f"word{i}" for i in range(600)]  # more than one text batch
    assert_unit_rows(enc.encode_texts(texts), 600)
    assert enc.encode_texts([]).shape == (0, 3)
    with pytest.raises(NetDissectError, match="\\(B, 3, H, W\\)"):
        enc.encode_images(torch.rand(3, 8, 8))
    with pytest.raises(NetDissectError, match="list of strings"):
        enc.encode_texts("red")


def test_encoder_refuses_malformed_model_outputs():
    enc = ClipEncoder("bad", lambda x: x.flatten(), lambda t: torch.full((len(t), 2), float("nan")), image_size=4)
    with pytest.raises(ModelError, match="encoded 1 images as \\(48,\\)"):
        enc.encode_images(torch.rand(1, 3, 4, 4))
    with pytest.raises(ModelError, match="NaN"):
        enc.encode_texts(["a"])


def test_resize_images_keeps_the_right_size_and_averages_down():
    x = torch.rand(1, 3, 8, 8)
    assert resize_images(x, 8) is x
    flat = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(resize_images(flat, 4), torch.full((1, 3, 4, 4), 0.25))


def test_unknown_spec_lists_the_accepted_forms():
    message = one_line_error("not a spec")
    for form in ("demo", "open_clip:ARCH/PRETRAINED", "hf:NAME_OR_DIR", "package.module:callable"):
        assert form in message


# --------------------------------------------------------------------------- the demo CLIP


@pytest.fixture(scope="module")
def demo():
    return load_clip("demo", "cpu")


def test_demo_clip_interface(demo):
    assert demo.spec == "demo" and demo.image_size == 64
    assert_unit_rows(demo.encode_images(torch.rand(3, 3, 64, 64)), 3)
    words = demo.encode_texts(["red-c", "red", "RED-C,", "qwerty", "<unk>", "", "ball"])
    assert_unit_rows(words, 7)
    assert torch.allclose(words[0], words[1]) and torch.allclose(words[0], words[2])  # suffix and case
    assert torch.allclose(words[3], words[4]) and torch.allclose(words[3], words[5])  # unknown -> <unk>
    assert not torch.allclose(words[0], words[6])
    # the same image at the dataset's 128 px is resized to 64
    assert_unit_rows(demo.encode_images(torch.rand(1, 3, 128, 128)), 1)


def test_demo_clip_weights_load_without_pickles():
    from netdissect.models.demo_clip import WEIGHTS

    payload = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert payload["vocabulary"][0] == "<unk>" and "red-c" in payload["vocabulary"]
    assert WEIGHTS.stat().st_size < 5e6


def test_demo_clip_retrieves_scenes_and_colours_of_unseen_images(demo):
    """Held-out synthetic images (a seed neither training nor the demo dataset uses), at the demo CLIP's 64 px.

    Scenes: the best of the five scene words is the image's scene. Colours: the R-precision of
    the eleven colour words (R = the colours covering at least 0.2 % of the image, as in training
    captions; the share of them among the R best words).
    """
    from netdissect.data.synthetic import LABELS, draw_image

    names = [n for n, _ in LABELS]
    scenes = [n for n, c in LABELS if c == "scene"]
    colors = [n for n, c in LABELS if c == "color"]
    images, scene_of, colors_of = [], [], []
    for i in range(80):
        drawn = draw_image(np.random.default_rng((97, i)), 128, 64)
        im = Image.fromarray(drawn.image).resize((64, 64), Image.Resampling.BICUBIC)
        images.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
        scene_of.append(names[drawn.image_labels["scene"][0] - 1])
        counts = np.bincount(drawn.pixel_labels["color"][0].ravel(), minlength=len(names) + 1)
        colors_of.append({names[n - 1] for n in np.nonzero(counts >= 0.002 * counts.sum())[0] if n})
    emb = demo.encode_images(torch.stack(images))
    scene_pick = (emb @ demo.encode_texts(scenes).T).argmax(dim=1)
    scene_acc = np.mean([scenes[int(j)] == s for j, s in zip(scene_pick, scene_of)])
    color_sim = emb @ demo.encode_texts(colors).T
    hits = sum(len({colors[int(j)] for j in row.topk(len(c)).indices} & c) for row, c in zip(color_sim, colors_of))
    total = sum(len(c) for c in colors_of)
    chance = sum(len(c) ** 2 / len(colors) for c in colors_of) / total
    assert scene_acc >= 0.55, scene_acc  # measured 0.75; chance 0.2
    assert hits / total >= 0.78 and chance < 0.62, (hits / total, chance)  # measured 0.90; chance 0.57


def test_demo_clip_missing_weights_file(tmp_path):
    from netdissect.models.demo_clip import demo_clip

    with pytest.raises(ModelError, match="demo CLIP weights .*not found"):
        demo_clip(tmp_path / "nothing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"a": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="no vocabulary and state dict"):
        demo_clip(bad)


# --------------------------------------------------------------------------- open_clip

TINY_OPEN_CLIP = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A randomly initialised tiny open_clip architecture, registered and saved as a checkpoint."""
    open_clip = pytest.importorskip("open_clip", reason="open_clip_torch is not installed (pip install '.[clip]')")
    folder = tmp_path_factory.mktemp("open_clip")
    config = folder / "netdissect-tiny-test.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("netdissect-tiny-test")
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return open_clip, checkpoint


def test_open_clip_checkpoint_matches_open_clips_own_pipeline(tiny_open_clip):
    open_clip, checkpoint = tiny_open_clip
    enc = load_clip(f"open_clip:netdissect-tiny-test/{checkpoint}", "cpu")
    assert enc.image_size == 32
    model, _, preprocess = open_clip.create_model_and_transforms("netdissect-tiny-test", pretrained=str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer("netdissect-tiny-test")
    rgb = (np.random.default_rng(0).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        expected_images = model.encode_image(torch.stack([preprocess(Image.fromarray(a)) for a in rgb]))
        expected_texts = model.encode_text(tokenizer(["a red ball", "a kitchen"]))
    got_images = enc.encode_images(x)
    assert_unit_rows(got_images, 2)
    assert torch.allclose(got_images, torch.nn.functional.normalize(expected_images, dim=1), atol=1e-4)
    got_texts = enc.encode_texts(["a red ball", "a kitchen"])
    assert torch.allclose(got_texts, torch.nn.functional.normalize(expected_texts, dim=1), atol=1e-5)
    # the normalisation matters: unnormalised pixels would give other embeddings
    with torch.no_grad():
        raw = torch.nn.functional.normalize(model.encode_image(x), dim=1)
    assert not torch.allclose(got_images, raw, atol=1e-3)


def test_open_clip_errors(tiny_open_clip, tmp_path):
    assert "open_clip:ARCH/PRETRAINED" in one_line_error("open_clip:netdissect-tiny-test")
    assert "did you mean netdissect-tiny-test" in one_line_error("open_clip:netdissect-tiny-tst/x.pt")
    assert "its tags: openai" in one_line_error("open_clip:RN50/not-a-tag")
    assert "is a folder" in one_line_error(f"open_clip:netdissect-tiny-test/{tmp_path}")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert "cannot load open_clip netdissect-tiny-test" in one_line_error(f"open_clip:netdissect-tiny-test/{broken}")


def test_open_clip_tag_missing_from_the_cache_names_the_cache(tiny_open_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/clip: empty
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    message = one_line_error("open_clip:RN50/openai")
    assert str(tmp_path / "hub") in message and str(tmp_path / ".cache" / "clip" / "RN50.pt") in message
    assert "downloads nothing" in message


def test_open_clip_cached_tag_loads_with_the_tags_settings(tiny_open_clip, tmp_path, monkeypatch):
    """A pretrained tag whose file is in ~/.cache/clip: loaded from there, with the tag's QuickGELU, mean and std."""
    open_clip, checkpoint = tiny_open_clip
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / "tiny-tag.pt").write_bytes(checkpoint.read_bytes())
    tag = {"url": "https://example.invalid/tiny-tag.pt", "quick_gelu": True, "mean": (0.1, 0.2, 0.3), "std": (0.5,) * 3}
    real = open_clip.get_pretrained_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda arch, t: tag if t == "tiny" else real(arch, t))
    enc = load_clip("open_clip:netdissect-tiny-test/tiny", "cpu")
    assert any(type(m).__name__ == "QuickGELU" for m in enc.model.modules())
    assert tuple(enc.model.visual.preprocess_cfg["mean"]) == (0.1, 0.2, 0.3)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = enc.model.encode_image((x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5)
    assert torch.allclose(enc.encode_images(x), torch.nn.functional.normalize(expected, dim=1), atol=1e-5)


def test_missing_open_clip_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    message = one_line_error("open_clip:ViT-B-32/openai")
    assert "open_clip_torch" in message and "pip install 'netdissect[clip]'" in message


# --------------------------------------------------------------------------- Hugging Face transformers


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A randomly initialised tiny CLIPModel with a tokenizer and an image processor, saved with save_pretrained."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install '.[clip]')")
    folder = tmp_path_factory.mktemp("hf") / "tiny-clip"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz-":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    text.update(num_attention_heads=2, max_position_embeddings=24, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision.update(image_size=32, patch_size=8)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.4, 0.5, 0.6],
        image_std=[0.2, 0.25, 0.3],
    )
    processor.save_pretrained(folder)
    return transformers, folder, model, tokenizer, processor


def _pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_hf_folder_matches_transformers_own_pipeline(tiny_hf):
    _, folder, model, tokenizer, processor = tiny_hf
    enc = load_clip(f"hf:{folder}", "cpu")
    assert enc.image_size == 32
    rgb = (np.random.default_rng(1).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    pixels = processor(images=list(rgb), do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
    texts = ["red ball", "a kitchen scene", "z"]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected_images = _pooled(model.get_image_features(pixel_values=pixels))
        expected_texts = _pooled(model.get_text_features(**inputs))
    got_images = enc.encode_images(x)
    assert_unit_rows(got_images, 2)
    assert torch.allclose(got_images, torch.nn.functional.normalize(expected_images, dim=1), atol=1e-4)
    got_texts = enc.encode_texts(texts)
    assert torch.allclose(got_texts, torch.nn.functional.normalize(expected_texts, dim=1), atol=1e-5)


def test_hf_name_missing_from_the_cache_names_the_cache(tiny_hf, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    message = one_line_error("hf:netdissect-tests/no-such-clip")
    assert f"not in the Hugging Face cache ({tmp_path / 'hub'})" in message and "downloads nothing" in message
    assert "hf:NAME_OR_DIR" in one_line_error("hf:")
    assert "not found" in one_line_error(f"hf:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    assert "cannot load the model from" in one_line_error(f"hf:{tmp_path / 'empty'}")


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    message = one_line_error("hf:openai/clip-vit-base-patch32")
    assert "transformers" in message and "pip install 'netdissect[clip]'" in message


# --------------------------------------------------------------------------- package.module:callable

USER_CLIP = """
import torch

class Clip(torch.nn.Module):
    image_size = 16

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)

    def encode_image(self, images):
        assert images.shape[-2:] == (16, 16)
        return self.proj(images.mean(dim=(2, 3))) * 100

    def encode_text(self, texts):
        return torch.tensor([[len(t), 1.0, 2.0, 3.0] for t in texts])

def make():
    torch.manual_seed(0)
    return Clip()

class NoText:
    def encode_image(self, images):
        return images.mean(dim=(2, 3))

instance = make()
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_clip_mod.py").write_text(textwrap.dedent(USER_CLIP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_clip_mod", raising=False)
    return tmp_path


def test_callable_clip_is_normalised_and_sized(user_module):
    enc = load_clip("user_clip_mod:make", "cpu")
    assert enc.image_size == 16 and isinstance(enc.model, torch.nn.Module)
    assert_unit_rows(enc.encode_images(torch.rand(2, 3, 40, 40)), 2)
    texts = enc.encode_texts(["ab", "abcd"])
    assert_unit_rows(texts, 2)
    assert not torch.allclose(texts[0], texts[1])
    # an instance works as well as a factory
    assert load_clip("user_clip_mod:instance", "cpu").image_size == 16


def test_callable_clip_errors(user_module):
    assert "without encode_text" in one_line_error("user_clip_mod:NoText")
    assert "has no attribute 'absent'" in one_line_error("user_clip_mod:absent")
    assert "cannot import 'no_such_module_xyz'" in one_line_error("no_such_module_xyz:make")


def test_shipped_weights_path_exists():
    from netdissect.models.demo_clip import WEIGHTS

    assert Path(WEIGHTS).name == "demo_clip.pt" and Path(WEIGHTS).is_file()
