"""The paper's train augmentation, batched on the device: each operation's exact effect."""

from __future__ import annotations

import random

import pytest
import torch

from robust_transfer.augment import Draw, apply, augment, draw


def _batch(n=6, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


def test_augment_same_seed_same_output():
    """Every draw comes from the run's generator and Python's `random` (the jitter order), both
    seeded per run (train.seed_everything): same seeds, same augmented batch."""
    x = _batch()
    random.seed(5)
    a = augment(x, torch.Generator().manual_seed(5))
    random.seed(5)
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_shape_and_range():
    """All four augmentations on: shape kept, values in [0, 1], input not modified."""
    x = _batch(n=16)
    x0 = x.clone()
    for s in range(5):
        out = augment(x, torch.Generator().manual_seed(s), pad=4, flip=True, jitter=0.25, degrees=2)
        assert out.shape == x.shape
        assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, x0)


def _shift(img, dy, dx):
    """out[y, x] = img[y + dy, x + dx], zero outside."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    for y in range(h):
        for x in range(w):
            sy, sx = y + dy, x + dx
            if 0 <= sy < h and 0 <= sx < w:
                out[:, y, x] = img[:, sy, sx]
    return out


def test_augment_pad_is_integer_shift_with_zero_fill():
    """RandomCrop(padding=4) == an integer shift in [-4, 4] with zero fill: each image equals
    the input shifted by exactly one such (dy, dx), and the shifts vary across images."""
    x = _batch(n=8, h=10, w=10) * 0.9 + 0.05  # no zeros in the input: fill is recognisable
    out = augment(x, torch.Generator().manual_seed(3), pad=4, flip=False, jitter=0, degrees=0)
    shifts = []
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(out[i], _shift(x[i], dy, dx))]
        assert len(found) == 1, f"image {i}: not an exact integer shift"
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_augment_flip_only_mirrors():
    """flip alone: each image is the input or its exact horizontal mirror."""
    x = _batch(n=16)
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=True, jitter=0, degrees=0)
    kinds = []
    for i in range(len(x)):
        same, mirrored = torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))
        assert same or mirrored
        kinds.append(mirrored)
    assert any(kinds) and not all(kinds)


def test_augment_all_disabled_is_identity():
    x = _batch()
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=False, jitter=0, degrees=0)
    assert torch.equal(out, x)


def test_augment_jitter_only_keeps_geometry():
    """Colour jitter moves no pixel: on grey images (saturation is then a no-op, brightness
    and contrast are increasing maps) each output image is a non-decreasing function of its
    input, pixel by pixel, and stays grey; yet values do change."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g).expand(4, 3, 8, 8).contiguous()
    out = augment(x, torch.Generator().manual_seed(1), pad=0, flip=False, jitter=0.25, degrees=0)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 0], out[:, 2], atol=1e-6)
    for i in range(len(x)):
        order = x[i, 0].flatten().argsort()
        assert (out[i, 0].flatten()[order].diff() >= -1e-6).all()


# --- the draws: ranges and distributions (the paper's RandomCrop, flip, ColorJitter, RandomRotation)

N = 20000


def _draw(**kw):
    settings = dict(pad=4, flip=True, jitter=0.25, degrees=2.0) | kw
    return draw(N, torch.Generator().manual_seed(0), "cpu", **settings)


def test_crop_shift_is_uniform_over_every_integer_offset():
    """RandomCrop(padding=4) == a shift uniform over the 9 x 9 integer offsets in [-4, 4]."""
    shift = _draw().shift
    assert shift.dtype == torch.float32 and torch.equal(shift, shift.round())
    counts = torch.stack([(shift == v).sum(0) for v in range(-4, 5)])  # (9 values, x/y)
    assert shift.abs().max() == 4 and counts.min() > 0
    expected = N / 9
    assert ((counts - expected).abs() < 5 * (expected**0.5)).all(), counts  # within 5 sigma
    for pad in (1, 2):
        assert set(_draw(pad=pad).shift.unique().tolist()) == set(range(-pad, pad + 1))
    assert _draw(pad=0).shift is None


def test_flip_rate_is_one_half():
    flips = _draw().flip.float().mean().item()
    assert abs(flips - 0.5) < 5 * (0.25 / N) ** 0.5
    assert _draw(flip=False).flip is None


@pytest.mark.parametrize("jitter", [0.25, 0.4])
def test_jitter_factors_are_uniform_in_range(jitter):
    """ColorJitter(b, c, s): each factor ~ U(1 - j, 1 + j), independent per image and operation;
    the order of the three operations is a permutation."""
    d = _draw(jitter=jitter)
    f = d.factors
    assert f.shape == (3, N)
    assert f.min() >= 1 - jitter and f.max() <= 1 + jitter
    assert torch.allclose(f.mean(1), torch.ones(3), atol=0.01)
    assert torch.allclose(f.var(1), torch.full((3,), (2 * jitter) ** 2 / 12), rtol=0.05)
    assert sorted(d.order) == [0, 1, 2]
    assert abs(torch.corrcoef(f)[0, 1]) < 0.05
    assert _draw(jitter=0).factors is None and _draw(jitter=0).order == []


def test_jitter_order_varies_between_batches():
    random.seed(0)
    orders = {tuple(draw(2, torch.Generator().manual_seed(i), "cpu", 0, False, 0.25, 0).order) for i in range(60)}
    assert len(orders) == 6  # every permutation of brightness, contrast, saturation


@pytest.mark.parametrize("degrees", [2.0, 10.0])
def test_rotation_angle_is_uniform_in_range(degrees):
    a = _draw(degrees=degrees).angle
    assert a.min() >= -degrees and a.max() <= degrees
    assert abs(a.mean().item()) < 0.02 * degrees
    assert a.var().item() == pytest.approx((2 * degrees) ** 2 / 12, rel=0.05)
    assert _draw(degrees=0).angle is None


# --- applying drawn parameters: the exact effect of each operation


def _only(n, **fields):
    d = Draw(shift=None, flip=None, order=[], factors=None, angle=None)
    for key, value in fields.items():
        setattr(d, key, value)
    return d


def test_rotation_by_a_quarter_turn_is_exact():
    """The rotation is applied as drawn: 90 degrees (nearest sampling, square image) is an exact
    quarter turn (counter-clockwise on screen, as torchvision's positive angles)."""
    x = torch.rand(2, 3, 8, 8)
    out = apply(x, _only(2, angle=torch.tensor([90.0, -90.0])))
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(1, 2)))
    assert torch.equal(out[1], torch.rot90(x[1], -1, dims=(1, 2)))


def test_small_rotation_moves_pixels_and_fills_zero():
    x = torch.rand(1, 3, 32, 32) * 0.9 + 0.05
    out = apply(x, _only(1, angle=torch.tensor([2.0])))
    assert not torch.equal(out, x)
    assert (out == 0).any()  # corners rotated in from outside: zero fill
    assert (out == x).float().mean() > 0.5  # nearest sampling: most pixels stay in place


@pytest.mark.parametrize("op, fn", [(0, "adjust_brightness"), (1, "adjust_contrast"), (2, "adjust_saturation")])
def test_each_jitter_operation_equals_torchvision(op, fn):
    """Brightness, contrast and saturation with a drawn factor equal torchvision's functional
    ColorJitter operations, image by image."""
    import torchvision.transforms.functional as TF

    x = torch.rand(4, 3, 6, 6)
    factors = torch.ones(3, 4)
    factors[op] = torch.tensor([0.75, 0.9, 1.1, 1.25])
    out = apply(x, _only(4, order=[op], factors=factors))
    for i in range(4):
        expected = getattr(TF, fn)(x[i], factors[op, i].item())
        assert torch.allclose(out[i], expected, atol=1e-6), (fn, i)


def test_jitter_applies_in_the_drawn_order():
    import torchvision.transforms.functional as TF

    x = torch.rand(1, 3, 6, 6)
    factors = torch.tensor([[1.2], [0.8], [1.25]])
    out = apply(x, _only(1, order=[2, 0, 1], factors=factors))
    expected = TF.adjust_contrast(TF.adjust_brightness(TF.adjust_saturation(x[0], 1.25), 1.2), 0.8)
    assert torch.allclose(out[0], expected, atol=1e-6)


# --- RandomCrop over whole images of different sizes (train_crop: random) -------------------


def test_crop_equals_torchvision_random_crop_windows():
    """Each output is a size x size window of its own image, at an offset in [-pad, h - size +
    pad] x [-pad, w - size + pad], zero outside the image: torchvision's RandomCrop(size,
    padding=pad) of that image with the same offset."""
    import torchvision.transforms.functional as TF

    from robust_transfer.augment import crop

    rng = torch.Generator().manual_seed(0)
    extents = torch.tensor([[8, 8], [8, 20], [14, 8]])
    board = torch.zeros(3, 3, 14, 20, dtype=torch.uint8)
    for i, (h, w) in enumerate(extents.tolist()):
        board[i, :, :h, :w] = torch.randint(1, 256, (3, h, w), generator=rng, dtype=torch.uint8)
    for seed in range(40):  # enough draws to reach every edge, where an image fills the canvas too
        out = crop(board, extents, 8, 2, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 3, 8, 8) and out.dtype == torch.uint8
        for i, (h, w) in enumerate(extents.tolist()):
            padded = TF.pad(board[i, :, :h, :w], 2)
            found = [
                (t, l)
                for t in range(h - 8 + 5)
                for l in range(w - 8 + 5)  # noqa: E741
                if torch.equal(out[i], padded[:, t : t + 8, l : l + 8])
            ]
            assert found, f"image {i}, draw {seed}: not a RandomCrop window"


def test_crop_offsets_cover_the_whole_long_side_uniformly():
    from robust_transfer.augment import crop

    n = 4000
    board = torch.arange(40, dtype=torch.float32).repeat(n, 1, 8, 1)  # pixel value = its column
    board[:, :, :, 30:] = -1  # beyond the true width: must never be sampled
    extents = torch.tensor([[8, 30]]).repeat(n, 1)
    out = crop(board + 1, extents, 8, 0, torch.Generator().manual_seed(0))
    left = out[:, 0, 0, 0] - 1  # the window's first column
    counts = torch.bincount(left.long(), minlength=23)
    assert left.min() == 0 and left.max() == 22 and (counts > 0).all()  # 0 .. 30 - 8
    assert (counts.float() - n / 23).abs().max() < 5 * (n / 23) ** 0.5
    assert (out >= 1).all()
