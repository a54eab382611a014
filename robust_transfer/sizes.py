"""The sizes of a configured dataset's splits and classes, where the registry tells before
preparing (checks, the plan); and estimates for time limits. Pure Python, at parse time.
"""

from __future__ import annotations


def _split_rule(config: dict, dataset: str):
    """A dataset's loader record, its `split` entry (None: the official split) and kept classes."""
    from .datasets import LOADERS, sized_split

    spec = config["datasets"][dataset]
    return LOADERS[spec["loader"]], sized_split(spec.get("split")), spec.get("classes")


def train_size(config: dict, dataset: str) -> int | None:
    """Images in a dataset's training split as prepare() will make it, where the registry
    tells (None: unknown before preparing)."""
    loader, split, classes = _split_rule(config, dataset)
    if not split:
        return loader.train_size if not classes else None
    counts = loader.class_counts
    if split.get("train_per_class") is not None:
        return split["train_per_class"] * (len(classes) if classes else loader.classes or 0) or None
    if counts is None:
        return None
    kept = [counts[c] for c in classes] if classes else counts
    return sum(c - int(round(c * split["test_fraction"])) for c in kept)


def test_size(config: dict, dataset: str) -> int | None:
    """Images in a dataset's test split as prepare() will make it (every evaluation reads them
    all), where the registry tells (None: unknown before preparing)."""
    loader, split, classes = _split_rule(config, dataset)
    if not split:
        return loader.test_size if not classes else None
    counts = loader.class_counts
    if counts is not None:
        kept = [counts[c] for c in classes] if classes else list(counts)
    elif loader.images and not classes:
        kept = None
    else:
        return None
    if split.get("train_per_class") is not None:
        train = train_size(config, dataset)
        return (sum(kept) if kept else loader.images) - train if train is not None else None
    if kept is None:
        return int(round(loader.images * split["test_fraction"]))
    return sum(int(round(c * split["test_fraction"])) for c in kept)


def class_count(config: dict, dataset: str) -> int | None:
    from .datasets import LOADERS

    spec = config["datasets"][dataset]
    return len(spec["classes"]) if spec.get("classes") else LOADERS[spec["loader"]].classes


ASSUMED_SPLIT = {"train": 50000, "test": 10000}  # a split whose size the registry cannot tell


def split_size(config: dict, dataset: str, split: str) -> int:
    """Images in a dataset's train or test split, exact where the registry tells (official
    splits, per-class splits of known class counts), else an estimate (a class subset of an
    official split: its share of the classes; unknown: ASSUMED_SPLIT). For time limits only."""
    from .datasets import LOADERS, sized_split

    spec = config["datasets"][dataset]
    loader = LOADERS[spec["loader"]]
    counts, classes, cut = loader.class_counts, spec.get("classes"), sized_split(spec.get("split"))
    if cut and counts is not None:
        kept = [counts[c] for c in classes] if classes else list(counts)
        if cut.get("train_per_class") is not None:
            train = [min(c, cut["train_per_class"]) for c in kept]
        else:
            train = [c - int(round(c * cut["test_fraction"])) for c in kept]
        return sum(train) if split == "train" else sum(kept) - sum(train)
    if cut and cut.get("train_per_class") is not None and split == "train":
        return cut["train_per_class"] * (len(classes) if classes else loader.classes or 1)
    official = loader.train_size if split == "train" else loader.test_size
    if not cut and official:
        share = len(classes) / loader.classes if classes and loader.classes else 1
        return max(1, int(official * share))
    return ASSUMED_SPLIT[split]
