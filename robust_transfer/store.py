"""Prepared splits on disk: one uncompressed ``.npz`` of ``images`` (N, H, W, 3) uint8 and
``labels`` (N,) int64 per split (plus ``extents`` (N, 2) for a canvas of whole images), so that
a fine-tuning job can put the whole split on its device at once, or memory-map a subset of it."""

from __future__ import annotations

import numpy as np


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
