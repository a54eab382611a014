"""Image transforms applied once, when a split is prepared: grey to RGB, resize and crop,
the whole-image canvas (random training crops), and the low-pass variant of Table 2."""

from __future__ import annotations

import functools

import numpy as np


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1|3) uint8 -> (N, H, W, 3); grey becomes three equal channels."""
    if images.ndim == 3:
        images = images[..., None]
    return np.ascontiguousarray(np.broadcast_to(images, images.shape[:3] + (3,)))


def resize(
    images,
    size: int | None,
    downscale: int | None = None,
    crop: bool = True,
    crop_size: int | None = None,
    max_side: int | None = None,
):
    """Bilinear resize as torchvision's Resize(n) on PIL images (shorter side to n, aspect kept),
    then a centre crop to size x size (the authors' test transform); `downscale` first shrinks
    the shorter side to `downscale` (the low-resolution variant of Table 2). Square images
    are simply resized. crop=False keeps each whole image (a list, sizes vary): training then
    takes a random window of it (`train_crop: random`, see canvas).

    crop_size: the centre crop's side when it differs from `size` (Salman et al.'s test
    transform Resize(256) + CenterCrop(224): size 256, crop_size 224). max_side (whole images
    only): a longer side above it is centre-cropped to it, so that one odd aspect ratio cannot
    blow up a canvas (`train_crop: random_resized`, see datasets.prepare)."""
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
            side = crop_size or size
            if crop:
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side))
            elif max_side and max(w, h) > max_side:
                left, top = max(0, (w - max_side) // 2), max(0, (h - max_side) // 2)
                img = img.crop((left, top, left + min(w, max_side), top + min(h, max_side)))
        return np.asarray(img.convert("RGB"))

    side = crop_size or size
    if (
        isinstance(images, np.ndarray)
        and not downscale
        and (not size or images.shape[1:3] == (side, side) == (size, size))
    ):
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
