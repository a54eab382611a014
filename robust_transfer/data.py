"""Datasets: download through torchvision (local mirror first), read, split, resize, subsample.

Every split is stored as one uncompressed ``.npz`` of ``images`` (N, H, W, 3) uint8 and
``labels`` (N,) int64, so that a fine-tuning job can put the whole split on its device at once.
"""

from __future__ import annotations

import functools
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_STATS = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)}  # used for CIFAR-100 too
FMNIST_STATS = {"mean": (0.1801,) * 3, "std": (0.3421,) * 3}  # the authors reuse it for KMNIST


class MissingData(RuntimeError):
    pass


@dataclass(frozen=True)
class Loader:
    """Everything the workflow knows about one raw dataset: the one place to add a dataset."""

    read: Callable  # (root, split or None) -> (uint8 (N, H, W, 3) images or PIL images, labels)
    files: tuple[str, ...] = ()  # what the reader needs under the download root; () = bundled with a pip package
    archives: tuple[tuple[str, str], ...] = ()  # (archive, folder it unpacks into), in unpacking order
    official_split: bool = True  # False: the dataset entry must set `split` (seeded per class)
    train_size: int | None = None  # images in the official training split (the authors' "full")
    test_size: int | None = None  # images in the official test split (every evaluation reads them all)
    classes: int | None = None
    class_counts: tuple[int, ...] | None = None  # images per class of a dataset without a split
    images: int | None = None  # all images of a dataset without a split, where class counts are not listed
    shape: tuple[int, int] | None = None  # (height, width) of every image as read; None: sizes vary
    # The dataset's own normalisation (the authors' custom_datasets.py; their from-scratch runs)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


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


def _read_arrays(name):
    def read(root, split):
        ds = _torchvision(name, split, root)
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        return _rgb(data), np.asarray(ds.targets, dtype=np.int64)

    return read


def _read_svhn(root, split):
    ds = _torchvision("svhn", split, root)
    return _rgb(ds.data.transpose(0, 2, 3, 1)), ds.labels.astype(np.int64)


def _read_caltech101(root, split):
    ds = _torchvision("caltech101", split, root)
    return [ds[i][0].convert("RGB") for i in range(len(ds))], np.asarray(ds.y, dtype=np.int64)


def _read_digits(root, split):
    from sklearn.datasets import load_digits

    d = load_digits()
    return _rgb(np.round(d.images * (255 / 16)).astype(np.uint8)), d.target.astype(np.int64)


def _read_lfw(root, split):
    from skimage.data import lfw_subset

    faces = lfw_subset()  # 100 faces, then 100 non-faces, floats in [0, 1]
    labels = np.repeat([1, 0], [100, len(faces) - 100]).astype(np.int64)
    return _rgb(np.round(faces * 255).astype(np.uint8)), labels


def _idx_files(folder: str) -> tuple[str, ...]:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return tuple(f"{folder}/raw/{f}" for f in names)


_MNIST_SIZES = {"train_size": 60000, "test_size": 10000, "classes": 10, "shape": (28, 28)}
_CIFAR10 = [
    f"cifar-10-batches-py/{f}" for f in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
]
LOADERS: dict[str, Loader] = {
    "cifar10": Loader(
        _read_arrays("cifar10"),
        tuple(_CIFAR10),
        (("cifar-10-python.tar.gz", "."),),
        train_size=50000,
        test_size=10000,
        classes=10,
        shape=(32, 32),
        **CIFAR_STATS,
    ),
    "cifar100": Loader(
        _read_arrays("cifar100"),
        tuple(f"cifar-100-python/{f}" for f in ["meta", "train", "test"]),
        (("cifar-100-python.tar.gz", "."),),
        train_size=50000,
        test_size=10000,
        classes=100,
        shape=(32, 32),
        **CIFAR_STATS,
    ),
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


def missing_files(loader: str, root: Path) -> list[str]:
    return [f for f in LOADERS[loader].files if not (root / f).exists()]


def download(loader: str, root: Path, mirror: Path | None = None, offline: bool = False) -> None:
    """Make `root` hold what torchvision reads for `loader`: mirror first, then the internet."""
    root.mkdir(parents=True, exist_ok=True)
    spec = LOADERS[loader]
    if not spec.files:
        (root / "SOURCE").write_text(f"{loader}: bundled with a pip package; nothing to download\n")
        return
    if mirror is not None:
        for rel in spec.files + _archives(loader):
            src, dst = Path(mirror) / rel, root / rel
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    if missing_files(loader, root):
        _unpack(loader, root)
    if missing_files(loader, root) and not offline:
        try:
            for split in ("train", "test"):
                _torchvision(loader, split, root, download=True)
        except Exception as err:  # no network, host down, checksum mismatch
            raise _missing(loader, root, mirror, f"download failed: {err}") from err
    if missing_files(loader, root):
        raise _missing(loader, root, mirror, "offline mode: no download attempted")
    for split in ("train", "test"):  # torchvision's own integrity checks (md5 for CIFAR, SVHN)
        _torchvision(loader, split, root)


def _archives(loader: str) -> tuple[str, ...]:
    return tuple(archive for archive, _ in LOADERS[loader].archives)


def _unpack(loader: str, root: Path) -> None:
    """Unpack archives already in root (from a mirror), as torchvision's download() would."""
    from torchvision.datasets.utils import extract_archive

    for archive, into in LOADERS[loader].archives:
        if (root / archive).exists():
            extract_archive(str(root / archive), str(root / into))


def _missing(loader, root, mirror, why) -> MissingData:
    files = "\n  ".join(missing_files(loader, root))
    where = (
        f"{mirror}/ (data.mirror) or {root}/"
        if mirror
        else f"{root}/ (or set data.mirror to a folder laid out the same way)"
    )
    return MissingData(
        f"dataset {loader!r} is incomplete ({why}). Missing files:\n  {files}\n"
        f"Put them, at these relative paths (torchvision's layout), under {where}; "
        f"torchvision's archives ({', '.join(_archives(loader)) or 'none for this dataset'}) work too."
    )


def _rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1|3) uint8 -> (N, H, W, 3); grey becomes three equal channels."""
    if images.ndim == 3:
        images = images[..., None]
    return np.ascontiguousarray(np.broadcast_to(images, images.shape[:3] + (3,)))


def read(loader: str, root: Path, split: str | None):
    """Images (uint8 array, or a list of PIL images of varying size) and labels of a split.

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


def resize(images, size: int | None, downscale: int | None = None, crop: bool = True):
    """Bilinear resize as torchvision's Resize(n) on PIL images (shorter side to n, aspect kept),
    then a centre crop to size x size (the authors' test transform); `downscale` first shrinks
    the shorter side to `downscale` (the low-resolution variant of Table 2). Square images
    are simply resized. crop=False keeps each whole image (a list, sizes vary): training then
    takes a random window of it (`train_crop: random`, see canvas)."""
    from PIL import Image

    def shorter_side(img, n):
        w, h = img.size
        return (
            img
            if min(w, h) == n
            else img.resize((max(1, round(w * n / min(w, h))), max(1, round(h * n / min(w, h)))), Image.BILINEAR)
        )

    def one(img):
        img = img if isinstance(img, Image.Image) else Image.fromarray(img)
        if downscale:
            img = shorter_side(img, downscale)
        if size:
            img = shorter_side(img, size)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size)) if crop else img
        return np.asarray(img.convert("RGB"))

    if isinstance(images, np.ndarray) and not downscale and (not size or images.shape[1:3] == (size, size)):
        return images
    return np.stack([one(img) for img in images]) if crop else [one(img) for img in images]


def canvas(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Images of different sizes as one zero-padded (N, H_max, W_max, 3) array, each in the top
    left corner, and their (height, width) extents: a split that stays on the device whole."""
    extents = np.array([img.shape[:2] for img in images], dtype=np.int64)
    out = np.zeros((len(images), *extents.max(0), 3), dtype=np.uint8)
    for img, o in zip(images, out):
        o[: img.shape[0], : img.shape[1]] = img
    return out, extents


@functools.cache  # one order per image size, shared by every image of a dataset
def lowpass_order(size: int) -> np.ndarray:
    """Flat indices of a size x size DCT grid from the highest frequency down: by radius
    u^2 + v^2, ties broken by flat index (a stable sort), so the cut is exactly defined."""
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    order = np.argsort(-(u**2 + v**2).ravel(), kind="stable")
    order.setflags(write=False)  # cached: shared by every caller
    return order


def lowpass_float(image: np.ndarray, zeroed: int) -> np.ndarray:
    """Zero the `zeroed` highest frequencies of each channel's orthonormal 2-D DCT-II (the
    real-valued spectrum, so no conjugate pairs to keep in step) and transform back."""
    from scipy.fft import dctn, idctn

    h, w = image.shape[:2]
    if h != w:
        raise ValueError(f"low-pass needs square images, got {h}x{w}: set `size`")
    coef = dctn(image.astype(np.float64), axes=(0, 1), norm="ortho")  # every channel at once
    coef.reshape(h * w, -1)[lowpass_order(h)[:zeroed]] = 0.0  # a view: zeroes coef in place
    return idctn(coef, axes=(0, 1), norm="ortho")


def lowpass(images: np.ndarray, zeroed: int) -> np.ndarray:
    """The low-pass variant of Table 2 on uint8 images (rounded and clipped back to uint8)."""
    return np.stack([np.clip(np.rint(lowpass_float(img, zeroed)), 0, 255).astype(np.uint8) for img in images])


def prepare(spec: dict, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of a configured dataset: {"train": (images, labels), "test": (...)}."""
    loader = spec["loader"]
    split = spec.get("split")
    if split:  # no official split (Caltech-101, the demo sets): a seeded per-class split
        images, labels = read(loader, root, None)
        images, labels = _keep_classes(images, labels, spec.get("classes"))
        parts = dict(
            zip(
                ("train", "test"),
                class_split(labels, split["seed"], split.get("train_per_class"), split.get("test_fraction")),
            )
        )
        out = {
            name: ([images[i] for i in idx] if isinstance(images, list) else images[idx], labels[idx])
            for name, idx in parts.items()
        }
    else:
        out = {s: _keep_classes(*read(loader, root, s), spec.get("classes")) for s in ("train", "test")}
    whole = spec.get("train_crop", "center") == "random"  # the training images stay whole
    out = {
        s: (resize(x, spec.get("size"), spec.get("downscale"), crop=not (whole and s == "train")), y)
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
    images = [images[i] for i in keep] if isinstance(images, list) else images[keep]
    return images, np.array([remap[c] for c in labels[keep]], dtype=np.int64)


def save_split(path, images: np.ndarray, labels: np.ndarray, extents: np.ndarray | None = None) -> None:
    """One split as an uncompressed .npz; `extents` (N, 2): the true (height, width) of each
    image of a canvas (train_crop: random)."""
    arrays = {"images": images, "labels": labels} | ({"extents": extents} if extents is not None else {})
    np.savez(path, **arrays)


def load_split(path, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a split; `rows`: only those images (a run's subset), read from
    a memory map instead of the whole file (n = 100 of CIFAR's 50,000: 30 KB, not 150 MB)."""
    with _open(path) as f:
        labels = _read(path, f, "labels")
        if rows is None:
            return _read(path, f, "images"), labels
    try:
        images = np.ascontiguousarray(_mapped(path, "images")[rows])
    except Exception as err:  # a member cut short, or missing
        raise BadData(path, err) from None
    return images, labels[rows]


def load_labels(path) -> np.ndarray:
    """The labels of a whole split (what a run needs of the images it does not train on)."""
    with _open(path) as f:
        return _read(path, f, "labels")


def load_extents(path, rows: np.ndarray | None = None) -> np.ndarray | None:
    with _open(path) as f:
        if "extents" not in f:
            return None
        extents = _read(path, f, "extents")
        return extents if rows is None else extents[rows]


def _open(path):
    import zipfile

    try:
        return np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, not an npz
        raise BadData(path, err) from None


def _read(path, f, key) -> np.ndarray:
    try:
        return f[key]
    except Exception as err:  # a member cut short, or missing
        raise BadData(path, err) from None


def _mapped(path, name: str) -> np.ndarray:
    """One array of an .npz as a read-only memory map: np.savez stores members uncompressed,
    so the .npy bytes lie in the file as they are; a compressed member is read whole."""
    import zipfile

    fmt = np.lib.format
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{name}.npy")
        with z.open(info) as member:  # parse the .npy header where the member starts
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(fmt.read_magic(member))
            if info.compress_type != zipfile.ZIP_STORED or read is None:
                with np.load(path) as f:
                    return f[name]
            shape, fortran, dtype = read(member)
            header = member.tell()
    with open(path, "rb") as f:  # the local file header: 30 bytes, then name and extra field
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len) + header
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order=order)


class BadData(ValueError):
    def __init__(self, path, err):
        super().__init__(
            f"{path}: unreadable prepared split ({type(err).__name__}: {err}). It was cut short or is not one "
            f"of ours: delete it (or run snakemake --forcerun prepare) so that it is prepared again."
        )


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
