"""CLIP-Dissect's soft-WPMI: the formula on a hand-computed case, a loop reference, and planted colour units."""

from __future__ import annotations

import math

import pytest
import torch

from netdissect.describe.clip import ClipEncoder
from netdissect.describe.wpmi import (
    DEFAULT_LAMBDA,
    DEFAULT_P_END,
    DEFAULT_P_START,
    DEFAULT_SCALE,
    DEFAULT_TOP_K,
    MIN_PROB,
    membership_weights,
    soft_wpmi,
    top_images,
)
from netdissect.errors import ActivationError, NetDissectError, OptionError


def test_published_constants():
    """The authors' defaults (CLIP-Dissect's soft_wpmi): k=100, a=10, lambda=1, p 0.998 -> 0.97, eps=1e-7."""
    assert (DEFAULT_TOP_K, DEFAULT_SCALE, DEFAULT_LAMBDA) == (100, 10.0, 1.0)
    assert (DEFAULT_P_START, DEFAULT_P_END, MIN_PROB) == (0.998, 0.97, 1e-7)
    w = membership_weights(100)
    assert w[0].item() == pytest.approx(0.998)
    assert w[-1].item() == pytest.approx(0.97 + 0.028 / 100)
    assert torch.all(w[1:] < w[:-1])


def test_hand_computed_case():
    """Two units, two concepts, k=2, a=1, q = (1, 0.75), eps=0: every term written out by hand."""
    ln3 = math.log(3.0)
    # softmax rows: img0 (.25, .75), img1 (.75, .25), img2 (.5, .5), img3 (.25, .75)
    similarity = torch.tensor([[0.0, ln3], [ln3, 0.0], [0.0, 0.0], [0.0, ln3]])
    # unit 0 ranks img0, img1 first; unit 1 ranks img3, img2 first
    activations = torch.tensor([[4.0, 0.0], [3.0, 1.0], [2.0, 5.0], [1.0, 9.0]])
    scores = soft_wpmi(activations, similarity, top_k=2, scale=1.0, lam=1.0, p_start=1.0, p_end=0.5, min_prob=0.0)
    # rank 0 belongs with chance 1: log p; rank 1 with chance 0.75: log(0.25 + 0.75 p)
    given = [
        [math.log(0.25) + math.log(0.25 + 0.75 * 0.75), math.log(0.75) + math.log(0.25 + 0.75 * 0.25)],
        [math.log(0.25) + math.log(0.25 + 0.75 * 0.5), math.log(0.75) + math.log(0.25 + 0.75 * 0.5)],
    ]
    prior = [math.log((math.exp(given[0][m]) + math.exp(given[1][m])) / 2) for m in range(2)]
    expected = torch.tensor([[given[u][m] - prior[m] for m in range(2)] for u in range(2)])
    assert torch.allclose(scores, expected, atol=1e-6)
    # lambda scales the prior only
    half = soft_wpmi(activations, similarity, top_k=2, scale=1.0, lam=0.5, p_start=1.0, p_end=0.5, min_prob=0.0)
    assert torch.allclose(half, expected + 0.5 * torch.tensor([prior]), atol=1e-6)


def reference(activations, similarity, top_k, scale, lam, p_start, p_end, min_prob):
    """A plain loop over units and ranks, in float64."""
    probs = torch.softmax(similarity.double() * scale, dim=1)
    n, units = activations.shape
    k = min(top_k, n)
    rows = []
    for u in range(units):
        order = sorted(range(n), key=lambda i: (-float(activations[i, u]), i))[:k]
        total = torch.zeros(similarity.shape[1], dtype=torch.float64)
        for r, i in enumerate(order):
            q = p_start - r / k * (p_start - p_end)
            total += torch.log(1 - q + q * probs[i] + min_prob)
        rows.append(total)
    given = torch.stack(rows)
    prior = torch.logsumexp(given, dim=0) - math.log(units)
    return given - lam * prior


@pytest.mark.parametrize("chunk_elements", [1, 500, 1 << 24])
def test_matches_a_loop_reference_whatever_the_chunks(chunk_elements):
    gen = torch.Generator().manual_seed(0)
    activations = torch.rand(60, 7, generator=gen)
    activations[:, 3] = 0.0  # a dead unit: ties ranked by image index
    similarity = torch.rand(60, 9, generator=gen) * 0.4
    kwargs = dict(top_k=12, scale=10.0, lam=1.0, p_start=0.998, p_end=0.97, min_prob=1e-7)
    got = soft_wpmi(activations, similarity, chunk_elements=chunk_elements, **kwargs)
    assert got.shape == (7, 9) and got.dtype == torch.float32
    assert torch.allclose(got.double(), reference(activations, similarity, **kwargs), atol=1e-4)


def test_top_k_is_capped_at_the_number_of_images():
    gen = torch.Generator().manual_seed(1)
    activations, similarity = torch.rand(8, 3, generator=gen), torch.rand(8, 4, generator=gen)
    assert torch.equal(soft_wpmi(activations, similarity), soft_wpmi(activations, similarity, top_k=8))


def test_ties_rank_by_image_index():
    activations = torch.tensor([[1.0], [2.0], [2.0], [0.0], [2.0]])
    assert top_images(activations, 3)[:, 0].tolist() == [1, 2, 4]


# --------------------------------------------------------------------------- planted colours

COLORS = ["red", "green", "blue", "yellow", "white"]
PALETTE = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [1.0, 1.0, 1.0]])


def planted_images(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels each take one palette colour, with random colour shares; and those shares (n, 5)."""
    gen = torch.Generator().manual_seed(seed)
    shares = torch.distributions.Dirichlet(torch.full((5,), 0.5)).sample((n,))
    pixels = torch.multinomial(shares, size * size, replacement=True, generator=gen)  # (n, size*size)
    images = PALETTE[pixels].view(n, size, size, 3).permute(0, 3, 1, 2).contiguous()
    return images, torch.nn.functional.one_hot(pixels, 5).float().mean(dim=1)


def planted_clip() -> ClipEncoder:
    """A "CLIP" whose image embedding is its colour shares and whose words are one-hot colours."""

    def encode_image(x: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(x.permute(0, 2, 3, 1).reshape(len(x), -1, 3), PALETTE).argmin(dim=2)
        return torch.nn.functional.one_hot(nearest, 5).float().mean(dim=1)

    def encode_text(texts: list[str]) -> torch.Tensor:
        return torch.stack([torch.nn.functional.one_hot(torch.tensor(COLORS.index(t)), 5).float() for t in texts])

    return ClipEncoder("planted", encode_image, encode_text, image_size=16)


def test_planted_colour_units_get_their_colour_word():
    images, shares = planted_images(400)
    clip = planted_clip()
    similarity = clip.encode_images(images) @ clip.encode_texts(COLORS).T
    noise = torch.rand(400, 1, generator=torch.Generator().manual_seed(7))
    activations = torch.cat([shares, noise], dim=1)  # unit u < 5: the share of colour u; unit 5: noise
    scores = soft_wpmi(activations, similarity, top_k=40)
    assert scores[:5].argmax(dim=1).tolist() == [0, 1, 2, 3, 4]
    best = scores.max(dim=1).values
    # each colour unit owns its concept: its score is close to log(units), the most a unit can get
    assert best[:5].min() > math.log(6) - 0.5
    # the noise unit's best concept scores far below every colour unit's
    assert best[5] < best[:5].min() - 5.0
    # with the published k=100 the colour units keep their words
    assert soft_wpmi(activations, similarity)[:5].argmax(dim=1).tolist() == [0, 1, 2, 3, 4]


def test_a_scrambled_unit_loses_its_word():
    """Control: the same colour share, shuffled across images, no longer ranks its colour first."""
    images, shares = planted_images(400, seed=3)
    clip = planted_clip()
    similarity = clip.encode_images(images) @ clip.encode_texts(COLORS).T
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    activations = torch.cat([shares, shares[perm, :1]], dim=1)
    scores = soft_wpmi(activations, similarity, top_k=40)
    assert scores[5].max() < scores[0, 0] - 5.0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("activations", "similarity", "error", "match"),
    [
        (torch.rand(5), torch.rand(5, 2), ActivationError, "must be \\(images, units\\)"),
        (torch.rand(5, 2), torch.rand(5), NetDissectError, "must be \\(images, concepts\\)"),
        (torch.rand(5, 2), torch.rand(4, 2), NetDissectError, "cover 5 images but the similarity covers 4"),
        (torch.rand(0, 2), torch.rand(0, 2), ActivationError, "no probe images"),
        (torch.tensor([[1.0, float("nan")]] * 3), torch.rand(3, 2), ActivationError, "unit 1 has NaN"),
        (torch.rand(3, 2), torch.tensor([[float("inf"), 0.0]] * 3), NetDissectError, "NaN or infinite"),
    ],
)
def test_bad_inputs_are_one_line_errors(activations, similarity, error, match):
    with pytest.raises(error, match=match) as info:
        soft_wpmi(activations, similarity)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"lam": float("nan")}, "lambda must be finite"),
        ({"p_start": 0.9, "p_end": 0.95}, "p_end <= p_start"),
        ({"p_end": 0.0}, "0 < p_end"),
        ({"min_prob": -1.0}, "min_prob must be >= 0"),
    ],
)
def test_bad_constants_are_option_errors(kwargs, match):
    with pytest.raises(OptionError, match=match):
        soft_wpmi(torch.rand(4, 2), torch.rand(4, 3), **kwargs)


def test_no_units_or_no_concepts():
    assert soft_wpmi(torch.rand(4, 0), torch.rand(4, 3)).shape == (0, 3)
    assert soft_wpmi(torch.rand(4, 2), torch.rand(4, 0)).shape == (2, 0)
