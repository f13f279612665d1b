"""Random rotations of a layer's unit basis (the CVPR'17 rotation baseline).

Network Dissection showed that units are more interpretable than random directions of the
same representation: dissecting ``R @ a`` (the activations seen through a random rotation of
the unit basis) finds fewer detectors. :func:`haar_rotation` draws a Haar-random proper
rotation R (orthogonal, det +1) from a seed; :func:`rotation_power` gives R**P for P in [0, 1],
which turns each of R's rotation angles by the fraction P, so P interpolates from the identity
(P = 0) to R (P = 1) along the shortest path on SO(n).
"""

from __future__ import annotations

import torch


def haar_rotation(n: int, seed: int) -> torch.Tensor:
    """A Haar-random rotation of R^n (float64, orthogonal, determinant +1), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # the sign fix that makes Q Haar-distributed
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]  # a proper rotation: flip one axis
    return q


def rotation_power(rotation: torch.Tensor, power: float) -> torch.Tensor:
    """``rotation ** power`` (float64) for ``power`` in [0, 1]: each rotation angle scaled by ``power``."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"rotation power must lie in [0, 1], got {power}")
    n = rotation.shape[0]
    if power == 0.0:
        return torch.eye(n, dtype=torch.float64)
    if power == 1.0:
        return rotation.double()
    values, vectors = torch.linalg.eig(rotation.double())
    angles = torch.angle(values) * power  # eigenvalues of a rotation are e^{i theta}
    scaled = vectors @ torch.diag(torch.polar(torch.ones_like(angles), angles)) @ torch.linalg.inv(vectors)
    return scaled.real


def rotate_units(acts: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Activations ``(B, U, h, w)`` seen in the rotated basis: unit i of the result is ``sum_j M[i, j] a_j``."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(acts.device, acts.dtype), acts)


def match_units(matrix: torch.Tensor) -> torch.Tensor:
    """A row order that puts each rotated unit at the original unit it is closest to.

    Greedy on ``|matrix|``: the largest remaining entry (i, j) sends rotated direction i to
    position j. ``matrix[order]`` is the re-matched basis (still orthogonal), so a rotated
    unit can be compared with the original unit of the same number.
    """
    n = matrix.shape[0]
    weight = matrix.abs().double().clone()
    order = torch.empty(n, dtype=torch.long)
    for _ in range(n):
        flat = int(weight.argmax())
        i, j = divmod(flat, n)
        order[j] = i
        weight[i, :] = -1
        weight[:, j] = -1
    return order
