"""The training subset rules: the paper's make_mask (every class present) and the robustness
library's make_loaders (the authors' from-scratch runs)."""

from __future__ import annotations

import random

import numpy as np

SUBSET_RULES = ("make_mask", "make_loaders")


def draw_subset(rule: str, labels: np.ndarray, size, seed: int) -> np.ndarray:
    """The training subset of a run: `make_mask`, the paper's transfer runs (every class
    present); `make_loaders`, the robustness library's (the authors' from-scratch runs)."""
    if rule == "make_loaders":
        return subset_make_loaders(len(labels), size, seed)
    return subset(labels, size, seed)


def subset_make_loaders(total: int, size, seed: int) -> np.ndarray:
    """The robustness library's make_loaders(subset=n, subset_seed=seed, subset_type='rand'):
    RandomState(seed).choice(range(total), n, replace=False): uniform, without replacement,
    no class guaranteed. Sorted indices (the loader shuffles them anyway)."""
    if str(size) == "full":
        return np.arange(total)
    if int(size) > total:
        raise ValueError(f"cannot draw {size} of {total} images")
    return np.sort(np.random.RandomState(seed).choice(list(range(total)), size=int(size), replace=False)).astype(
        np.int64
    )


def subset(labels: np.ndarray, size, seed: int) -> np.ndarray:
    """The paper's subset rule (authors' make_mask): shuffle all indices with Python's `random`
    seeded by the run's seed, then walk them, taking an index while the slots left exceed the
    classes still missing, or when its class is still missing, until `size` are taken.

    Uniform, at least one image per class, not balanced; depends on (labels, size, seed) only,
    so every source and every k sees the same images (paired comparisons). Sorted indices.
    """
    if str(size) == "full":
        return np.arange(len(labels))
    size = int(size)
    missing = set(np.unique(labels).tolist())
    if size > len(labels) or size < len(missing):
        raise ValueError(f"cannot draw {size} of {len(labels)} images with all {len(missing)} classes present")
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)  # == random.seed(seed); random.shuffle(order)
    taken, left = [], size
    for i in order:
        label = int(labels[i])
        if left > len(missing) or label in missing:
            taken.append(i)
            left -= 1
            missing.discard(label)
        if left <= 0:
            break
    return np.sort(np.asarray(taken, dtype=np.int64))
