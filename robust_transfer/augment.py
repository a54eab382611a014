"""The paper's train augmentation, batched on the device with a different draw per image.

Per image, in torchvision's order: RandomCrop(size, padding=pad, zero fill),
RandomHorizontalFlip, ColorJitter(brightness, contrast, saturation; factors per image, the
order of the three drawn once per batch from Python's seeded `random`), RandomRotation(degrees,
nearest, zero fill).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F


def _uniform(n, low, high, gen, device):
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _grey(x):  # torchvision's rgb_to_grayscale weights
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _warp(x, theta):
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True, jitter: float = 0.25, degrees: float = 2.0):
    """x: (N, 3, H, W) floats in [0, 1] on any device; returns a new batch."""
    n, _, h, w = x.shape
    dev = x.device
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if pad:  # integer shifts in [-pad, pad]: nearest sampling hits pixel centres exactly
        shift = torch.randint(-pad, pad + 1, (n, 2), generator=gen, device=dev).float()
        theta[:, 0, 2] = shift[:, 0] * 2 / w
        theta[:, 1, 2] = shift[:, 1] * 2 / h
    if flip:
        theta[:, 0, 0] = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    if pad or flip:
        x = _warp(x, theta)
    if jitter:
        ops = random.sample(range(3), 3)  # host RNG (seeded per run): no device sync
        factors = _uniform((3, n, 1, 1, 1), max(0.0, 1 - jitter), 1 + jitter, gen, dev)
        for op in ops:
            f = factors[op]
            if op == 0:  # brightness
                x = (x * f).clamp(0, 1)
            elif op == 1:  # contrast: blend with the mean grey level of each image
                x = (f * x + (1 - f) * _grey(x).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
            else:  # saturation: blend with the grey image
                x = (f * x + (1 - f) * _grey(x)).clamp(0, 1)
    if degrees:
        a = _uniform(n, -degrees, degrees, gen, dev) * (math.pi / 180)
        rot = torch.zeros(n, 2, 3, device=dev)
        rot[:, 0, 0] = rot[:, 1, 1] = torch.cos(a)
        rot[:, 0, 1] = -torch.sin(a) * h / w
        rot[:, 1, 0] = torch.sin(a) * w / h
        x = _warp(x, rot)
    return x
