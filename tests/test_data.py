"""Dataset I/O through the real code path: tiny datasets written in each torchvision loader's true
on-disk format, made ready by download.download(..., offline=True) (which builds the real torchvision
dataset classes with download=False) and read back by datasets.prepare(). No network, no GPU.

CIFAR and SVHN: torchvision checks the md5 of every file against constants on the dataset class.
The tests replace those constants (monkeypatch, undone after each test) by the md5s of the files
they wrote, so the check still runs, on our files; no code under test is patched."""

from __future__ import annotations

import hashlib
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torchvision.datasets as tvd
from PIL import Image

from robust_transfer import datasets, download, store, subsets
from robust_transfer import images as imaging

TORCHVISION = ["cifar10", "cifar100", "svhn", "mnist", "fmnist", "kmnist", "caltech101"]
MNIST_CLASSES = {"mnist": tvd.MNIST, "fmnist": tvd.FashionMNIST, "kmnist": tvd.KMNIST}
CIFAR_CLASSES = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
# Caltech-101 categories: image count and the colour of each image's left half (a grey category
# is stored as greyscale JPEGs, as some real Caltech images are). Sorted, as torchvision lists them:
# upper case first, so "Faces_easy" is label 0.
CALTECH = {"Faces_easy": (3, (200, 30, 30)), "accordion": (4, (110, 110, 110)), "butterfly": (5, (30, 30, 200))}
CALTECH_SIZES = [(24, 32), (40, 64), (32, 32)]  # (height, width), cycled: images of varying size
JPEG_TOLERANCE = 8


# ----------------------------------------------------------------------------------- helpers


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def random_pixels(rng, *shape) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_cifar(root, loader, monkeypatch) -> dict:
    """CIFAR-10/100 python pickles (latin1-readable dicts: 'data' (N, 3072) row-major CHW,
    'labels' or 'fine_labels', plus the meta file); md5 constants set to the written files."""
    cls, rng = CIFAR_CLASSES[loader], np.random.default_rng(10)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    n_classes, label_key = (10, "labels") if loader == "cifar10" else (100, "fine_labels")
    expected, checksums = {}, {}
    for split, files in (("train", [f for f, _ in cls.train_list]), ("test", [f for f, _ in cls.test_list])):
        xs, ys = [], []
        for name in files:
            n = 2 if loader == "cifar10" and split == "train" else 4  # CIFAR-10 train: 5 batches of 2
            x, y = random_pixels(rng, n, 32, 32, 3), rng.integers(0, n_classes, n)
            entry = {
                "batch_label": name,
                "data": x.transpose(0, 3, 1, 2).reshape(n, 3072),
                label_key: y.tolist(),
                "filenames": [f"{name}_{i}.png" for i in range(n)],
            }
            if loader == "cifar100":
                entry["coarse_labels"] = (y // 5).tolist()
            (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
            checksums[name] = md5(folder / name)
            xs.append(x)
            ys.append(y)
        expected[split] = (np.concatenate(xs), np.concatenate(ys))
    meta = {cls.meta["key"]: [f"class{i}" for i in range(n_classes)]}
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    # Checksum constants only (see the module docstring): torchvision then verifies our files.
    monkeypatch.setattr(cls, "train_list", [[f, checksums[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, checksums[f]] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})
    return expected


def write_svhn(root, monkeypatch) -> dict:
    """SVHN .mat files: X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0."""
    rng, expected = np.random.default_rng(20), {}
    split_list = {k: list(v) for k, v in tvd.SVHN.split_list.items()}
    root.mkdir(parents=True, exist_ok=True)
    for split, digits in (("train", [0, 1, 2, 3, 9, 0]), ("test", [5, 0, 7, 8])):
        x, digits = random_pixels(rng, len(digits), 32, 32, 3), np.array(digits)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        path = root / f"{split}_32x32.mat"
        scipy.io.savemat(path, {"X": x.transpose(1, 2, 3, 0), "y": y})
        split_list[split][2] = md5(path)
        expected[split] = (x, digits)
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)  # checksum constants only
    return expected


def write_idx(path, array: np.ndarray) -> None:
    """An uncompressed big-endian idx file: magic 2051 for (N, H, W) images, 2049 for labels."""
    magic = 2051 if array.ndim == 3 else 2049
    path.write_bytes(struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


def write_mnist(root, loader) -> dict:
    """MNIST-format idx files under <root>/<ClassName>/raw/ (torchvision checks existence only)."""
    rng, expected = np.random.default_rng(30), {}
    raw = root / MNIST_CLASSES[loader].__name__ / "raw"
    raw.mkdir(parents=True)
    for split, prefix, n in (("train", "train", 8), ("test", "t10k", 4)):
        x, y = random_pixels(rng, n, 28, 28), rng.integers(0, 10, n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        expected[split] = (x, y)
    return expected


def caltech_image(colour, size) -> Image.Image:
    """Left half the category's colour, right half near-white: solid blocks aligned on JPEG's
    16-pixel grid survive compression; the edge makes a low-resolution copy visibly blurrier."""
    h, w = size
    grey = colour[0] == colour[1] == colour[2]
    img = np.full((h, w, 3), 250, np.uint8)
    img[:, : w // 2] = colour
    return Image.fromarray(img[..., 0]) if grey else Image.fromarray(img)


def write_caltech(root) -> list[int]:
    """caltech101/101_ObjectCategories/<category>/image_0001.jpg..., with the BACKGROUND_Google
    folder torchvision requires (and drops). Returns the labels in torchvision's order."""
    top = root / "caltech101" / "101_ObjectCategories"
    labels = []
    for label, (category, (count, colour)) in enumerate(CALTECH.items()):
        (top / category).mkdir(parents=True)
        for i in range(count):
            caltech_image(colour, CALTECH_SIZES[i % len(CALTECH_SIZES)]).save(
                top / category / f"image_{i + 1:04d}.jpg", quality=95
            )
        labels += [label] * count
    (top / "BACKGROUND_Google").mkdir()
    for i in range(2):
        caltech_image((250, 0, 250), (32, 32)).save(top / "BACKGROUND_Google" / f"image_{i + 1:04d}.jpg", quality=95)
    return labels


def write(loader, root, monkeypatch):
    """Any torchvision loader's tiny dataset under `root`."""
    if loader in CIFAR_CLASSES:
        return write_cifar(root, loader, monkeypatch)
    if loader == "svhn":
        return write_svhn(root, monkeypatch)
    if loader in MNIST_CLASSES:
        return write_mnist(root, loader)
    return write_caltech(root)


def as_arrays(images) -> list[np.ndarray]:
    return [np.asarray(img) for img in images]


CALTECH_SPEC = {"loader": "caltech101", "size": 16, "split": {"seed": 0, "train_per_class": 2}}
HALF_SPLIT = {"seed": 0, "test_fraction": 0.5}


# ------------------------------------------------------------------ torchvision formats


@pytest.mark.parametrize("loader", ["cifar10", "cifar100"])
def test_cifar_round_trip(loader, tmp_path, monkeypatch):
    """CIFAR pickles (CHW rows, labels / fine_labels) come back as exact NHWC pixels and labels,
    batches concatenated in order."""
    expected = write_cifar(tmp_path, loader, monkeypatch)
    download.download(loader, tmp_path, offline=True)
    out = datasets.prepare({"loader": loader}, tmp_path)
    for split in ("train", "test"):
        images, labels = out[split]
        assert images.dtype == np.uint8 and images.shape == (len(expected[split][0]), 32, 32, 3)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
    assert len(out["train"][1]) == (10 if loader == "cifar10" else 4)


def test_svhn_round_trip_maps_label_10_to_0(tmp_path, monkeypatch):
    """SVHN's (H, W, C, N) arrays come back as exact NHWC pixels, and label 10 as digit 0."""
    expected = write_svhn(tmp_path, monkeypatch)
    download.download("svhn", tmp_path, offline=True)
    out = datasets.prepare({"loader": "svhn"}, tmp_path)
    for split in ("train", "test"):
        images, labels = out[split]
        assert images.dtype == np.uint8 and images.shape == (len(labels), 32, 32, 3)
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
        assert labels.dtype == np.int64 and 10 not in labels and 0 in labels


@pytest.mark.parametrize("loader", sorted(MNIST_CLASSES))
def test_mnist_family_round_trip_grey_to_rgb(loader, tmp_path):
    """idx files in <ClassName>/raw/ come back exactly, grey pixels copied to three channels."""
    expected = write_mnist(tmp_path, loader)
    download.download(loader, tmp_path, offline=True)
    out = datasets.prepare({"loader": loader}, tmp_path)
    for split in ("train", "test"):
        images, labels = out[split]
        grey, known = expected[split]
        assert images.dtype == np.uint8 and images.shape == grey.shape + (3,)
        for channel in range(3):
            np.testing.assert_array_equal(images[..., channel], grey)
        np.testing.assert_array_equal(labels, known)
        assert labels.dtype == np.int64


def test_caltech101_split_size_and_labels(tmp_path):
    """Caltech-101 (no official split): a seeded per-class split of the sorted categories without
    BACKGROUND_Google, every image resized to 16x16, each image still with its category's label."""
    labels = write_caltech(tmp_path)
    download.download("caltech101", tmp_path, offline=True)
    out = datasets.prepare(CALTECH_SPEC, tmp_path)
    train, test = out["train"], out["test"]
    assert np.bincount(train[1]).tolist() == [2, 2, 2]
    assert np.bincount(test[1]).tolist() == [count - 2 for count, _ in CALTECH.values()]
    assert sorted(train[1].tolist() + test[1].tolist()) == labels  # background dropped
    colours = [np.array(colour) for _, colour in CALTECH.values()]
    for images, ys in (train, test):
        assert images.dtype == np.uint8 and images.shape == (len(ys), 16, 16, 3)
        for image, y in zip(images, ys):
            np.testing.assert_allclose(image[8, 2], colours[y], atol=JPEG_TOLERANCE)  # left half
            np.testing.assert_allclose(image[8, 13], [250] * 3, atol=JPEG_TOLERANCE)  # right half
            if y == 1:  # the greyscale category: three identical channels
                assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    again = datasets.prepare(CALTECH_SPEC, tmp_path)
    np.testing.assert_array_equal(again["test"][0], test[0])  # the split is seeded


def test_caltech101_downscale_variant(tmp_path):
    """{"downscale": 4} (Table 2's low-resolution variant) keeps the split and the 16x16 shape
    but blurs the images."""
    write_caltech(tmp_path)
    download.download("caltech101", tmp_path, offline=True)
    plain = datasets.prepare(CALTECH_SPEC, tmp_path)
    low = datasets.prepare({**CALTECH_SPEC, "downscale": 4}, tmp_path)
    for split in ("train", "test"):
        assert low[split][0].shape == plain[split][0].shape
        np.testing.assert_array_equal(low[split][1], plain[split][1])
        diff = np.abs(low[split][0].astype(int) - plain[split][0].astype(int))
        assert diff.max() > 40


def test_download_runs_torchvision_md5_check(tmp_path, monkeypatch):
    """download() verifies with torchvision's own checks: a corrupted CIFAR batch is refused,
    so the patched checksums above are really compared with the files."""
    write_cifar(tmp_path, "cifar10", monkeypatch)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "ab") as f:
        f.write(b"\0")
    with pytest.raises(RuntimeError, match="corrupted"):
        download.download("cifar10", tmp_path, offline=True)


# --------------------------------------------------------------------- missing data, mirror


@pytest.mark.parametrize("loader", TORCHVISION)
def test_offline_missing_data_names_files(loader, tmp_path):
    """Offline with nothing there: MissingData lists every file torchvision needs and where to put it."""
    root = tmp_path / "root"
    with pytest.raises(download.MissingData) as err:
        download.download(loader, root, offline=True)
    message = str(err.value)
    assert (
        "offline" in message and f"Put them, at these relative paths (torchvision's layout), under {root}/" in message
    )
    for rel in datasets.LOADERS[loader].files:
        assert rel in message


def test_offline_missing_data_names_only_missing_file_and_mirror(tmp_path):
    """With one MNIST file missing, the message names that file (not the others) and the mirror."""
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    write_mnist(root, "mnist")
    (root / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(download.MissingData) as err:
        download.download("mnist", root, mirror=mirror, offline=True)
    message = str(err.value)
    assert "MNIST/raw/t10k-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" not in message
    assert f"under {mirror}/ (data.mirror) or {root}/" in message


@pytest.mark.parametrize("loader", TORCHVISION)
def test_mirror_is_copied_into_empty_root(loader, tmp_path, monkeypatch):
    """Files in a mirror laid out like a torchvision root are copied byte for byte into an empty
    root and then load exactly as the mirror's own copy does."""
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    write(loader, mirror, monkeypatch)
    download.download(loader, root, mirror=mirror, offline=True)
    assert download.missing_files(loader, root) == []
    for rel in datasets.LOADERS[loader].files:
        src, dst = mirror / rel, root / rel
        pairs = (
            [(src, dst)] if src.is_file() else [(f, dst / f.relative_to(src)) for f in src.rglob("*") if f.is_file()]
        )
        assert pairs and all(a.read_bytes() == b.read_bytes() for a, b in pairs)
    for split in ("train", "test"):
        (got_x, got_y), (want_x, want_y) = datasets.read(loader, root, split), datasets.read(loader, mirror, split)
        np.testing.assert_array_equal(got_y, want_y)
        for a, b in zip(as_arrays(got_x), as_arrays(want_x), strict=True):
            np.testing.assert_array_equal(a, b)


def _cifar10_archive(tmp_path, monkeypatch):
    """A mirror holding only cifar-10-python.tar.gz (torchvision's archive) of a tiny CIFAR-10."""
    staging, mirror = tmp_path / "staging", tmp_path / "mirror"
    expected = write_cifar(staging, "cifar10", monkeypatch)
    mirror.mkdir()
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(mirror / "cifar-10-python.tar.gz"))  # checksum constant
    return mirror, expected


def test_mirror_archive_is_unpacked_by_torchvision(tmp_path, monkeypatch):
    """Not offline, a mirrored archive with the right md5 is unpacked by torchvision's download()
    without touching the network (torchvision skips the fetch of a file that passes its md5)."""
    mirror, expected = _cifar10_archive(tmp_path, monkeypatch)
    download.download("cifar10", tmp_path / "root", mirror=mirror, offline=False)
    images, labels = datasets.prepare({"loader": "cifar10"}, tmp_path / "root")["test"]
    np.testing.assert_array_equal(images, expected["test"][0])
    np.testing.assert_array_equal(labels, expected["test"][1])


def test_offline_mirror_archive_is_usable(tmp_path, monkeypatch):
    """A mirror may hold torchvision's archives instead of the unpacked files: offline,
    download() copies cifar-10-python.tar.gz and unpacks it itself."""
    mirror, expected = _cifar10_archive(tmp_path, monkeypatch)
    download.download("cifar10", tmp_path / "root", mirror=mirror, offline=True)
    labels = datasets.prepare({"loader": "cifar10"}, tmp_path / "root")["test"][1]
    np.testing.assert_array_equal(labels, expected["test"][1])


# ------------------------------------------------------------------ packaged demo datasets


def test_digits_demo_classes_and_split(tmp_path):
    """sklearn's digits 5-9, relabelled 0..4, split half/half per class: train and test
    partition exactly those images (pixels scaled 0-16 -> 0-255), and the split is seeded."""
    from sklearn.datasets import load_digits

    spec = {"loader": "digits", "classes": [5, 6, 7, 8, 9], "split": HALF_SPLIT}
    download.download("digits", tmp_path, offline=True)
    assert "nothing to download" in (tmp_path / "SOURCE").read_text()
    out = datasets.prepare(spec, tmp_path)
    d = load_digits()
    keep = d.target >= 5
    counts = np.bincount(d.target[keep] - 5)
    for split in ("train", "test"):
        images, labels = out[split]
        assert images.dtype == np.uint8 and images.shape == (len(labels), 8, 8, 3)
        assert set(labels.tolist()) == {0, 1, 2, 3, 4}
    assert np.bincount(out["test"][1]).tolist() == [int(round(c * 0.5)) for c in counts]

    def records(grey, labels):  # (label, pixels) of every image, order-free
        return sorted((int(y), x.tobytes()) for x, y in zip(grey, labels))

    (train_x, train_y), (test_x, test_y) = out["train"], out["test"]
    for images in (train_x, test_x):
        assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()
    want = np.round(d.images[keep] * 255 / 16).astype(np.uint8)
    assert sorted(records(train_x[..., 0], train_y) + records(test_x[..., 0], test_y)) == records(
        want, d.target[keep] - 5
    )
    again = datasets.prepare(spec, tmp_path)
    other = datasets.prepare({**spec, "split": {**HALF_SPLIT, "seed": 1}}, tmp_path)
    np.testing.assert_array_equal(again["train"][0], out["train"][0])
    assert not np.array_equal(other["train"][0], out["train"][0])


def test_lfw_demo_two_classes(tmp_path):
    """scikit-image's LFW subset: 200 grey 25x25 images, 100 faces (1) and 100 non-faces (0)."""
    download.download("lfw", tmp_path, offline=True)
    out = datasets.prepare({"loader": "lfw", "split": HALF_SPLIT}, tmp_path)
    (train_x, train_y), (test_x, test_y) = out["train"], out["test"]
    assert len(train_y) + len(test_y) == 200
    assert np.bincount(train_y).tolist() == [50, 50] and np.bincount(test_y).tolist() == [50, 50]
    for images in (train_x, test_x):
        assert images.dtype == np.uint8 and images.shape[1:] == (25, 25, 3)
        assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()


# -------------------------------------------------------------------------- splits on disk


def test_save_load_split_round_trip(tmp_path):
    """A split survives the .npz round trip exactly, stored uncompressed (read whole onto a device)."""
    rng = np.random.default_rng(40)
    images, labels = random_pixels(rng, 5, 6, 7, 3), rng.integers(0, 3, 5).astype(np.int64)
    path = tmp_path / "split.npz"
    store.save_split(path, images, labels)
    got_images, got_labels = store.load_split(path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


def test_load_split_rows_reads_only_the_subset(tmp_path):
    """rows: the subset's images and labels, from a memory map of the stored member; a
    compressed file (not ours, but valid .npz) gives the same through a whole read."""
    rng = np.random.default_rng(41)
    images, labels = random_pixels(rng, 50, 6, 7, 3), rng.integers(0, 3, 50).astype(np.int64)
    extents = rng.integers(1, 9, (50, 2))
    rows = np.array([0, 7, 8, 31, 49])
    store.save_split(tmp_path / "s.npz", images, labels, extents)
    np.savez_compressed(tmp_path / "c.npz", images=images, labels=labels)
    for name in ("s.npz", "c.npz"):
        got_images, got_labels = store.load_split(tmp_path / name, rows=rows)
        assert isinstance(got_images, np.ndarray) and got_images.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got_images, images[rows])
        np.testing.assert_array_equal(got_labels, labels[rows])
    np.testing.assert_array_equal(store.load_extents(tmp_path / "s.npz", rows=rows), extents[rows])
    assert store.load_extents(tmp_path / "c.npz", rows=rows) is None


def test_resize_downscale_shrinks_then_enlarges():
    """resize(size, downscale) == bilinear to downscale x downscale, then to size x size;
    arrays already at the size (or with no size) are returned untouched."""
    rng = np.random.default_rng(50)
    images = random_pixels(rng, 3, 12, 12, 3)
    assert imaging.resize(images, None) is images and imaging.resize(images, 12) is images
    low = imaging.resize(images, 12, downscale=4)
    assert low.shape == images.shape and low.dtype == np.uint8
    np.testing.assert_array_equal(low, imaging.resize(imaging.resize(images, 4), 12))
    assert not np.array_equal(low, images)
    pil = Image.fromarray(images[0]).resize((4, 4), Image.BILINEAR).resize((12, 12), Image.BILINEAR)
    np.testing.assert_array_equal(low[0], np.asarray(pil))
    mixed = [Image.fromarray(random_pixels(rng, 9, 15)), Image.fromarray(random_pixels(rng, 20, 10, 3))]
    assert imaging.resize(mixed, 8, downscale=2).shape == (2, 8, 8, 3)


def test_subset_keeps_every_class_and_is_seeded():
    """The paper's subset rule: `size` sorted indices with every class present, same for the same seed."""
    labels = np.repeat(np.arange(4), [30, 5, 1, 14])
    picked = subsets.subset(labels, 6, seed=3)
    assert len(picked) == 6 and set(labels[picked].tolist()) == {0, 1, 2, 3}
    assert (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(picked, subsets.subset(labels, 6, seed=3))
    assert len(subsets.subset(labels, "full", seed=3)) == len(labels)
    with pytest.raises(ValueError):
        subsets.subset(labels, 3, seed=3)  # fewer slots than classes


# ------------------------------------------------------------------ low-pass variant (Table 2)


def test_lowpass_zeroes_exactly_the_configured_frequencies():
    """The N highest DCT frequencies (by u^2 + v^2, ties by index) become zero; every other
    coefficient is unchanged, per channel."""
    from scipy.fft import dctn

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    out = imaging.lowpass_float(image, 40)
    cut = imaging.lowpass_order(16)[:40]
    for c in range(3):
        before = dctn(image[..., c].astype(float), norm="ortho").ravel()
        after = dctn(out[..., c], norm="ortho").ravel()
        np.testing.assert_allclose(after[cut], 0, atol=1e-9)
        keep = np.setdiff1d(np.arange(256), cut)
        np.testing.assert_allclose(after[keep], before[keep], atol=1e-9)
    # the highest frequency (15, 15) goes first; ties such as (15, 14) and (14, 15) by index
    assert list(imaging.lowpass_order(16)[:3]) == [255, 239, 254]


def test_lowpass_in_prepare_removes_the_band():
    spec = {"loader": "lfw", "size": 24, "lowpass": 200, "split": {"seed": 0, "test_fraction": 0.25}}
    plain = datasets.prepare({**spec, "lowpass": None}, Path("."))
    low = datasets.prepare(spec, Path("."))
    from scipy.fft import dctn

    assert low["train"][0].shape == plain["train"][0].shape and low["train"][0].dtype == np.uint8
    np.testing.assert_array_equal(low["train"][1], plain["train"][1])
    cut = imaging.lowpass_order(24)[:200]
    energy = lambda a: sum((dctn(img[..., 0].astype(float), norm="ortho").ravel()[cut] ** 2).sum() for img in a)  # noqa: E731
    # only uint8 rounding noise is left in the removed band
    assert energy(low["train"][0]) < 0.05 * energy(plain["train"][0])


def test_resize_keeps_aspect_then_centre_crops():
    """Non-square images (Caltech-101): shorter side to `size` as torchvision's Resize(n), then
    the centre size x size crop, as the authors' transform; never squashed."""
    from PIL import Image

    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 200  # a bright middle third
    out = imaging.resize([Image.fromarray(wide)], 10)
    assert out.shape == (1, 10, 10, 3)
    assert (out[0, :, 2:8] == 200).all()  # the crop is the middle third, not the whole width
    low = imaging.resize([Image.fromarray(wide)], 10, downscale=4)
    assert low.shape == (1, 10, 10, 3) and not np.array_equal(low, out)


def test_caltech101_random_train_crop_keeps_whole_images(tmp_path):
    """train_crop: random (the authors' Resize + RandomCrop): each training image is kept whole,
    shorter side to `size`, aspect kept, on a zero canvas with its true extent; the test split
    is still the centre crop."""
    write_caltech(tmp_path)
    download.download("caltech101", tmp_path, offline=True)
    out = datasets.prepare({**CALTECH_SPEC, "train_crop": "random"}, tmp_path)
    centre = datasets.prepare(CALTECH_SPEC, tmp_path)
    board, labels, extents = out["train"]
    np.testing.assert_array_equal(labels, centre["train"][1])
    np.testing.assert_array_equal(out["test"][0], centre["test"][0])
    assert (extents.min(1) == 16).all() and extents.max() > 16  # shorter side 16, some are wider
    assert board.shape == (len(labels), *extents.max(0), 3)
    for image, (h, w) in zip(board, extents):
        assert not image[h:].any() and not image[:, w:].any()  # zero outside the image
    store.save_split(tmp_path / "train.npz", *out["train"])
    np.testing.assert_array_equal(store.load_extents(tmp_path / "train.npz"), extents)
    store.save_split(tmp_path / "test.npz", *out["test"])
    assert store.load_extents(tmp_path / "test.npz") is None


def test_make_loaders_subset_is_the_robustness_librarys():
    """The authors' from-scratch subset: RandomState(seed).choice over every index, without
    replacement, no class guaranteed (their make_loaders), sorted."""
    idx = subsets.subset_make_loaders(1000, 50, 20000000)
    expected = np.random.RandomState(20000000).choice(list(range(1000)), size=50, replace=False)
    np.testing.assert_array_equal(idx, np.sort(expected))
    assert len(set(idx.tolist())) == 50
    np.testing.assert_array_equal(subsets.subset_make_loaders(7, "full", 1), np.arange(7))
    np.testing.assert_array_equal(subsets.subset_make_loaders(7, 7, 1), np.arange(7))  # n = total: every image
    with pytest.raises(ValueError, match="cannot draw 8 of 7"):
        subsets.subset_make_loaders(7, 8, 1)
    labels = np.repeat(np.arange(10), 100)
    missing = [len(set(labels[subsets.subset_make_loaders(1000, 10, s)])) < 10 for s in range(20)]
    assert any(missing)  # unlike make_mask, classes may be missing
    np.testing.assert_array_equal(
        subsets.draw_subset("make_loaders", labels, 10, 3), subsets.subset_make_loaders(1000, 10, 3)
    )
    np.testing.assert_array_equal(subsets.draw_subset("make_mask", labels, 10, 3), subsets.subset(labels, 10, 3))


def test_a_truncated_split_fails_naming_the_file(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (50, 8, 8, 3), dtype=np.uint8)
    store.save_split(tmp_path / "train.npz", images, np.arange(50) % 5)
    path = tmp_path / "train.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(store.BadData, match=f"{path}: unreadable prepared split .*prepared again"):
        store.load_split(path)


def test_download_makes_a_nested_root(tmp_path):
    """A data folder whose parents do not exist yet is made, parents included."""
    root = tmp_path / "a" / "b" / "digits"
    download.download("digits", root, offline=True)
    assert "nothing to download" in (root / "SOURCE").read_text()


@pytest.mark.parametrize("per_class", [0, 4])
def test_class_split_keeps_a_train_and_a_test_image_of_every_class(per_class):
    """Each class keeps at least one train and one test image: 0 or all 4 in train is refused."""
    labels = np.repeat([0, 1], 4)
    with pytest.raises(ValueError, match=f"cannot put {per_class} in train"):
        datasets.class_split(labels, 0, train_per_class=per_class)
    train, test = datasets.class_split(labels, 0, train_per_class=1)
    assert np.bincount(labels[train]).tolist() == [1, 1] and np.bincount(labels[test]).tolist() == [3, 3]


def test_canvas_holds_images_of_different_shapes():
    """Non-square images of different sizes: a canvas of the largest height and width, each
    image in its top-left corner, zeros elsewhere, and its (height, width)."""
    tall = np.full((5, 2, 3), 7, dtype=np.uint8)
    wide = np.full((3, 4, 3), 9, dtype=np.uint8)
    out, extents = imaging.canvas([tall, wide])
    assert out.shape == (2, 5, 4, 3) and extents.tolist() == [[5, 2], [3, 4]]
    assert (out[0, :5, :2] == 7).all() and not out[0, :, 2:].any()
    assert (out[1, :3, :4] == 9).all() and not out[1, 3:].any()


def test_lfw_pixels_are_scikit_images_scaled_to_uint8(tmp_path):
    """LFW's floats in [0, 1] become uint8 0-255, rounded, the same in every channel."""
    from skimage.data import lfw_subset

    images, labels = datasets.read("lfw", tmp_path, None)
    want = np.round(lfw_subset() * 255).astype(np.uint8)
    np.testing.assert_array_equal(images[..., 0], want)
    assert images.max() == 255 and labels.tolist() == [1] * 100 + [0] * 100
