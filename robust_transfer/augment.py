"""The paper's train augmentation, batched on the device with a different draw per image.

Per image, in torchvision's order: RandomCrop(size, padding=pad, zero fill),
RandomHorizontalFlip, ColorJitter(brightness, contrast, saturation; factors per image, the
order of the three drawn once per batch from Python's seeded `random`), RandomRotation(degrees,
nearest, zero fill). Whole images of different sizes: RandomCrop (`crop`), or Salman et al.'s
RandomResizedCrop (`random_resized_crop`) in place of the shift.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _uniform(n, low, high, gen, device):
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _grey(x):  # torchvision's rgb_to_grayscale weights
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _warp(x, theta):
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


@dataclass
class Draw:
    """The random parameters of one batch's augmentation, one per image."""

    shift: torch.Tensor | None  # (n, 2) integer pixel shifts (x, y) in [-pad, pad]: RandomCrop(padding=pad)
    flip: torch.Tensor | None  # (n,) True: mirrored
    order: list[int]  # the order of brightness (0), contrast (1), saturation (2)
    factors: torch.Tensor | None  # (3, n) jitter factors in [1 - jitter, 1 + jitter]
    angle: torch.Tensor | None  # (n,) rotation in degrees, in [-degrees, degrees]


def draw(n: int, gen: torch.Generator, device, pad: int, flip: bool, jitter: float, degrees: float) -> Draw:
    """Every random number of a batch's augmentation, from the run's generator (and Python's
    seeded `random` for the jitter order: host RNG, so no device sync)."""
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=gen, device=device).float() if pad else None
    mirrored = torch.rand(n, generator=gen, device=device) < 0.5 if flip else None
    order = random.sample(range(3), 3) if jitter else []
    factors = _uniform((3, n), max(0.0, 1 - jitter), 1 + jitter, gen, device) if jitter else None
    angle = _uniform(n, -degrees, degrees, gen, device) if degrees else None
    return Draw(shift, mirrored, order, factors, angle)


def apply(x: torch.Tensor, d: Draw) -> torch.Tensor:
    """Apply drawn parameters to x: (N, 3, H, W) floats in [0, 1]; returns a new batch."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if d.shift is not None:  # integer shifts: nearest sampling hits pixel centres exactly
        theta[:, 0, 2] = d.shift[:, 0] * 2 / w
        theta[:, 1, 2] = d.shift[:, 1] * 2 / h
    if d.flip is not None:
        theta[:, 0, 0] = torch.where(d.flip, -1.0, 1.0)
    if d.shift is not None or d.flip is not None:
        x = _warp(x, theta)
    for op in d.order:
        f = d.factors[op].view(n, 1, 1, 1)
        if op == 0:  # brightness
            x = (x * f).clamp(0, 1)
        elif op == 1:  # contrast: blend with the mean grey level of each image
            x = (f * x + (1 - f) * _grey(x).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
        else:  # saturation: blend with the grey image
            x = (f * x + (1 - f) * _grey(x)).clamp(0, 1)
    if d.angle is not None:
        a = d.angle * (math.pi / 180)
        rot = torch.zeros(n, 2, 3, device=x.device)
        rot[:, 0, 0] = rot[:, 1, 1] = torch.cos(a)
        rot[:, 0, 1] = -torch.sin(a) * h / w
        rot[:, 1, 0] = torch.sin(a) * w / h
        x = _warp(x, rot)
    return x


def augment(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True, jitter: float = 0.25, degrees: float = 2.0
):
    """The paper's train augmentation of x: (N, 3, H, W) floats in [0, 1] on any device."""
    return apply(x, draw(len(x), gen, x.device, pad, flip, jitter, degrees))


def crop(x: torch.Tensor, extents: torch.Tensor, size: int, pad: int, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding=pad) of whole images of different sizes, batched: per image a
    size x size window at a top-left offset uniform over [-pad, h - size + pad] x [-pad, w - size
    + pad] of its true extent (zero outside it), as torchvision's RandomCrop on each image.
    x: a canvas (N, C, H, W) with each image in its top left corner; extents: (N, 2) (h, w)."""
    n, dev = len(x), x.device
    span = extents - size + 2 * pad + 1  # offsets to choose from, per image and axis
    offset = (torch.rand(n, 2, generator=gen, device=dev) * span).floor().long() - pad
    steps = torch.arange(size, device=dev)
    rows, cols = offset[:, :1] + steps, offset[:, 1:] + steps  # (n, size) each
    inside = ((rows >= 0) & (rows < extents[:, :1]))[:, :, None] & ((cols >= 0) & (cols < extents[:, 1:]))[:, None, :]
    r, c = rows.clamp(0, x.shape[2] - 1), cols.clamp(0, x.shape[3] - 1)
    out = x[torch.arange(n, device=dev)[:, None, None], :, r[:, :, None], c[:, None, :]]  # (n, size, size, C)
    return (out * inside[..., None].to(out.dtype)).permute(0, 3, 1, 2).contiguous()


def resized_crop_boxes(
    extents: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> torch.Tensor:
    """RandomResizedCrop's box per image (torchvision's get_params, batched): (N, 4) int64 (top,
    left, height, width) inside each image's (h, w) extent. Per image `tries` draws of an area
    fraction ~ U(scale) and a log aspect ratio (w / h) ~ U(log ratio); the first box that fits
    is placed uniformly; if none fits, the central crop of the extent clipped to the ratio range.
    Every image draws the same count of numbers, so the generator's stream (and no host sync)
    does not depend on which try succeeded."""
    n, dev = len(extents), extents.device
    h_img, w_img = extents[:, :1].double(), extents[:, 1:].double()  # (N, 1): rounding in double, as torchvision
    area = h_img * w_img * (torch.rand(n, tries, generator=gen, device=dev) * (scale[1] - scale[0]) + scale[0])
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(n, tries, generator=gen, device=dev) * (high - low) + low).double()
    w, h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()  # round half to even: Python's round
    fits = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    first = fits.int().argmax(1, keepdim=True)  # the first try that fits (argmax: the first maximum)
    h, w = h.gather(1, first), w.gather(1, first)
    # fallback: the whole image, or its centre at the nearest ratio in range
    tall, wide = w_img / h_img < ratio[0], w_img / h_img > ratio[1]
    fb_h = torch.where(tall, (w_img / ratio[0]).round(), h_img)
    fb_w = torch.where(wide, (h_img * ratio[1]).round(), w_img)
    found = fits.any(1, keepdim=True)
    h, w = torch.where(found, h, fb_h), torch.where(found, w, fb_w)
    u = torch.rand(n, 2, generator=gen, device=dev).double()
    top = torch.where(found, (u[:, :1] * (h_img - h + 1)).floor(), ((h_img - h) / 2).floor())
    left = torch.where(found, (u[:, 1:] * (w_img - w + 1)).floor(), ((w_img - w) / 2).floor())
    return torch.cat([top, left, h, w], 1).long()


def _axis_weights(start: torch.Tensor, length: torch.Tensor, size: int, span: int) -> torch.Tensor:
    """(N, size, span) weights of an antialiased bilinear resize of the pixels [start, start +
    length) of an axis to `size` (PIL's and torch's antialias: a triangle filter widened by the
    downscale factor, renormalised over the pixels inside the crop)."""
    dev = start.device
    scale = (length.double() / size)[:, None, None]  # (N, 1, 1) input pixels per output pixel
    centre = (
        start.double()[:, None, None] + (torch.arange(size, device=dev, dtype=torch.float64)[:, None] + 0.5) * scale
    )
    pixel = torch.arange(span, device=dev, dtype=torch.float64) + 0.5  # pixel centres
    weight = (1 - (pixel - centre).abs() / scale.clamp(min=1)).clamp(min=0)
    inside = (pixel >= start[:, None, None]) & (pixel < (start + length)[:, None, None])
    weight = weight * inside
    return (weight / weight.sum(-1, keepdim=True)).float()


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box (top, left, height, width) of a uint8 canvas x (N, C, H, W), resized to
    size x size by antialiased bilinear interpolation (torchvision's resized_crop with
    antialias=True, as PIL's): floats in [0, 1]. Batched as two matrix products per image."""
    rows = _axis_weights(boxes[:, 0], boxes[:, 2], size, x.shape[2])  # (N, size, H)
    cols = _axis_weights(boxes[:, 1], boxes[:, 3], size, x.shape[3])  # (N, size, W)
    out = rows[:, None] @ (x.float() @ cols.transpose(1, 2)[:, None])  # (N, C, size, size)
    return out.div_(255).clamp_(0, 1)


def random_resized_crop(
    x: torch.Tensor, extents: torch.Tensor, size: int, gen: torch.Generator, scale: float = 0.08
) -> torch.Tensor:
    """RandomResizedCrop(size, scale=(scale, 1), ratio=(3/4, 4/3)) of whole images of different
    sizes (a canvas, each image in its top left corner, extents (N, 2) (h, w)), a different box
    per image from `gen`: floats in [0, 1] at size x size (Salman et al.'s train transform, at
    torchvision's default scale 0.08)."""
    return resized_crop(x, resized_crop_boxes(extents, gen, (scale, 1.0)), size)
