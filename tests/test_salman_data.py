"""Salman et al.'s targets through the real code path: tiny datasets written in each dataset's
true on-disk layout (what torchvision's class reads, or the authors' ImageFolder copy for
Birdsnap, plus SUN397's partition files), put in a mirror, made ready by
download.download(..., offline=True) and read back by datasets.prepare(). No network, no GPU.

Every image of a class is one solid colour (PALETTE[label]), so a test can tell from the
pixels that each stored image carries its own label. Flowers-102: torchvision checks the md5 of
its two .mat files against constants on the class; the test sets those constants to the md5s
of the files it wrote (monkeypatch), so the check still runs, on our files."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.io
import torchvision.datasets as tvd
from PIL import Image

from robust_transfer import datasets, download

PALETTE = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30)]
SHAPES = [(20, 30), (30, 20), (24, 24)]  # (height, width), cycled: photos of varying shape
TOLERANCE = 10  # JPEG
SPEC = {"size": 16, "train_crop": "random_resized", "test_crop": 12}  # Salman's 256 / 224, shrunk


def jpeg(path, colour, shape=(20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), colour, np.uint8)).save(path, quality=95)


def lines(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in rows))


def counted(counts):
    """[(label, count)...] -> the labels, each repeated count times."""
    return [label for label, n in enumerate(counts) for _ in range(n)]


# ------------------------------------------------------------- writers, one per true layout
# Each writes under `root` and returns the expected per-class image counts {"train": [...], "test": [...]}.


def listed(counts: dict[str, list[int]], image, row) -> dict[str, list[str]]:
    """Write every image of per-split, per-class counts (image(label, i): its path, i a running
    number from 1) and return each split's annotation lines (row(label, i))."""
    rows, i = {split: [] for split in counts}, 0
    for split, per in counts.items():
        for label, n in enumerate(per):
            for _ in range(n):
                i += 1
                jpeg(image(label, i), PALETTE[label], SHAPES[i % 3])
                rows[split].append(row(label, i))
    return rows


def write_aircraft(root, monkeypatch):
    """fgvc-aircraft-2013b/data/: variants.txt (label order), images/<id>.jpg and
    images_variant_{trainval,test}.txt lines '<id> <variant name, may hold spaces>'."""
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]
    lines(data / "variants.txt", variants)
    lines(data / "images_variant_train.txt", [])  # other annotation levels and splits exist too
    counts = {"trainval": [2, 1, 3], "test": [1, 2, 1]}
    rows = listed(
        counts, lambda label, i: data / "images" / f"{i:07d}.jpg", lambda label, i: f"{i:07d} {variants[label]}"
    )
    for split, text in rows.items():
        lines(data / f"images_variant_{split}.txt", text)
    return {"train": counts["trainval"], "test": counts["test"]}


BIRDS = ["Acadian_Flycatcher", "Bald_Eagle", "Cedar_Waxwing"]


def write_birdsnap(root, monkeypatch, shapes=SHAPES):
    """The authors' ImageFolder copy: birdsnap/{train,test}/<class>/<image>.jpg."""
    counts = {"train": [2, 3, 2], "test": [1, 1, 2]}
    for split, per in counts.items():
        for label, n in enumerate(per):
            for i in range(n):
                jpeg(root / "birdsnap" / split / BIRDS[label] / f"{i}.jpg", PALETTE[label], shapes[i % len(shapes)])
    return counts


CALTECH101 = {"Faces_easy": 4, "accordion": 3, "butterfly": 5}  # sorted: upper case first


def write_caltech101(root, monkeypatch):
    """caltech101/101_ObjectCategories/<category>/image_0001.jpg..., BACKGROUND_Google dropped.
    Image i of a category has brightness 20 * i in its blue channel (its place in file order)."""
    top = root / "caltech101" / "101_ObjectCategories"
    for label, (category, n) in enumerate(CALTECH101.items()):
        for i in range(1, n + 1):
            jpeg(top / category / f"image_{i:04d}.jpg", (*PALETTE[label][:2], 20 * i), SHAPES[i % 3])
    for i in range(1, 3):
        jpeg(top / "BACKGROUND_Google" / f"image_{i:04d}.jpg", (0, 0, 0))
    return {"train": [2, 2, 2], "test": [n - 2 for n in CALTECH101.values()]}


def write_caltech256(root, monkeypatch):
    """caltech256/256_ObjectCategories/<NNN.name>/<NNN>_<iiii>.jpg (torchvision names the files
    by the category's place NNN in sorted order, so the last one here is 003; in the real data
    it is 257.clutter, a class too); files not ending in .jpg are not images of the category."""
    top = root / "caltech256" / "256_ObjectCategories"
    cats = {"001.ak47": 3, "002.american-flag": 4, "003.clutter": 3}
    for label, (category, n) in enumerate(cats.items()):
        for i in range(1, n + 1):
            jpeg(top / category / f"{category[:3]}_{i:04d}.jpg", PALETTE[label], SHAPES[i % 3])
    (top / "002.american-flag" / "Thumbs.db").write_bytes(b"not an image")
    return {"train": [2, 2, 2], "test": [1, 2, 1]}


def write_cars(root, monkeypatch):
    """torchvision's StanfordCars layout: stanford_cars/devkit/{cars_meta.mat (class_names),
    cars_train_annos.mat}, stanford_cars/cars_test_annos_withlabels.mat ('annotations': fname,
    class from 1) and the images in stanford_cars/cars_{train,test}/."""
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TT Hatchback 2011"], dtype=object)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    counts = {"train": [2, 2, 1], "test": [1, 2, 2]}
    for split, per in counts.items():
        annos = []
        for label, n in enumerate(per):
            for _ in range(n):
                fname = f"{len(annos) + 1:05d}.jpg"
                jpeg(base / f"cars_{split}" / fname, PALETTE[label], SHAPES[len(annos) % 3])
                annos.append((fname, label + 1))
        mat = base / ("devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat")
        scipy.io.savemat(mat, {"annotations": np.array(annos, dtype=[("fname", "O"), ("class", "O")])})
    return counts


def write_dtd(root, monkeypatch):
    """dtd/dtd/images/<class>/<name>.jpg, dtd/dtd/labels/{train,val,test}1.txt of <class>/<name>.jpg."""
    base = root / "dtd" / "dtd"
    classes = ["banded", "blotchy", "zigzagged"]
    per = {"train1": [1, 1, 1], "val1": [1, 2, 1], "test1": [2, 1, 1], "train2": [1, 1, 1]}
    for part, counts in per.items():
        rows = []
        for label, n in enumerate(counts):
            for i in range(n):
                name = f"{classes[label]}/{classes[label]}_{part}_{i}.jpg"
                jpeg(base / "images" / name, PALETTE[label], SHAPES[i % 3])
                rows.append(name)
        lines(base / "labels" / f"{part}.txt", rows)
    return {"train": [2, 3, 2], "test": [2, 1, 1]}


def write_flowers(root, monkeypatch):
    """flowers-102/jpg/image_00001.jpg..., imagelabels.mat (labels from 1), setid.mat
    (trnid, valid, tstid image ids); the two .mat files' md5 constants set to ours."""
    base = root / "flowers-102"
    labels = [1, 2, 3, 1, 2, 3, 3, 1, 2, 2, 1, 3, 3]
    for i, label in enumerate(labels, 1):
        jpeg(base / "jpg" / f"image_{i:05d}.jpg", PALETTE[label - 1], SHAPES[i % 3])
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array(labels)})
    ids = {"trnid": [1, 2, 3, 4], "valid": [5, 6, 7], "tstid": [8, 9, 10, 11, 12, 13]}
    scipy.io.savemat(base / "setid.mat", {k: np.array(v) for k, v in ids.items()})
    md5 = {
        k: hashlib.md5((base / f).read_bytes()).hexdigest()
        for k, f in (("label", "imagelabels.mat"), ("setid", "setid.mat"))
    }
    files = {k: (f, md5.get(k, m)) for k, (f, m) in tvd.Flowers102._file_dict.items()}
    monkeypatch.setattr(tvd.Flowers102, "_file_dict", files)  # checksum constants only

    def count(image_ids):
        return np.bincount([labels[i - 1] - 1 for i in image_ids], minlength=3).tolist()

    return {"train": count(ids["trnid"] + ids["valid"]), "test": count(ids["tstid"])}


def write_food(root, monkeypatch):
    """food-101/images/<class>/<id>.jpg, food-101/meta/{train,test}.json: {class: ["class/id"]}."""
    base = root / "food-101"
    classes = ["apple_pie", "baby_back_ribs", "waffles"]
    counts = {"train": [3, 2, 2], "test": [1, 1, 2]}
    for split, per in counts.items():
        meta = {}
        for label, n in enumerate(per):
            meta[classes[label]] = [f"{classes[label]}/{split}{i}" for i in range(n)]
            for i in range(n):
                jpeg(base / "images" / classes[label] / f"{split}{i}.jpg", PALETTE[label], SHAPES[i % 3])
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
    return counts


def write_pets(root, monkeypatch):
    """oxford-iiit-pet/images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt lines
    '<image> <class from 1> <species> <breed id>'."""
    base = root / "oxford-iiit-pet"
    breeds = ["Abyssinian", "Bengal", "american_bulldog"]
    counts = {"trainval": [2, 1, 2], "test": [1, 2, 2]}
    rows = listed(
        counts,
        lambda label, n: base / "images" / f"{breeds[label]}_{n}.jpg",
        lambda label, n: f"{breeds[label]}_{n} {label + 1} {1 + (label == 2)} {n}",
    )
    for split, text in rows.items():
        lines(base / "annotations" / f"{split}.txt", text)
    return {"train": counts["trainval"], "test": counts["test"]}


SUN_CLASSES = ["/a/abbey", "/a/apartment_building/outdoor", "/b/beach"]


def write_sun397(root, monkeypatch, partitions=True):
    """SUN397/ClassName.txt and SUN397/<l>/<class>/sun_<id>.jpg (torchvision's SUN397), plus
    Partitions/{Training,Testing}_01.txt (lines /a/abbey/sun_<id>.jpg); images in no
    partition-1 list are left out."""
    lines(root / "SUN397" / "ClassName.txt", SUN_CLASSES)
    counts = {"train": [2, 2, 1], "test": [1, 2, 2]}
    part = {"train": [], "test": []}
    for split, per in counts.items():
        for label, n in enumerate(per):
            for i in range(n + (split == "test")):  # one more image per class: in no list
                rel = f"{SUN_CLASSES[label]}/sun_{split}{label}{i}.jpg"
                jpeg(root / "SUN397" / rel.lstrip("/"), PALETTE[label], SHAPES[i % 3])
                if i < n:
                    part[split].append(rel)
    if partitions:
        lines(root / "Partitions" / "Training_01.txt", part["train"])
        lines(root / "Partitions" / "Testing_01.txt", part["test"])
    return counts


WRITERS = {
    "aircraft": write_aircraft,
    "birdsnap": write_birdsnap,
    "caltech101": write_caltech101,
    "caltech256": write_caltech256,
    "cars": write_cars,
    "dtd": write_dtd,
    "flowers": write_flowers,
    "food": write_food,
    "pets": write_pets,
    "sun397": write_sun397,
}
FIRST_N = {"caltech101": 2, "caltech256": 2}


def salman_spec(loader):
    split = {"split": {"first_per_class": FIRST_N[loader]}} if loader in FIRST_N else {}
    return {"loader": loader, **SPEC, **split}


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("loader", sorted(WRITERS))
def test_mirror_offline_prepare_split_classes_and_pixels(loader, tmp_path, monkeypatch):
    """A mirror in the true layout is copied into an empty root offline; prepare() then gives
    the expected images per class in each split, every image with its class's colour; training
    images whole (shorter side 16) on a canvas, test images the 12 x 12 centre crop."""
    mirror, root = tmp_path / "mirror", tmp_path / "root"
    expected = WRITERS[loader](mirror, monkeypatch)
    download.download(loader, root, mirror=mirror, offline=True)
    assert download.missing_files(loader, root) == []
    out = datasets.prepare(salman_spec(loader), root)
    board, train_labels, extents = out["train"]
    test_images, test_labels = out["test"]
    classes = len(expected["train"])
    assert np.bincount(train_labels, minlength=classes).tolist() == expected["train"]
    assert np.bincount(test_labels, minlength=classes).tolist() == expected["test"]
    assert train_labels.dtype == test_labels.dtype == np.int64
    assert test_images.shape == (len(test_labels), 12, 12, 3) and test_images.dtype == np.uint8
    assert (extents.min(1) == 16).all() and board.shape == (len(train_labels), *extents.max(0), 3)
    for image, y in zip(test_images, test_labels):
        np.testing.assert_allclose(image[6, 6, :2], PALETTE[y][:2], atol=TOLERANCE)
    for image, y, (h, w) in zip(board, train_labels, extents):
        np.testing.assert_allclose(image[h // 2, w // 2, :2], PALETTE[y][:2], atol=TOLERANCE)
        assert not image[h:].any() and not image[:, w:].any()


def test_registry_records_salman_sizes_and_normalisation():
    """Sizes and classes as shared/reference/salman2020/datasets.csv; mean 0 / std 1 (none) for
    every new target, as the authors' code; split-less Caltech-256 needs a `split` entry."""
    want = {
        "aircraft": (6667, 3333, 100),
        "cars": (8144, 8041, 196),
        "dtd": (3760, 1880, 47),
        "flowers": (2040, 6149, 102),
        "food": (75750, 25250, 101),
        "pets": (3680, 3669, 37),
        "sun397": (19850, 19850, 397),
        "birdsnap": (None, None, 500),
    }
    for name, sizes in want.items():
        rec = datasets.LOADERS[name]
        assert (rec.train_size, rec.test_size, rec.classes) == sizes
        assert rec.mean == (0.0,) * 3 and rec.std == (1.0,) * 3
    c256 = datasets.LOADERS["caltech256"]
    assert not c256.official_split and (c256.classes, c256.images) == (257, 30607)


def test_caltech_first_per_class_is_file_order_not_random(tmp_path):
    """split: {first_per_class: N}: image_0001 ... image_000N of each sorted category train
    (the authors' rule; read back from each image's blue channel, 20 x its number), every other
    image tests; no seed, the same every time, and unlike the seeded split."""
    write_caltech101(tmp_path, None)
    download.download("caltech101", tmp_path, offline=True)
    spec = {"loader": "caltech101", "size": 16, "split": {"first_per_class": 2}}
    out = datasets.prepare(spec, tmp_path)
    number = lambda image: int(round(image[8, 8, 2] / 20))  # noqa: E731
    for split, picked in (("train", lambda n: [1, 2]), ("test", lambda n: list(range(3, n + 1)))):
        images, ys = out[split]
        for label, n in enumerate(CALTECH101.values()):
            assert sorted(number(img) for img, y in zip(images, ys) if y == label) == picked(n), (split, label)
    assert sorted(out["train"][1].tolist() + out["test"][1].tolist()) == counted(CALTECH101.values())
    np.testing.assert_array_equal(datasets.prepare(spec, tmp_path)["train"][0], out["train"][0])
    seeded = [{**spec, "split": {"seed": s, "train_per_class": 2}} for s in range(3)]
    assert any(not np.array_equal(datasets.prepare(x, tmp_path)["train"][0], out["train"][0]) for x in seeded)


def test_first_split_rule():
    """first_split: the first N indices of each class in dataset order, the rest test; a class
    with no test image left is refused."""
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0, 2, 2, 2])
    train, test = datasets.first_split(labels, 2)
    assert train.tolist() == [0, 1, 3, 4, 8, 9] and test.tolist() == [2, 5, 6, 7, 10]
    with pytest.raises(ValueError, match="class 2 has 3 images"):
        datasets.first_split(labels, 3)


def test_grid_sizes_of_first_per_class():
    """The size helpers count first_per_class as train_per_class: Caltech-101 3,030 / 5,647 and
    Caltech-256 15,420 / 15,187 (datasets.csv)."""
    from robust_transfer import sizes

    config = {
        "datasets": {
            "c101": {"loader": "caltech101", "split": {"first_per_class": 30}},
            "c256": {"loader": "caltech256", "split": {"first_per_class": 60}},
        }
    }
    assert (sizes.train_size(config, "c101"), sizes.test_size(config, "c101")) == (3030, 5647)
    assert (sizes.train_size(config, "c256"), sizes.test_size(config, "c256")) == (15420, 15187)


@pytest.mark.parametrize(
    "loader, staged",
    [
        ("cars", datasets.LOADERS["cars"].files),
        ("birdsnap", ("birdsnap/train", "birdsnap/test")),
        ("sun397", ("Partitions/Training_01.txt", "Partitions/Testing_01.txt")),
    ],
)
def test_undownloadable_data_fails_at_once_naming_files_and_layout(loader, staged, tmp_path, monkeypatch):
    """Not offline and nothing there: no download is tried (none exists: Cars' URL is dead,
    Birdsnap is URL lists, torchvision has no SUN397 partitions); one message names every file
    to stage, the layout and the mirror folder."""
    tried = []
    monkeypatch.setattr(download, "_sources", lambda *a, **k: tried.append(a))
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    with pytest.raises(download.MissingData) as err:
        download.download(loader, root, mirror=mirror, offline=False)
    message = str(err.value)
    assert tried == [] and "download failed" not in message
    assert "no download exists" in message and f"under {mirror}/ (data.mirror) or {root}/" in message
    for rel in staged:
        assert f"{rel}  (no download: stage it)" in message
    assert "Layout: " + datasets.LOADERS[loader].layout in message


def test_sun397_images_without_partitions_name_only_the_partition_files(tmp_path, monkeypatch):
    """SUN397's images are there (torchvision's layout) but not the partition files: the
    message names exactly those two, and no download of the 37 GB archive starts."""
    write_sun397(tmp_path / "mirror", monkeypatch, partitions=False)
    monkeypatch.setattr(tvd.SUN397, "_download", lambda self: pytest.fail("download attempted"))
    with pytest.raises(download.MissingData) as err:
        download.download("sun397", tmp_path / "root", mirror=tmp_path / "mirror", offline=False)
    files = str(err.value).split("Missing files:\n")[1].split("\nLayout")[0].split("\n")
    assert [f.strip() for f in files] == [f"{rel}  (no download: stage it)" for rel in datasets.SUN_PARTITION.values()]


def test_staged_copy_works_without_offline(tmp_path, monkeypatch):
    """A staged Stanford Cars copy in the mirror is ready with offline: false too (nothing
    left to download), and torchvision's StanfordCars reads it."""
    expected = write_cars(tmp_path / "mirror", monkeypatch)
    download.download("cars", tmp_path / "root", mirror=tmp_path / "mirror", offline=False)
    images, labels = datasets.read("cars", tmp_path / "root", "test")
    assert np.bincount(labels).tolist() == expected["test"] and len(images) == len(labels)


def test_birdsnap_train_and_test_must_share_classes(tmp_path, monkeypatch):
    """ImageFolder labels by sorted folder names: a class folder missing from test/ would shift
    every later label, so it is refused."""
    write_birdsnap(tmp_path, monkeypatch)
    jpeg(tmp_path / "birdsnap" / "train" / "Zebra_Finch" / "0.jpg", (0, 0, 0))
    with pytest.raises(ValueError, match="different class folders"):
        datasets.read("birdsnap", tmp_path, "train")


def test_dtd_train_is_train_plus_val_of_partition_1(tmp_path, monkeypatch):
    """DTD's training split is train1 + val1 (the authors' DTD(train=True)); partition 2 unused."""
    write_dtd(tmp_path, monkeypatch)
    images, labels = datasets.read("dtd", tmp_path, "train")
    names = [str(ds._image_files[i].name) for ds, i in images.items]
    assert len(names) == 7 and all("_train1_" in n or "_val1_" in n for n in names)
    assert sum("_val1_" in n for n in names) == 4


def test_random_resized_storage_caps_the_longer_side(tmp_path, monkeypatch):
    """train_crop: random_resized keeps each training image whole, shorter side at `size`, but
    centre-crops a longer side above max_aspect x size (default 4/3: 21 at 16), so a panorama
    cannot widen the canvas; test images are Resize(size) + CenterCrop(test_crop)."""
    shapes = [(32, 96), (40, 30), (30, 40)]  # a 3:1 panorama, a portrait, a landscape
    write_birdsnap(tmp_path, monkeypatch, shapes=shapes)
    ramp = np.broadcast_to((np.arange(96) * 2).astype(np.uint8)[None, :, None], (32, 96, 3))
    Image.fromarray(np.ascontiguousarray(ramp)).save(tmp_path / "birdsnap/train" / BIRDS[0] / "0.jpg", quality=95)
    out = datasets.prepare({"loader": "birdsnap", **SPEC}, tmp_path)
    board, labels, extents = out["train"]
    assert sorted({tuple(e) for e in extents.tolist()}) == [(16, 21), (21, 16)]
    assert board.shape[1:] == (21, 21, 3)
    panorama = board[(labels == 0) & (extents[:, 1] == 21)][0, 8, :21, 0].astype(int)
    # the ramp at 48 px wide is about 4 per column; the centre 21 of 48 start at column 13
    assert abs(panorama[0] - 4 * 13) < 8 and abs(panorama[20] - 4 * 33) < 8
    wide = datasets.prepare({"loader": "birdsnap", **SPEC, "max_aspect": 3}, tmp_path)["train"][2]
    assert sorted({tuple(e) for e in wide.tolist()}) == [(16, 21), (16, 48), (21, 16)]
    assert out["test"][0].shape[1:] == (12, 12, 3)
    plain = datasets.prepare({"loader": "birdsnap", "size": 16, "train_crop": "random"}, tmp_path)["train"][2]
    assert (16, 48) in {tuple(e) for e in plain.tolist()}  # Utrera's `random` keeps its behaviour
    with pytest.raises(ValueError, match="needs a size"):
        datasets.prepare({"loader": "birdsnap", "train_crop": "random_resized"}, tmp_path)


def test_test_crop_is_resize_then_centre_crop():
    """Resize(16) + CenterCrop(12) of a 16 x 32 image: rows 2..13 and columns 10..21 of it."""
    from robust_transfer.images import resize

    image = np.arange(16 * 32 * 3, dtype=np.uint32).reshape(16, 32, 3) % 251
    out = resize([image.astype(np.uint8)], 16, crop_size=12)
    assert out.shape == (1, 12, 12, 3)
    np.testing.assert_array_equal(out[0], image[2:14, 10:22].astype(np.uint8))
