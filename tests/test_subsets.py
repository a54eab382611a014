"""The training subsets: the authors' make_mask rule, seeded, with every class present, and
the same images for every source and k (paired comparisons)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from robust_transfer.subsets import subset


def authors_make_mask(labels, num_training_images, seed):
    """utrerf/robust_transfer_learning tools/helpers.py make_mask, literally (after
    set_seeds: random.seed(seed)), returning the chosen indices."""
    random.seed(seed)
    dataset_size = len(labels)
    mask = np.zeros(dataset_size)
    shuffled_ix_list = [x for x in range(dataset_size)]
    random.shuffle(shuffled_ix_list)
    remaining_classes_set = set(labels.tolist())
    remaining_choices = num_training_images
    for ix in shuffled_ix_list:
        label = labels[ix].item()
        if remaining_choices > len(remaining_classes_set) or label in remaining_classes_set:
            mask[ix] += 1
            remaining_choices -= 1
            if label in remaining_classes_set:
                remaining_classes_set.remove(label)
        if remaining_choices <= 0:
            break
    return np.nonzero(mask)[0]


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """10 classes, 3000 images, class 9 rare (2 images), classes unevenly sized."""
    rng = np.random.default_rng(0)
    lab = rng.choice(9, size=2998, p=np.linspace(1, 2, 9) / np.linspace(1, 2, 9).sum())
    lab = np.concatenate([lab, [9, 9]])
    return rng.permutation(lab).astype(np.int64)


@pytest.mark.parametrize("n", [10, 11, 25, 100, 1600, 2999, 3000])
def test_exact_size_unique_sorted_all_classes(labels, n):
    idx = subset(labels, n, 20000000)
    assert len(idx) == n
    assert len(np.unique(idx)) == n
    assert np.array_equal(idx, np.sort(idx))
    assert idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < len(labels)
    assert set(labels[idx].tolist()) == set(range(10))


def test_n_equals_classes_one_per_class(labels):
    """n = number of classes: exactly one image of each, the rare class included."""
    for seed in (1, 2, 3, 20000000):
        idx = subset(labels, 10, seed)
        assert sorted(labels[idx].tolist()) == list(range(10))


@pytest.mark.parametrize(
    "n, seed", [(10, 1), (25, 20000000), (100, 20100000), (100, 20900000), (1600, 20500000), (3000, 7)]
)
def test_equals_authors_algorithm(labels, n, seed):
    """Bit-for-bit the authors' subsets (Python's random, seeded by the run's seed)."""
    assert np.array_equal(subset(labels, n, seed), authors_make_mask(labels, n, seed))


def test_deterministic_and_seed_dependent(labels):
    a = subset(labels, 100, 20000000)
    b = subset(labels, 100, 20000000)
    c = subset(labels, 100, 20100000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_independent_of_global_random_state(labels):
    """Depends on (labels, n, seed) only: global random / numpy state (which a run seeds with
    the same seed for every source and k, or which anything else may advance) has no effect."""
    ref = subset(labels, 200, 20300000)
    random.seed(123)
    np.random.seed(5)
    random.random()
    assert np.array_equal(subset(labels, 200, 20300000), ref)
    state = random.getstate()
    subset(labels, 200, 20300000)
    assert random.getstate() == state  # and it does not disturb the global state


def test_labels_dtype_and_container_irrelevant(labels):
    """int32 labels or a list-like give the same subset."""
    ref = subset(labels, 100, 42)
    assert np.array_equal(subset(labels.astype(np.int32), 100, 42), ref)
    assert np.array_equal(subset(np.asarray(labels.tolist()), 100, 42), ref)


def test_size_as_string(labels):
    """Sizes come from wildcards as strings: "100" == 100."""
    assert np.array_equal(subset(labels, "100", 9), subset(labels, 100, 9))


def test_full_returns_everything(labels):
    idx = subset(labels, "full", 20000000)
    assert np.array_equal(idx, np.arange(len(labels)))


def test_uniform_and_rare_class_always_present(labels):
    """Uniform, not balanced: over many seeds every image is drawn, and the rare class is
    in every subset although a uniform draw of 100 / 3000 would usually miss it."""
    counts = np.zeros(len(labels), dtype=int)
    for seed in range(200):
        idx = subset(labels, 100, seed)
        counts[idx] += 1
        assert (labels[idx] == 9).sum() >= 1
    assert counts.sum() == 200 * 100
    # mean inclusion 1/30 per image for common classes: roughly uniform
    common = counts[labels != 9]
    assert 4.0 < common.mean() < 9.0


def test_too_small_or_too_large_raises(labels):
    with pytest.raises(ValueError):
        subset(labels, 9, 0)  # fewer than the 10 classes
    with pytest.raises(ValueError):
        subset(labels, 3001, 0)
    with pytest.raises(ValueError):
        subset(np.array([0, 1, 2]), 2, 0)
