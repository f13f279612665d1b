"""CLIP-Dissect's soft-WPMI: how well each concept describes each unit's most activating images.

Oikarinen & Weng, *CLIP-Dissect: Automatic Description of Neuron Representations in Deep Vision
Networks*, ICLR 2023 (Section 3 and Appendix A). For unit ``u`` and concept ``t_m``:

* ``p(t_m | x_i) = softmax_m(a * P[i, :])``: the CLIP probability that concept ``m`` describes
  probe image ``i``, where ``P`` (N images x M concepts) holds the image-text cosine similarities;
* ``D_u``: the unit's ``k`` most activating probe images (by its image-level value, e.g. the
  spatial mean of its activation map). In the *soft* version the image at rank ``r`` (0-based)
  belongs to ``D_u`` only with probability ``q_r = p_start - r (p_start - p_end) / k``;
* ``log p(t_m | D_u) = sum_r log(1 - q_r + q_r p(t_m | x_r) + eps)``: the expected chance that
  the concept describes every image of the soft top set (independent images);
* ``log p(t_m) = log mean_u p(t_m | D_u)`` over the units scored together (the layer);
* ``soft-WPMI(u, m) = log p(t_m | D_u) - lambda log p(t_m)``.

The unit's description is the concept with the highest score. The constants default to the
authors' published values, the defaults of ``soft_wpmi`` in their code (``similarity.py`` of
``Trustworthy-ML-Lab/CLIP-dissect``; the paper uses soft-WPMI in all its experiments):
``k = 100``, ``a = 10``, ``lambda = 1``, ``p_start = 0.998``, ``p_end = 0.97``, ``eps = 1e-7``.
See ``docs/describe-wpmi.md``.
"""

from __future__ import annotations

import math

import torch

from ..errors import ActivationError, NetDissectError, OptionError

__all__ = [
    "DEFAULT_LAMBDA",
    "DEFAULT_P_END",
    "DEFAULT_P_START",
    "DEFAULT_SCALE",
    "DEFAULT_TOP_K",
    "MIN_PROB",
    "concept_probabilities",
    "membership_weights",
    "soft_wpmi",
    "top_images",
]

#: k: the number of most activating probe images per unit (CLIP-Dissect: ``top_k=100``).
DEFAULT_TOP_K = 100
#: a: the scale applied to the cosine similarities before the softmax over concepts (``a=10``).
DEFAULT_SCALE = 10.0
#: lambda: the weight of the concept prior ``log p(t_m)`` (``lam=1``).
DEFAULT_LAMBDA = 1.0
#: The chance that the most activating image belongs to the unit's top set (``p_start=0.998``).
DEFAULT_P_START = 0.998
#: Where that chance ends, decreasing linearly with the rank (``p_end=0.97``).
DEFAULT_P_END = 0.97
#: eps added inside every logarithm so that a zero probability stays finite (``min_prob=1e-7``).
MIN_PROB = 1e-7
#: The largest intermediate tensor (elements) one chunk of units may create: about 64 MB of float32.
CHUNK_ELEMENTS = 1 << 24


def concept_probabilities(similarity: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """``p(t_m | x_i)``: a softmax over the concepts (dim 1) of ``scale`` times the (N, M) similarities."""
    return torch.softmax(similarity.float() * scale, dim=1)


def membership_weights(
    k: int, p_start: float = DEFAULT_P_START, p_end: float = DEFAULT_P_END, device: torch.device | str | None = None
) -> torch.Tensor:
    """``q_r = p_start - r (p_start - p_end) / k`` for ranks ``r = 0 .. k-1``: float32 (k,).

    The chance that the image at rank ``r`` of a unit's ranking belongs to its soft top set (the
    last weight is ``p_end + (p_start - p_end) / k``, as in the authors' code).
    """
    ranks = torch.arange(k, dtype=torch.float64, device=device)
    return (p_start - ranks / k * (p_start - p_end)).float()


def top_images(activations: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of each unit's ``k`` highest values: int64 (k, U), best first.

    The sort is stable: among equal values the image with the lower index ranks first, so the
    result does not depend on the device or the sorting algorithm.
    """
    return torch.sort(activations, dim=0, descending=True, stable=True).indices[:k]


def soft_wpmi(
    activations: torch.Tensor,
    similarity: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    scale: float = DEFAULT_SCALE,
    lam: float = DEFAULT_LAMBDA,
    p_start: float = DEFAULT_P_START,
    p_end: float = DEFAULT_P_END,
    min_prob: float = MIN_PROB,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """CLIP-Dissect's soft-WPMI of every unit and concept: float32 (U, M), higher is better.

    Args:
        activations: (N, U) each unit's image-level value on the N probe images.
        similarity: (N, M) the CLIP cosine similarity of each probe image and concept text.
        top_k: k, the size of each unit's top set; capped at N when fewer images are given.
        scale: a, multiplies the similarities before the softmax over concepts.
        lam: lambda, the weight of the concept prior ``log p(t_m)`` (the mean over the U units).
        p_start, p_end: the membership chances of the first and (about) the k-th image.
        min_prob: eps added inside the logarithms.
        chunk_elements: bound on the elements of one chunk's intermediate tensors (memory).

    Computed on ``similarity``'s device, vectorised over units in chunks; see the module
    docstring for the formula and ``docs/describe-wpmi.md`` for the sources of the defaults.
    """
    _check_inputs(activations, similarity)
    _check_constants(top_k, scale, lam, p_start, p_end, min_prob)
    device = similarity.device
    n, units = activations.shape
    concepts = similarity.shape[1]
    if units == 0 or concepts == 0:
        return torch.zeros((units, concepts), dtype=torch.float32, device=device)
    k = min(top_k, n)
    probs = concept_probabilities(similarity, scale)
    weights = membership_weights(k, p_start, p_end, device).view(k, 1, 1)
    chunk = max(1, chunk_elements // max(k * concepts, n))
    log_given = torch.empty((units, concepts), dtype=torch.float32, device=device)
    for start in range(0, units, chunk):
        stop = min(start + chunk, units)
        top = top_images(activations[:, start:stop].to(device), k)  # (k, C)
        chosen = probs[top]  # (k, C, M)
        terms = (chosen - 1.0).mul_(weights).add_(1.0 + min_prob).log_()
        log_given[start:stop] = terms.sum(dim=0)
    log_prior = torch.logsumexp(log_given, dim=0, keepdim=True) - math.log(units)
    return log_given - lam * log_prior


def _check_inputs(activations: torch.Tensor, similarity: torch.Tensor) -> None:
    if not isinstance(activations, torch.Tensor) or activations.dim() != 2:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise ActivationError(f"activations must be (images, units), got {shape}")
    if not isinstance(similarity, torch.Tensor) or similarity.dim() != 2:
        shape = tuple(similarity.shape) if isinstance(similarity, torch.Tensor) else type(similarity).__name__
        raise NetDissectError(f"the image-concept similarity must be (images, concepts), got {shape}")
    if activations.shape[0] != similarity.shape[0]:
        raise NetDissectError(
            f"activations cover {activations.shape[0]} images but the similarity covers {similarity.shape[0]}"
        )
    if activations.shape[0] == 0:
        raise ActivationError("no probe images: soft-WPMI needs at least one")
    if activations.is_floating_point() and not torch.isfinite(activations).all():
        bad = int((~torch.isfinite(activations)).any(dim=0).nonzero()[0, 0])
        raise ActivationError(f"unit {bad} has NaN or infinite activations")
    if not torch.isfinite(similarity).all():
        raise NetDissectError("the image-concept similarity holds NaN or infinite values")


def _check_constants(top_k: int, scale: float, lam: float, p_start: float, p_end: float, min_prob: float) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise OptionError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise OptionError(f"the similarity scale must be > 0, got {scale}")
    if not math.isfinite(lam):
        raise OptionError(f"lambda must be finite, got {lam}")
    if not (0.0 < p_end <= p_start <= 1.0):
        raise OptionError(f"need 0 < p_end <= p_start <= 1, got p_start={p_start}, p_end={p_end}")
    if not (math.isfinite(min_prob) and min_prob >= 0):
        raise OptionError(f"min_prob must be >= 0, got {min_prob}")
