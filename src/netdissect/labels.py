"""Concept labels of a dissection, without torch: display names and each unit's best labels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def display_name(name: str) -> str:
    """A label name as people read it: Broden's ``-s`` (scene) and ``-c`` (color) suffixes hidden."""
    return name[:-2] if name.endswith(("-s", "-c")) else name


def best_labels(iou: np.ndarray, label_category: np.ndarray, categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit and category, the best label number and its IoU: two ``(U, C)`` arrays.

    ``iou`` is ``(U, L)``, ``label_category`` the ``(L,)`` category index per label (-1 for none).
    A category with no labels gets label 0 and IoU 0. Ties go to the smaller label number.
    """
    iou = np.asarray(iou)
    label_category = np.asarray(label_category)
    units = iou.shape[0]
    labels = np.zeros((units, categories), dtype=np.int64)
    scores = np.zeros((units, categories), dtype=iou.dtype)
    for c in range(categories):  # a handful of categories; units and labels stay vectorised
        members = np.flatnonzero(label_category == c)
        if len(members):
            pos = iou[:, members].argmax(axis=1)  # the first maximum: the smaller label number
            labels[:, c] = members[pos]
            scores[:, c] = iou[np.arange(units), members[pos]]
    return labels, scores


class UnitLabels(NamedTuple):
    """Each unit's labels: per category (``(U, C)``) and its best overall (``(U,)``)."""

    category_label: np.ndarray  # (U, C) best label number per category
    category_iou: np.ndarray  # (U, C) its IoU
    category: np.ndarray  # (U,) the category of the unit's best label
    label: np.ndarray  # (U,) best label number
    score: np.ndarray  # (U,) its IoU


def unit_labels(iou: np.ndarray, label_category: np.ndarray, categories: int) -> UnitLabels:
    """Each unit's best label per category (:func:`best_labels`) and its best label overall."""
    labels, scores = best_labels(iou, label_category, categories)
    units = labels.shape[0]
    category = scores.argmax(axis=1) if categories else np.zeros(units, int)
    rows = np.arange(units)
    return UnitLabels(labels, scores, category, labels[rows, category], scores[rows, category])
