"""The dataset registry: one `Loader` record per raw dataset (what torchvision or a staged copy
holds, its sizes, classes and statistics), the readers, the train/test split rules of datasets
without an official split, and `prepare`, which makes both stored splits of a configured dataset.

Storage resolution (`size`, `train_crop`, `test_crop`): a fine-tuning job keeps a whole split on
its device, so photos are stored once at a stated resolution, never at full size. Salman et al.'s
recipe (RandomResizedCrop(224) + flip for training, Resize(256) + CenterCrop(224) for testing) is
`size: 256, train_crop: random_resized, test_crop: 224`: training images are stored whole with the
shorter side at 256 on a zero canvas with their extents (the longer side centre-cropped to at most
`max_aspect` x 256, 341 by default, so one panorama cannot blow up the canvas), test images as the
224 x 224 centre crop. Full-resolution Food-101 (longer side up to 512) would need a 512 x 512
canvas: 75,750 x 786 KB = 60 GB for its training split alone, more than a GPU holds next to a
ResNet-50; at 256 the worst case is 75,750 x 341 x 341 x 3 = 26 GB (+ 3.8 GB of test images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import canvas, lowpass, resize, to_rgb

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_STATS = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)}  # used for CIFAR-100 too
FMNIST_STATS = {"mean": (0.1801,) * 3, "std": (0.3421,) * 3}  # the authors reuse it for KMNIST
# Salman et al. normalise inside the model with the target's mean/std, which is mean 0 / std 1
# (none) for every target but CIFAR (their transfer_datasets.py; spec section 3).
NO_NORM = {"mean": (0.0,) * 3, "std": (1.0,) * 3}
TRAIN_CROPS = ("center", "random", "random_resized")
WHOLE = ("random", "random_resized")  # training crops that keep each whole image (a canvas)
MAX_ASPECT = 4 / 3  # random_resized: the longer side is cut to at most this x the shorter


@dataclass(frozen=True)
class Loader:
    """Everything the workflow knows about one raw dataset: the one place to add a dataset."""

    read: Callable  # (root, split or None) -> (uint8 (N, H, W, 3) images or a sequence of PIL images, labels)
    files: tuple[str, ...] = ()  # what the reader needs under the download root; () = bundled with a pip package
    archives: tuple[tuple[str, str], ...] = ()  # (archive, folder it unpacks into), in unpacking order
    official_split: bool = True  # False: the dataset entry must set `split` (seeded or first-N per class)
    train_size: int | None = None  # images in the official training split (the authors' "full")
    test_size: int | None = None  # images in the official test split (every evaluation reads them all)
    classes: int | None = None
    class_counts: tuple[int, ...] | None = None  # images per class of a dataset without a split
    images: int | None = None  # all images of a dataset without a split, where class counts are not listed
    shape: tuple[int, int] | None = None  # (height, width) of every image as read; None: sizes vary
    # The dataset's own normalisation (the authors' custom_datasets.py; their from-scratch runs)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    staged: tuple[str, ...] = ()  # files no download can fetch: staged by hand (mirror or root)
    layout: str = ""  # the on-disk layout in words, for the message when files are missing


class Lazy(Sequence):
    """Images read one at a time when indexed or iterated: a split of photos is only ever held
    resized (full-size Food-101 is tens of GB as decoded pixels)."""

    def __init__(self, items, load: Callable):
        self.items, self.load = list(items), load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.load(self.items[i])

    def take(self, idx) -> Lazy:
        return Lazy([self.items[i] for i in idx], self.load)


def _item(pair):
    ds, i = pair
    return ds[i][0].convert("RGB")


def _open_rgb(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def _torchvision(name: str, split: str | None, root: Path, download: bool = False):
    """The torchvision dataset object of a loader (downloading into root if asked)."""
    import torchvision.datasets as tvd

    root = str(root)
    if name == "svhn":
        return tvd.SVHN(root, split=split or "train", download=download)
    if name == "caltech101":  # no official split: `split` is applied in prepare()
        return tvd.Caltech101(root, target_type="category", download=download)
    cls = {
        "cifar10": tvd.CIFAR10,
        "cifar100": tvd.CIFAR100,
        "mnist": tvd.MNIST,
        "fmnist": tvd.FashionMNIST,
        "kmnist": tvd.KMNIST,
    }[name]
    return cls(root, train=(split or "train") == "train", download=download)


def _sources(name: str, split: str | None, root: Path, download: bool = False) -> list:
    """The torchvision dataset objects whose concatenation is a split (Salman et al.'s train
    split of DTD and Flowers is the official train + val). Building them runs torchvision's
    own existence and integrity checks; download=True fetches what torchvision can."""
    import torchvision.datasets as tvd

    split, root = split or "train", Path(root)
    if name == "aircraft":
        level = "variant"  # 100 classes, as the authors' FGVCAircraft(class_type="variant")
        return [tvd.FGVCAircraft(root, "trainval" if split == "train" else "test", level, download=download)]
    if name == "caltech256":  # no official split: `split` is applied in prepare()
        return [tvd.Caltech256(str(root), download=download)]
    if name == "cars":  # StanfordCars cannot download (dead URL): never ask it to
        return [tvd.StanfordCars(root, split)]
    if name == "dtd":  # partition 1, as the authors' DTD(split="1")
        return [
            tvd.DTD(root, s, partition=1, download=download)
            for s in (("train", "val") if split == "train" else ("test",))
        ]
    if name == "flowers":
        return [
            tvd.Flowers102(root, s, download=download) for s in (("train", "val") if split == "train" else ("test",))
        ]
    if name == "food":
        return [tvd.Food101(root, split, download=download)]
    if name == "pets":
        return [tvd.OxfordIIITPet(root, "trainval" if split == "train" else "test", download=download)]
    if name == "sun397":  # no partitions in torchvision: they are applied by _read_sun397
        return [tvd.SUN397(root, download=download)]
    if name == "birdsnap":  # no torchvision class: the authors' ImageFolder copy, staged
        return [tvd.ImageFolder(str(root / "birdsnap" / split))]
    return [_torchvision(name, split, root, download)]


def _labels_of(ds) -> list[int]:
    """Labels of a torchvision dataset without decoding an image (each class keeps them in its
    own attribute: `_labels`, `y` (Caltech), `targets` (ImageFolder) or `_samples` (Cars))."""
    for attr in ("_labels", "y", "targets"):
        if hasattr(ds, attr):
            return list(getattr(ds, attr))
    return [target for _, target in ds._samples]


def _read_parts(name: str):
    def read(root, split):
        parts = _sources(name, split, root)
        names = {tuple(ds.classes) for ds in parts if hasattr(ds, "classes")}
        if len(names) > 1:  # train + val label the same classes alike (torchvision DTD: its split's own classes)
            raise ValueError(f"{name}: the parts of the {split} split list different classes")
        if name == "birdsnap":
            other = _sources(name, "test" if split == "train" else "train", root)[0]
            if other.classes != parts[0].classes:
                raise ValueError(f"birdsnap: train/ and test/ hold different class folders under {root}/birdsnap")
        items = [(ds, i) for ds in parts for i in range(len(ds))]
        return Lazy(items, _item), np.asarray(sum((_labels_of(ds) for ds in parts), []), dtype=np.int64)

    return read


SUN_PARTITION = {"train": "Partitions/Training_01.txt", "test": "Partitions/Testing_01.txt"}


def _read_sun397(root, split):
    """SUN397 partition 1 (the authors' splits_01): the images listed in Training_01.txt or
    Testing_01.txt (lines such as /a/abbey/sun_aqswjsnjlrfzzhiz.jpg), labelled by torchvision's
    SUN397 classes (ClassName.txt order)."""
    ds = _sources("sun397", None, root)[0]
    lines = [line.strip() for line in (Path(root) / SUN_PARTITION[split or "train"]).read_text().splitlines()]
    rel = [Path(line.lstrip("/")) for line in lines if line]
    labels = [ds.class_to_idx["/".join(p.parts[1:-1])] for p in rel]
    return Lazy([Path(root) / "SUN397" / p for p in rel], _open_rgb), np.asarray(labels, dtype=np.int64)


def _read_arrays(name):
    def read(root, split):
        ds = _torchvision(name, split, root)
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        return to_rgb(data), np.asarray(ds.targets, dtype=np.int64)

    return read


def _read_svhn(root, split):
    ds = _torchvision("svhn", split, root)
    return to_rgb(ds.data.transpose(0, 2, 3, 1)), ds.labels.astype(np.int64)


def _read_caltech101(root, split):
    ds = _torchvision("caltech101", split, root)
    return Lazy([(ds, i) for i in range(len(ds))], _item), np.asarray(ds.y, dtype=np.int64)


def _read_digits(root, split):
    from sklearn.datasets import load_digits

    d = load_digits()
    return to_rgb(np.round(d.images * (255 / 16)).astype(np.uint8)), d.target.astype(np.int64)


def _read_lfw(root, split):
    from skimage.data import lfw_subset

    faces = lfw_subset()  # 100 faces, then 100 non-faces, floats in [0, 1]
    labels = np.repeat([1, 0], [100, len(faces) - 100]).astype(np.int64)
    return to_rgb(np.round(faces * 255).astype(np.uint8)), labels


def _idx_files(folder: str) -> tuple[str, ...]:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return tuple(f"{folder}/raw/{f}" for f in names)


_MNIST_SIZES = {"train_size": 60000, "test_size": 10000, "classes": 10, "shape": (28, 28)}
_CIFAR10 = [
    f"cifar-10-batches-py/{f}" for f in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
]


def _cifar(classes: int, files: list[str]) -> Loader:
    """CIFAR-10 or CIFAR-100 (the same archive layout, sizes and statistics)."""
    return Loader(
        _read_arrays(f"cifar{classes}"),
        tuple(files),
        ((f"cifar-{classes}-python.tar.gz", "."),),
        train_size=50000,
        test_size=10000,
        classes=classes,
        shape=(32, 32),
        **CIFAR_STATS,
    )


_CARS = (
    "stanford_cars/devkit/cars_meta.mat",
    "stanford_cars/devkit/cars_train_annos.mat",
    "stanford_cars/cars_train",
    "stanford_cars/cars_test_annos_withlabels.mat",
    "stanford_cars/cars_test",
)
_BIRDSNAP = ("birdsnap/train", "birdsnap/test")
LOADERS: dict[str, Loader] = {
    "cifar10": _cifar(10, _CIFAR10),
    "cifar100": _cifar(100, [f"cifar-100-python/{f}" for f in ["meta", "train", "test"]]),
    "svhn": Loader(
        _read_svhn,
        ("train_32x32.mat", "test_32x32.mat"),
        train_size=73257,
        test_size=26032,
        classes=10,
        shape=(32, 32),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
    ),
    "mnist": Loader(_read_arrays("mnist"), _idx_files("MNIST"), mean=(0.1307,) * 3, std=(0.3081,) * 3, **_MNIST_SIZES),
    "fmnist": Loader(_read_arrays("fmnist"), _idx_files("FashionMNIST"), **_MNIST_SIZES, **FMNIST_STATS),
    "kmnist": Loader(_read_arrays("kmnist"), _idx_files("KMNIST"), **_MNIST_SIZES, **FMNIST_STATS),
    "caltech101": Loader(  # the authors normalise Caltech-101 with ImageNet's statistics
        _read_caltech101,
        ("caltech101/101_ObjectCategories",),
        (
            ("caltech101/caltech-101.zip", "caltech101"),
            ("caltech101/caltech-101/101_ObjectCategories.tar.gz", "caltech101"),
        ),
        official_split=False,
        classes=101,
        images=8677,  # torchvision's Caltech101: the 101 categories, without the background class
    ),
    # Salman et al.'s targets (sizes: shared/reference/salman2020/datasets.csv). Their mean/std
    # is none (NO_NORM): the authors normalise all of them with mean 0, std 1.
    "aircraft": Loader(  # FGVC-Aircraft 2013b, 100 variants, trainval / test
        _read_parts("aircraft"),
        tuple(
            f"fgvc-aircraft-2013b/data/{f}"
            for f in ("images", "variants.txt", "images_variant_trainval.txt", "images_variant_test.txt")
        ),
        (("fgvc-aircraft-2013b.tar.gz", "."),),
        train_size=6667,
        test_size=3333,
        classes=100,
        layout=(
            "fgvc-aircraft-2013b/data/images/<id>.jpg, listed as '<id> <variant>' in "
            "fgvc-aircraft-2013b/data/images_variant_{trainval,test}.txt, classes in variants.txt"
        ),
        **NO_NORM,
    ),
    "birdsnap": Loader(  # no torchvision class, no download: the authors' ImageFolder copy, staged
        _read_parts("birdsnap"),
        _BIRDSNAP,
        classes=500,  # sizes depend on the crawl of the Flickr URL lists: unknown
        staged=_BIRDSNAP,
        layout=(
            "birdsnap/train/<class>/<image>.jpg and birdsnap/test/<class>/<image>.jpg (the authors' ImageFolder "
            "copy of birdsnap.tar; the same 500 class folders in both, sorted names give the labels)"
        ),
        **NO_NORM,
    ),
    "caltech256": Loader(  # 257 categories with clutter; split: {first_per_class: 60} (the authors)
        _read_parts("caltech256"),
        ("caltech256/256_ObjectCategories",),
        (("caltech256/256_ObjectCategories.tar", "caltech256"),),
        official_split=False,
        classes=257,
        images=30607,
        layout="caltech256/256_ObjectCategories/<NNN.name>/<NNN>_<iiii>.jpg",
        **NO_NORM,
    ),
    "cars": Loader(  # Stanford Cars: torchvision's StanfordCars reads it, but its URL is dead
        _read_parts("cars"),
        _CARS,
        train_size=8144,
        test_size=8041,
        classes=196,
        staged=_CARS,
        layout=(
            "torchvision's StanfordCars layout: stanford_cars/devkit/{cars_meta.mat,cars_train_annos.mat}, "
            "stanford_cars/cars_test_annos_withlabels.mat, and the images stanford_cars/cars_train/<fname>.jpg, "
            "stanford_cars/cars_test/<fname>.jpg named by the annotations' fname"
        ),
        **NO_NORM,
    ),
    "dtd": Loader(  # partition 1: train1 + val1 / test1 (the authors' head has 57 outputs: spec section 2)
        _read_parts("dtd"),
        tuple(f"dtd/dtd/{f}" for f in ("images", "labels/train1.txt", "labels/val1.txt", "labels/test1.txt")),
        (("dtd/dtd-r1.0.1.tar.gz", "dtd"),),
        train_size=3760,
        test_size=1880,
        classes=47,
        layout=(
            "dtd/dtd/images/<class>/<name>.jpg, listed as <class>/<name>.jpg in dtd/dtd/labels/{train,val,test}1.txt"
        ),
        **NO_NORM,
    ),
    "flowers": Loader(  # Oxford Flowers-102: train + val / test
        _read_parts("flowers"),
        tuple(f"flowers-102/{f}" for f in ("jpg", "imagelabels.mat", "setid.mat")),
        (("flowers-102/102flowers.tgz", "flowers-102"),),
        train_size=2040,
        test_size=6149,
        classes=102,
        layout="flowers-102/jpg/image_<00001>.jpg, flowers-102/imagelabels.mat and setid.mat (md5-checked)",
        **NO_NORM,
    ),
    "food": Loader(  # Food-101 train / test
        _read_parts("food"),
        tuple(f"food-101/{f}" for f in ("images", "meta/train.json", "meta/test.json")),
        (("food-101.tar.gz", "."),),
        train_size=75750,
        test_size=25250,
        classes=101,
        layout="food-101/images/<class>/<id>.jpg, listed by class in food-101/meta/{train,test}.json",
        **NO_NORM,
    ),
    "pets": Loader(  # Oxford-IIIT Pet trainval / test
        _read_parts("pets"),
        tuple(f"oxford-iiit-pet/{f}" for f in ("images", "annotations/trainval.txt", "annotations/test.txt")),
        (
            ("oxford-iiit-pet/images.tar.gz", "oxford-iiit-pet"),
            ("oxford-iiit-pet/annotations.tar.gz", "oxford-iiit-pet"),
        ),
        train_size=3680,
        test_size=3669,
        classes=37,
        layout="oxford-iiit-pet/images/<Breed_n>.jpg, oxford-iiit-pet/annotations/{trainval,test}.txt",
        **NO_NORM,
    ),
    "sun397": Loader(  # partition 1 (the authors' splits_01): 50 + 50 images per class
        _read_sun397,
        ("SUN397", "SUN397/ClassName.txt", *SUN_PARTITION.values()),
        (("SUN397.tar.gz", "."),),
        train_size=19850,
        test_size=19850,
        classes=397,
        staged=tuple(SUN_PARTITION.values()),
        layout=(
            "SUN397/ClassName.txt and SUN397/<l>/<class>/sun_<id>.jpg (torchvision's SUN397, or SUN397.tar.gz), "
            "plus the partition files Partitions/Training_01.txt and Partitions/Testing_01.txt from SUN397's "
            "Partitions.zip, next to SUN397/ (not inside it), lines such as /a/abbey/sun_<id>.jpg"
        ),
        **NO_NORM,
    ),
    # Real image data that ships inside pip packages (the offline demo): nothing to download.
    # Their statistics are those of all their pixels (measured once).
    "digits": Loader(
        _read_digits,
        official_split=False,
        classes=10,
        class_counts=(178, 182, 177, 183, 181, 182, 181, 179, 174, 180),
        shape=(8, 8),
        mean=(0.3053,) * 3,
        std=(0.3759,) * 3,
    ),
    "lfw": Loader(
        _read_lfw,
        official_split=False,
        classes=2,
        class_counts=(100, 100),
        shape=(25, 25),
        mean=(0.3771,) * 3,
        std=(0.2728,) * 3,
    ),
}


def read(loader: str, root: Path, split: str | None):
    """Images (uint8 array, or a sequence of PIL images of varying size) and labels of a split.

    split=None reads the whole of a dataset that has no official split.
    """
    return LOADERS[loader].read(root, split)


def class_split(labels: np.ndarray, seed: int, train_per_class: int | None = None, test_fraction: float | None = None):
    """A seeded per-class train/test split: `train_per_class` images (or 1 - test_fraction) per
    class go to train, the rest to test. Returns sorted (train, test) index arrays."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = train_per_class if train_per_class is not None else len(idx) - int(round(len(idx) * test_fraction))
        if not 0 < cut < len(idx):
            raise ValueError(f"class {c} has {len(idx)} images: cannot put {cut} in train and keep a test image")
        train.append(idx[:cut])
        test.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def first_split(labels: np.ndarray, first_per_class: int):
    """Salman et al.'s Caltech split: the first `first_per_class` images of each class in the
    dataset's own order (torchvision's Caltech: categories sorted, files image_0001... in
    order) go to train, every other image to test. Deterministic: no seed. Sorted (train, test)."""
    train = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if not 0 < first_per_class < len(idx):
            raise ValueError(
                f"class {c} has {len(idx)} images: cannot put {first_per_class} in train and keep a test image"
            )
        train.append(idx[:first_per_class])
    train = np.sort(np.concatenate(train))
    return train, np.setdiff1d(np.arange(len(labels)), train)


def split_indices(labels: np.ndarray, split: dict):
    """(train, test) indices of a dataset entry's `split`: first_per_class, else seeded."""
    if split.get("first_per_class") is not None:
        return first_split(labels, split["first_per_class"])
    return class_split(labels, split["seed"], split.get("train_per_class"), split.get("test_fraction"))


def _take(images, idx):
    if isinstance(images, np.ndarray):
        return images[idx]
    if isinstance(images, Lazy):
        return images.take(idx)
    return [images[i] for i in idx]


def prepare(spec: dict, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of a configured dataset: {"train": (images, labels), "test": (...)}, and
    the training images' extents as a third member where they are kept whole (train_crop:
    random or random_resized; see the module docstring)."""
    loader = spec["loader"]
    split = spec.get("split")
    if split:  # no official split (Caltech, the demo sets): seeded or first-N per class
        images, labels = read(loader, root, None)
        images, labels = _keep_classes(images, labels, spec.get("classes"))
        parts = dict(zip(("train", "test"), split_indices(labels, split)))
        out = {name: (_take(images, idx), labels[idx]) for name, idx in parts.items()}
    else:
        out = {s: _keep_classes(*read(loader, root, s), spec.get("classes")) for s in ("train", "test")}
    mode = spec.get("train_crop", "center")
    whole = mode in WHOLE  # the training images stay whole
    max_side = None
    if mode == "random_resized":
        if not spec.get("size"):
            raise ValueError(f"{loader}: train_crop: random_resized needs a size (the stored shorter side)")
        max_side = int(spec["size"] * spec.get("max_aspect", MAX_ASPECT))
    out = {
        s: (
            resize(
                x,
                spec.get("size"),
                spec.get("downscale"),
                crop=not (whole and s == "train"),
                crop_size=spec.get("test_crop") if s == "test" else None,
                max_side=max_side,
            ),
            y,
        )
        for s, (x, y) in out.items()
    }
    if whole:
        images, labels = out["train"]
        board, extents = canvas(images)
        out["train"] = (board, labels, extents)
    if spec.get("lowpass"):
        out = {s: (lowpass(x, spec["lowpass"]), y) for s, (x, y) in out.items()}
    return out


def _keep_classes(images, labels, classes):
    """Only the listed classes, relabelled 0..len(classes)-1 in the listed order."""
    if not classes:
        return images, labels
    keep = np.flatnonzero(np.isin(labels, classes))
    remap = {c: i for i, c in enumerate(classes)}
    return _take(images, keep), np.array([remap[c] for c in labels[keep]], dtype=np.int64)


def sized_split(split: dict | None) -> dict | None:
    """A `split` entry as the size helpers (sizes.train_size, test_size, split_size) count it:
    first_per_class puts as many images per class in train as train_per_class does."""
    if split and split.get("first_per_class") is not None:
        return {**split, "train_per_class": split["first_per_class"]}
    return split
